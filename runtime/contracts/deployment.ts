/**
 * Facts the CDK app (lib/, bin/) and the runtime share across a deploy boundary. A value that must stay equal on
 * both sides is declared here once and imported by both; `test/contracts.test.ts` ties each to its use (the
 * lifecycle rule's tag filter and the tag the runtime puts on `_work/` objects, for one).
 *
 * A leaf module: it imports nothing, so every layer may import it.
 */

/** CloudFormation stack names of the app; the trigger and upload find the deployment by them. */
export const STACK_NAMES = { data: 'OrchardData', compute: 'OrchardCompute', scale: 'OrchardScale' } as const;

/** Output keys the stacks declare (CfnOutput ids), read by the scripts in bin/. */
export const STACK_OUTPUTS = {
  bucketName: 'BucketName',
  instanceId: 'InstanceId',
  documentName: 'DocumentName',
  logGroupName: 'LogGroupName',
  sendCommand: 'SendCommand',
  stateMachineArn: 'StateMachineArn',
  functionLogGroupName: 'FunctionLogGroupName',
  modelSha256: 'ModelSha256',
} as const;

/** Prefixes of the data bucket: what the instance is granted, and what the document and the trigger default to. */
/**
 * Where things live in the data bucket. `map-results/` holds what the scale path's distributed maps write (Step
 * Functions' result writer cannot tag its objects, so they get a prefix of their own, expired by a rule of its own).
 */
export const BUCKET_PREFIXES = { images: 'images/', results: 'results/', models: 'models/', mapResults: 'map-results/' } as const;

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

/**
 * ONNX Runtime 1.29+ collects usage telemetry on Linux (microsoft/onnxruntime #27379): it writes a device id and an
 * event database under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ and uploads them. Both names turn it off
 * before anything is written: ORT_DISABLE_TELEMETRY is the one 1.30.0 honours (checked with strace and an empty
 * HOME: with ORT_TELEMETRY_DISABLED alone 1.30.0 still writes the device id), ORT_TELEMETRY_DISABLED the one later
 * releases document as the full opt-out (#29843). `loadOrt()` sets them before onnxruntime-node loads, whatever
 * the caller's environment says; the instance's wrapper and the Lambda functions carry them too.
 */
export const ORT_TELEMETRY_OFF = { ORT_DISABLE_TELEMETRY: '1', ORT_TELEMETRY_DISABLED: '1' } as const;

/**
 * Where orchard is deployed (the instance, the Lambda functions) it never downloads a model file: the data stack put
 * the default weights into the bucket's models/, pinned by SHA-256, and a file missing there is an error saying how
 * to place it, not a call to a model hub (`readPinnedFile` in runtime/model/artifacts.ts).
 */
export const MODEL_DOWNLOADS_OFF = { ORCHARD_MODEL_DOWNLOADS: 'off' } as const;

/**
 * The environment `orchard` runs with on the instance (the wrapper that lib/scripts/bootstrap.sh writes) and in
 * the benchmark. glibc otherwise raises its mmap threshold to the largest block freed, up to 32 MB: once a shard's
 * 13-21 MB buffers (features, centred rows, co-moment) have been freed, blocks of that size come from malloc's
 * heaps, which fragment across threads and do not shrink, and the resident set crept by about 5 KB per image. A
 * fixed threshold keeps big blocks mapped and returned whole; 4 MiB leaves the per-batch buffers (~1.2 MB) on the
 * heap, where they are reused. ONNX Runtime's telemetry is off (ORT_TELEMETRY_OFF), and model downloads too
 * (MODEL_DOWNLOADS_OFF).
 */
export const PROCESS_ENV = { MALLOC_MMAP_THRESHOLD_: String(4 * 1024 * 1024), ...ORT_TELEMETRY_OFF, ...MODEL_DOWNLOADS_OFF } as const;

/** The stage function's environment variable that says how many threads it computes on (set from its memory). */
export const LAMBDA_THREADS_ENV = 'ORCHARD_THREADS';
