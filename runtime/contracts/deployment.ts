/**
 * Facts the CDK app (lib/, bin/) and the runtime share across a deploy boundary. A value that must stay equal on
 * both sides is declared here once and imported by both; `test/contracts.test.ts` ties each to its use (the
 * lifecycle rule's tag filter and the tag the runtime puts on `_work/` objects, for one).
 *
 * A leaf module: it imports nothing, so every layer may import it.
 */

/** CloudFormation stack names of the app; the trigger and upload find the deployment by them. */
export const STACK_NAMES = { data: 'OrchardData', compute: 'OrchardCompute' } as const;

/** Output keys the stacks declare (CfnOutput ids), read by the scripts in bin/. */
export const STACK_OUTPUTS = {
  bucketName: 'BucketName',
  instanceId: 'InstanceId',
  documentName: 'DocumentName',
  logGroupName: 'LogGroupName',
  sendCommand: 'SendCommand',
} as const;

/** Prefixes of the data bucket: what the instance is granted, and what the document and the trigger default to. */
export const BUCKET_PREFIXES = { images: 'images/', results: 'results/', models: 'models/' } as const;

/**
 * Every `_work/` object carries this tag: the bucket's lifecycle rule expires intermediate files by it (an S3
 * lifecycle filter cannot match a wildcard such as `results/<run-id>/_work/`).
 */
export const INTERMEDIATE_TAG = { key: 'orchard:intermediate', value: 'true' } as const;

/**
 * A run id: it becomes an S3 key segment, a file name and an SSM parameter, so a safe character set. The CLI,
 * the trigger and the SSM document's `allowedPattern` all build their check from this one pattern.
 */
export const RUN_ID_PATTERN_SOURCE = '[A-Za-z0-9][A-Za-z0-9._-]{0,127}';
