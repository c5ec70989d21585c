import { Duration, Size, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { PROCESS_ENV } from '../../runtime/contracts/deployment';
import type { DataBucket } from './data-bucket';
import { operationalLogGroup } from './log-group';

/**
 * 3,538 MB is where Lambda gives a function two full vCPUs: ONNX Runtime computes on both while sharp decodes.
 * A 4,096-image shard is about 45 s of work at that size (two shards per invocation by default).
 */
const DEFAULT_MEMORY = Size.mebibytes(3538);
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
  /** @default 3538 MiB (two vCPUs) */
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

    this.function = new lambda.Function(this, 'Function', {
      description: 'orchard: one stage of a run (plan, extract, merge, fit, project, publish) on a shard batch',
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: props.architecture,
      handler: 'index.handler',
      code: lambda.Code.fromAsset(props.codeDir),
      memorySize: (props.memorySize ?? DEFAULT_MEMORY).toMebibytes(),
      timeout: props.timeout ?? DEFAULT_TIMEOUT,
      ephemeralStorageSize: props.ephemeralStorageSize ?? DEFAULT_EPHEMERAL_STORAGE,
      role: this.role,
      logGroup: this.logGroup,
      // A function's HOME is read-only; the instance's malloc setting keeps memory flat here too.
      environment: { ...PROCESS_ENV, HOME: '/tmp' },
    });
    Validations.of(this.function).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'Node.js 22 on purpose: it is the runtime of the EC2 instance (Amazon Linux 2023) and of the tests, and the native modules ' +
        '(sharp, onnxruntime-node) in the asset are the builds tested with it. Node.js 22 is supported by Lambda until 2027.',
    });
  }
}
