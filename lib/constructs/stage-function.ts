import { Duration, Size, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { LAMBDA_THREADS_ENV, PROCESS_ENV } from '../../runtime/contracts/deployment';
import type { DataBucket } from './data-bucket';
import { operationalLogGroup } from './log-group';

/**
 * 3,008 MB: the most every account accepts (accounts that were never raised are capped there, and a larger size
 * fails the deployment). Lambda gives CPU in proportion to memory, one vCPU's worth per 1,769 MB, so this is about
 * 1.7 vCPUs; more is context `orchard:lambdaMemory` (up to 10,240 MB where the account allows it).
 */
export const DEFAULT_LAMBDA_MEMORY = Size.mebibytes(3008);
/** Memory for which Lambda gives one full vCPU of CPU time (AWS Lambda's documentation: "Memory and computing power"). */
export const MB_PER_VCPU = 1769;

/**
 * Threads for ONNX Runtime and sharp: the vCPUs the function pays for, not the cores it sees. Between 3,009 and
 * 5,307 MB a function sees 3 cores but gets about 2 vCPUs of CPU time; threads beyond that are throttled, not faster.
 */
export function threadsForMemory(memory: Size): number {
  return Math.max(1, Math.round(memory.toMebibytes() / MB_PER_VCPU));
}
/** Lambda's maximum: a task that does not finish in 15 minutes is retried, and redoes only its unfinished shards. */
const DEFAULT_TIMEOUT = Duration.minutes(15);
/**
 * /tmp holds publish's single-file tables before they are uploaded (pca.csv of a million rows is about 300 MB,
 * pca.parquet about as much again) and nothing else.
 */
const DEFAULT_EPHEMERAL_STORAGE = Size.gibibytes(2);

export interface StageFunctionProps {
  /** A folder built by `buildLambdaBundle()` for `architecture`. */
  readonly codeDir: string;
  readonly architecture: lambda.Architecture;
  /** The data bucket: its input, results and model-cache prefixes are granted as to the instance. */
  readonly data: DataBucket;
  /** 128 to 10,240 MiB; sets the threads the function computes on (threadsForMemory). @default 3008 MiB (about 1.7 vCPUs) */
  readonly memorySize?: Size;
  /** @default 15 minutes */
  readonly timeout?: Duration;
  /** @default 2 GiB */
  readonly ephemeralStorageSize?: Size;
  /** @default RetentionDays.THREE_MONTHS */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * The Lambda function that runs any stage of a run (runtime/lambda/handler.ts), from the same runtime code as
 * the instance. Its role may write its own log group and use the data bucket's prefixes (the same grants as the
 * instance's), nothing else; it is not in a VPC (it reaches S3 and, for a web model's first download, the
 * internet, without a NAT gateway) and has no inbound access of any kind.
 */
export class StageFunction extends Construct {
  readonly function: lambda.Function;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: StageFunctionProps) {
    super(scope, id);
    this.logGroup = operationalLogGroup(this, 'Logs', props.logRetention);
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'orchard stage function: its log group and the data bucket prefixes (images in, results out, model cache)',
    });
    // Only its own log group (AWSLambdaBasicExecutionRole would allow every log group of the account).
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'WriteOwnLogs', actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [this.logGroup.logGroupArn] }),
    );
    props.data.grantReadInput(this.role);
    props.data.grantWriteResults(this.role);
    props.data.grantModelCache(this.role);

    const memory = props.memorySize ?? DEFAULT_LAMBDA_MEMORY;
    if (memory.toMebibytes() < 128 || memory.toMebibytes() > 10240) {
      throw new Error(`expected 128 to 10240 MiB for the stage function's memory but got ${memory.toMebibytes()}`);
    }
    this.function = new lambda.Function(this, 'Function', {
      description: 'orchard: one stage of a run (plan, extract, merge, fit, project, publish) on a shard batch',
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: props.architecture,
      handler: 'index.handler',
      code: lambda.Code.fromAsset(props.codeDir),
      memorySize: memory.toMebibytes(),
      timeout: props.timeout ?? DEFAULT_TIMEOUT,
      ephemeralStorageSize: props.ephemeralStorageSize ?? DEFAULT_EPHEMERAL_STORAGE,
      role: this.role,
      logGroup: this.logGroup,
      // A function's HOME is read-only; the instance's malloc setting keeps memory flat here too. ORCHARD_THREADS:
      // the CPU the function pays for (the handler gives it to ONNX Runtime and sharp).
      environment: { ...PROCESS_ENV, HOME: '/tmp', [LAMBDA_THREADS_ENV]: String(threadsForMemory(memory)) },
    });
    Validations.of(this.function).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'Node.js 22 on purpose: it is the runtime of the EC2 instance (Amazon Linux 2023) and of the tests, and the native modules ' +
        '(sharp, onnxruntime-node) in the asset are the builds tested with it. Node.js 22 is supported by Lambda until 2027.',
    });
  }
}
