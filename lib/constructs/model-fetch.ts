import { CustomResource, Duration, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { cacheSlug, sha256Key } from '../../runtime/model/artifacts';
import { PREFIXES, type DataBucket } from './data-bucket';
import { operationalLogGroup } from './log-group';

/** The function's own bound: the download's timeout (FETCH_TIMEOUT_MS, 2 minutes) plus the upload to S3. */
const FUNCTION_TIMEOUT = Duration.minutes(4);
/**
 * How long CloudFormation waits for the answer: a function that never answered (it always does, see
 * runtime/lambda/fetch-model.ts) fails the deployment after this, not after CloudFormation's default hour.
 */
const SERVICE_TIMEOUT = Duration.minutes(5);

export interface ModelFetchProps {
  /** The bucket whose models/ receives the file. */
  readonly data: DataBucket;
  /** The weights file to bring in (the mobilenet_v2 preset's URL). */
  readonly url: string;
  /** A folder built by `buildModelFetchBundle()`. */
  readonly codeDir: string;
  /** @default RetentionDays.THREE_MONTHS */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * Brings the default model into `models/` of the data bucket at `cdk deploy`, once, pinned by SHA-256
 * (runtime/lambda/fetch-model.ts): the instance and the stage functions then read it from the bucket and never from
 * the web. A fetch that fails fails the data stack's deployment within minutes, with the URL and the command that
 * places the file by hand. Its role may write its own log group, list models/ (so that a missing file reads as
 * missing) and read and write the file and its `.sha256`, nothing else.
 */
export class ModelFetch extends Construct {
  readonly function: lambda.Function;
  readonly role: iam.Role;
  /** The file's SHA-256, as recorded in the bucket. */
  readonly sha256: string;
  /** The file's key in the bucket. */
  readonly key: string;

  constructor(scope: Construct, id: string, props: ModelFetchProps) {
    super(scope, id);
    const logGroup = operationalLogGroup(this, 'Logs', props.logRetention);
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'orchard model fetch: its log group, the default model file and its SHA-256 under models/ of the data bucket',
    });
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'WriteOwnLogs', actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [logGroup.logGroupArn] }));
    const bucket = props.data.bucket;
    const key = `${PREFIXES.models}${cacheSlug(props.url)}`;
    this.key = key;
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ListModels', actions: ['s3:ListBucket'], resources: [bucket.bucketArn], conditions: { StringLike: { 's3:prefix': [`${PREFIXES.models}*`] } } }),
    );
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ReadWriteModel', actions: ['s3:GetObject', 's3:PutObject'], resources: [bucket.arnForObjects(key), bucket.arnForObjects(sha256Key(key))] }),
    );

    this.function = new lambda.Function(this, 'Function', {
      description: 'orchard: brings the default model into models/ of the data bucket, pinned by SHA-256',
      runtime: lambda.Runtime.NODEJS_22_X,
      handler: 'index.handler',
      code: lambda.Code.fromAsset(props.codeDir),
      memorySize: 512,
      timeout: FUNCTION_TIMEOUT,
      role: this.role,
      logGroup,
    });
    Validations.of(this.function).acknowledge({
      id: 'AwsSolutions-L1',
      reason: 'Node.js 22 on purpose: the runtime of the rest of orchard (instance, stage functions, tests), whose model code this function reuses. Supported by Lambda until 2027.',
    });

    const resource = new CustomResource(this, 'Model', {
      serviceToken: this.function.functionArn,
      serviceTimeout: SERVICE_TIMEOUT,
      resourceType: 'Custom::OrchardModel',
      properties: { Bucket: bucket.bucketName, Prefix: PREFIXES.models, Url: props.url },
    });
    // The answer waits for the role's policy: without it the first fetch would be denied.
    resource.node.addDependency(this.role);
    this.sha256 = resource.getAttString('Sha256');
  }
}
