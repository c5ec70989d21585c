/**
 * The data stack's custom resource that brings the default model into the bucket once, at `cdk deploy`: Keras's
 * MobileNetV2 weights file is read from `models/` when it is there already (a later deploy, or a file placed by
 * hand), downloaded into it otherwise, and pinned by its SHA-256 (`<file>.sha256`, recorded on the first fetch,
 * checked on every later load, here and by every run). The instance and the stage functions then read the model
 * from the bucket only. A fetch that fails fails the deployment at once, with the URL and the way to place the file
 * by hand; the download is bounded by a timeout well inside the function's own.
 */
import { createHash } from 'node:crypto';
import { cacheSlug, readPinnedFile } from '../model/artifacts';
import { describeError } from '../errors';
import { S3Storage, createS3Client } from '../storage';

/** The download's bound: the file is 14 MB; the function's own timeout (lib/constructs/model-fetch.ts) is longer. */
export const FETCH_TIMEOUT_MS = 120_000;

/** What the stack gives the custom resource. */
export interface FetchModelProperties {
  readonly Bucket: string;
  /** The models/ prefix of the bucket. */
  readonly Prefix: string;
  readonly Url: string;
}

/** The part of a CloudFormation custom resource event this reads. */
export interface FetchModelEvent {
  readonly RequestType: 'Create' | 'Update' | 'Delete';
  readonly PhysicalResourceId?: string;
  readonly ResourceProperties: FetchModelProperties;
}

/** The whole event CloudFormation sends to a custom resource's function. */
export interface CustomResourceEvent extends FetchModelEvent {
  readonly ResponseURL: string;
  readonly StackId: string;
  readonly RequestId: string;
  readonly LogicalResourceId: string;
}

export interface FetchModelResult {
  readonly PhysicalResourceId: string;
  readonly Data?: { readonly Sha256: string; readonly Key: string };
}

export interface FetchModelOptions {
  readonly timeoutMs?: number;
  /** S3 client settings (tests: a local S3 server). Lambda's own region otherwise. */
  readonly endpoint?: string;
  readonly region?: string;
}

export async function fetchModel(event: FetchModelEvent, options: FetchModelOptions = {}): Promise<FetchModelResult> {
  const { Bucket, Prefix, Url } = event.ResourceProperties;
  const key = cacheSlug(Url);
  // The model stays when the stack goes: it is data in a bucket that outlives the stack by default.
  if (event.RequestType === 'Delete') return { PhysicalResourceId: event.PhysicalResourceId ?? `${Bucket}/${Prefix}${key}` };
  const cache = new S3Storage(createS3Client({ region: options.region, endpoint: options.endpoint }), Bucket, Prefix);
  const timeoutMs = options.timeoutMs ?? FETCH_TIMEOUT_MS;
  const timedFetch: typeof fetch = (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  try {
    const { bytes } = await readPinnedFile(Url, { cache, fetch: timedFetch });
    return { PhysicalResourceId: `${Bucket}/${Prefix}${key}`, Data: { Sha256: createHash('sha256').update(bytes).digest('hex'), Key: `${Prefix}${key}` } };
  } catch (error) {
    // The runtime's own advice (its Fix) is for the CLI; here the deploy's is given.
    const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
    throw new Error(
      `orchard could not bring the model into s3://${Bucket}/${Prefix} (${describeError(cause)}; downloads time out after ` +
        `${timeoutMs / 1000} s). Place it by hand from any machine that reaches ${Url}: ` +
        `curl -fLo model.h5 '${Url}' && aws s3 cp model.h5 's3://${Bucket}/${Prefix}${key}', then run cdk deploy again`,
    );
  }
}

/**
 * The Lambda entry point: CloudFormation invokes it and waits for the answer at ResponseURL, which it always gets
 * (success, or failure with the reason), before the function's own timeout. The custom resource's ServiceTimeout
 * bounds the wait even if the function never answers.
 */
export async function handler(event: CustomResourceEvent, options: FetchModelOptions = { region: process.env.AWS_REGION }): Promise<void> {
  let result: FetchModelResult | undefined;
  let reason: string | undefined;
  try {
    result = await fetchModel(event, options);
  } catch (error) {
    reason = describeError(error);
    console.error(reason);
  }
  const body = JSON.stringify({
    Status: reason === undefined ? 'SUCCESS' : 'FAILED',
    Reason: reason ?? 'the model is in the bucket',
    PhysicalResourceId: result?.PhysicalResourceId ?? event.PhysicalResourceId ?? event.LogicalResourceId,
    StackId: event.StackId,
    RequestId: event.RequestId,
    LogicalResourceId: event.LogicalResourceId,
    Data: result?.Data,
  });
  // The pre-signed URL is signed for no content type.
  const response = await fetch(event.ResponseURL, { method: 'PUT', body, headers: { 'content-type': '' }, signal: AbortSignal.timeout(30_000) });
  if (!response.ok) throw new Error(`CloudFormation's response URL answered HTTP ${response.status}`);
}
