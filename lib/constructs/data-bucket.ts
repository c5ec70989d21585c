import { Duration, Fn, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct, type IConstruct } from 'constructs';
import { BUCKET_PREFIXES as PREFIXES, INTERMEDIATE_TAG } from '../../runtime/contracts/deployment';
import { acknowledgeWildcardResource } from '../nag';

// Where things live in the bucket, and the tag the runtime puts on a run's intermediate objects (a lifecycle
// filter cannot match `results/*\/_work/`, so the intermediate rule filters on the tag): facts shared with the
// runtime, the SSM document, the trigger and the upload command, declared once in runtime/contracts.
export { INTERMEDIATE_TAG, PREFIXES };

/** A principal that is also a construct (a role), so that its stack is known. */
export type Grantee = iam.IGrantable & IConstruct;

/** Uploads that never completed (a killed upload, a crashed run) cost storage until they are aborted. */
const DEFAULT_ABORT_INCOMPLETE_UPLOADS_AFTER = Duration.days(7);
/**
 * Feature shards of a run are deleted by the runtime once the run succeeds; a run that failed and was never
 * resumed leaves them behind. A week leaves time to resume before they go.
 */
const DEFAULT_INTERMEDIATE_EXPIRATION = Duration.days(7);
/** Overwritten or deleted objects stay recoverable this long (versioning), then stop costing. */
const DEFAULT_NONCURRENT_VERSION_EXPIRATION = Duration.days(30);
/** Server access logs are kept for audit this long. */
const DEFAULT_ACCESS_LOG_EXPIRATION = Duration.days(365);

export interface DataBucketProps {
  /**
   * What `cdk destroy` does with the bucket and its access-log bucket. `DESTROY` also empties them first (every
   * object version), through CDK's auto-delete custom resource.
   *
   * @default RemovalPolicy.RETAIN - the buckets and their objects outlive the stack
   */
  readonly removalPolicy?: RemovalPolicy;
  /** @default 7 days */
  readonly abortIncompleteUploadsAfter?: Duration;
  /**
   * How long objects tagged `orchard:intermediate=true` under `results/` are kept (the `_work/` shards of runs
   * that were not resumed); their noncurrent versions go one day after they become noncurrent.
   *
   * @default 7 days
   */
  readonly intermediateExpiration?: Duration;
  /** @default 30 days */
  readonly noncurrentVersionExpiration?: Duration;
  /** @default 365 days */
  readonly accessLogExpiration?: Duration;
}

/**
 * The data bucket: images in (`images/`), results out (`results/`), model cache (`models/`), with server access
 * logs in a second bucket.
 *
 * Security considerations: both buckets block every form of public access, refuse plain HTTP and TLS < 1.2
 * (bucket policy), encrypt at rest with S3-managed keys (SSE-S3; server access logs cannot be delivered to an
 * SSE-KMS bucket), and use bucket-owner-enforced object ownership (no ACLs). The data bucket is versioned, so an
 * overwrite or delete by a run can be undone for `noncurrentVersionExpiration`. Access is granted only through
 * the `grant*` methods below, each scoped to one prefix, to identity policies of the grantee.
 */
export class DataBucket extends Construct {
  readonly bucket: s3.Bucket;
  readonly accessLogsBucket: s3.Bucket;
  private readonly exportName: string;

  constructor(scope: Construct, id: string, props: DataBucketProps = {}) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const autoDeleteObjects = removalPolicy === RemovalPolicy.DESTROY;

    // No access logs of its own: logging it into itself would loop (cdk-nag's S1 accepts a log target bucket).
    this.accessLogsBucket = new s3.Bucket(this, 'AccessLogs', {
      ...secureBucketDefaults(),
      removalPolicy,
      autoDeleteObjects,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: props.accessLogExpiration ?? DEFAULT_ACCESS_LOG_EXPIRATION }],
    });

    this.bucket = new s3.Bucket(this, 'Bucket', {
      ...secureBucketDefaults(),
      versioned: true,
      removalPolicy,
      autoDeleteObjects,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 'data-bucket/',
      lifecycleRules: [
        {
          id: 'abort-incomplete-multipart-uploads',
          abortIncompleteMultipartUploadAfter: props.abortIncompleteUploadsAfter ?? DEFAULT_ABORT_INCOMPLETE_UPLOADS_AFTER,
        },
        {
          id: 'expire-intermediate-shards',
          prefix: PREFIXES.results,
          tagFilters: { [INTERMEDIATE_TAG.key]: INTERMEDIATE_TAG.value },
          expiration: props.intermediateExpiration ?? DEFAULT_INTERMEDIATE_EXPIRATION,
          noncurrentVersionExpiration: Duration.days(1),
        },
        {
          // The scale path's map results: the executions' bookkeeping, read by nobody once the run is published.
          id: 'expire-map-results',
          prefix: PREFIXES.mapResults,
          expiration: props.intermediateExpiration ?? DEFAULT_INTERMEDIATE_EXPIRATION,
          noncurrentVersionExpiration: Duration.days(1),
        },
        {
          id: 'expire-noncurrent-versions',
          noncurrentVersionExpiration: props.noncurrentVersionExpiration ?? DEFAULT_NONCURRENT_VERSION_EXPIRATION,
          expiredObjectDeleteMarker: true,
        },
      ],
    });
    this.exportName = `${Stack.of(this).stackName}-BucketName`;
  }

  /**
   * The bucket name as seen from `scope`. From another stack it goes through one named export
   * (`<data stack>-BucketName`) rather than CDK's generated export names, so the consuming policies read
   * `arn:…:s3:::OrchardData-BucketName/images/*` and the export keeps its name when constructs move.
   */
  bucketNameFor(scope: IConstruct): string {
    const producer = Stack.of(this);
    const consumer = Stack.of(scope);
    if (producer === consumer) return this.bucket.bucketName;
    if (!producer.node.tryFindChild(`Export${this.exportName}`)) {
      producer.exportValue(this.bucket.bucketName, { name: this.exportName, description: 'Name of the orchard data bucket' });
    }
    consumer.addStackDependency(producer, 'the compute stack reads and writes the data bucket');
    return Fn.importValue(this.exportName);
  }

  /** `s3://<bucket>/<prefix>` as seen from `scope`. */
  uriFor(scope: IConstruct, prefix: (typeof PREFIXES)[keyof typeof PREFIXES]): string {
    return `s3://${this.bucketNameFor(scope)}/${prefix}`;
  }

  /** Read the input images: list `images/` and get objects under it. */
  grantReadInput(grantee: Grantee): iam.Grant {
    return this.grantPrefix(grantee, PREFIXES.images, ['s3:GetObject']);
  }

  /**
   * Write a run's results: the runtime also reads back and deletes what it wrote (resume, `_work/` clean-up),
   * tags intermediate objects (the lifecycle rule above) and aborts multipart uploads it could not finish.
   */
  grantWriteResults(grantee: Grantee): iam.Grant {
    return this.grantPrefix(grantee, PREFIXES.results, [
      's3:GetObject',
      's3:PutObject',
      's3:PutObjectTagging',
      's3:DeleteObject',
      's3:AbortMultipartUpload',
    ]);
  }

  /** Read and fill the model cache (`models/`): the default model is copied there on first use. */
  grantModelCache(grantee: Grantee): iam.Grant {
    return this.grantPrefix(grantee, PREFIXES.models, ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload']);
  }

  /**
   * Two identity-policy statements: `s3:ListBucket` on the bucket, only for listings under `prefix`
   * (`s3:prefix` condition), and `objectActions` on the objects under `prefix`.
   */
  private grantPrefix(grantee: Grantee, prefix: string, objectActions: string[]): iam.Grant {
    const bucketArn = Stack.of(grantee).formatArn({ service: 's3', region: '', account: '', resource: this.bucketNameFor(grantee) });
    const list = iam.Grant.addToPrincipal({
      grantee,
      actions: ['s3:ListBucket'],
      resourceArns: [bucketArn],
      conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } },
    });
    const objectsArn = `${bucketArn}/${prefix}*`;
    const objects = iam.Grant.addToPrincipal({ grantee, actions: objectActions, resourceArns: [objectsArn] });
    acknowledgeWildcardResource(
      grantee,
      objectsArn,
      `${objectActions.join(', ')} on the objects under one prefix of the data bucket (${prefix}): a pipeline over any ` +
        'number of objects cannot name them one by one. Listing is limited to the same prefix (s3:prefix condition).',
    );
    return list.combine(objects);
  }
}

/**
 * The settings every bucket here shares (a pure function, so both buckets get the same ones): no public access,
 * no ACLs, SSE-S3 at rest, TLS 1.2 or later in transit.
 */
export function secureBucketDefaults(): s3.BucketProps {
  return {
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
    encryption: s3.BucketEncryption.S3_MANAGED,
    enforceSSL: true,
    minimumTLSVersion: 1.2,
  };
}
