/**
 * GetObject without the SDK's middleware stack, for the many small reads of a run (one per image).
 *
 * Why: through `client.send(GetObjectCommand)` a 5 kB object costs about 1.2 CPU-ms in the SDK's layers
 * (endpoint rules, schema serde, retry strategy, flexible checksums, signing), as much as decoding the image.
 * Here the request is signed by the SDK's own SigV4 signer (@smithy/signature-v4) with the client's resolved
 * credentials and region, and sent on a keep-alive agent. Only a complete 200 answer is used: anything else (an
 * error status, a dropped connection, a short body) returns undefined and the caller asks the SDK, whose
 * retries, error classification and messages then apply unchanged; a failure the SDK would have retried
 * (throttling, a 5xx, a dropped connection) is reported as such, for the caller to count it as one retry.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';

/** Node's SHA-256 in the shape the signer takes (what @smithy/hash-node does). */
class Sha256 {
  private readonly hash: Hash | Hmac;
  constructor(secret?: SourceData) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: SourceData): void {
    this.hash.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.hash.digest()));
  }
}

type SourceData = string | ArrayBuffer | ArrayBufferView;

function bytes(data: SourceData): string | Uint8Array {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** S3's path encoding: every byte but unreserved ones and `/` percent-encoded (encodeURIComponent leaves !'()*). */
function encodeKey(key: string): string {
  return key
    .split('/')
    .map((part) => encodeURIComponent(part).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

/**
 * Idle time in the pool from which a reset connection is taken for one the server closed as idle (servers close
 * idle connections after seconds: Node's after 5).
 */
const IDLE_CLOSE_MS = 1000;

/** Bucket names that can be a DNS label under s3.<region>.amazonaws.com (no dots: TLS wildcard certificates). */
const VIRTUAL_HOSTABLE = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

export class DirectGet {
  private readonly agents = {
    'http:': new http.Agent({ keepAlive: true, maxSockets: 64 }),
    'https:': new https.Agent({ keepAlive: true, maxSockets: 64 }),
  };
  /** When each pooled connection last went back to the pool. */
  private readonly freedAt = new WeakMap<object, number>();
  private signer?: Promise<SignatureV4>;
  /**
   * Set by a refused request (400, 403) or a redirect: s3rver does not check SigV4 signatures, so a signing
   * mistake could only show on AWS. Should one happen, every read goes back to the SDK after a single wasted
   * request; a read the SDK is refused as well stops the run as before.
   */
  private off = false;

  private constructor(
    private readonly client: S3Client,
    private readonly base: URL,
    private readonly pathStyle: boolean,
    private readonly bucket: string,
    /** Silence on a connection after which the request is dropped: the client's own --s3-timeout. */
    private readonly stallMs: number,
  ) {
    for (const agent of Object.values(this.agents)) agent.on('free', (socket: object) => this.freedAt.set(socket, performance.now()));
  }

  /**
   * A direct reader for the client's bucket, or undefined where the SDK's endpoint rules decide more than a URL
   * (FIPS, dual-stack, accelerate, bucket names with dots on AWS): those reads stay with the SDK.
   */
  static async create(client: S3Client, bucket: string, stallMs: number): Promise<DirectGet | undefined> {
    const config = client.config as unknown as {
      endpoint?: () => Promise<{ protocol: string; hostname: string; port?: number; path: string }>;
      forcePathStyle?: boolean;
      useFipsEndpoint: () => Promise<boolean>;
      useDualstackEndpoint: () => Promise<boolean>;
      useAccelerateEndpoint?: boolean;
      serviceConfiguredEndpoint?: () => Promise<unknown>;
      endpointProvider: (parameters: Record<string, unknown>) => { url: URL };
    };
    if (config.endpoint) {
      // A custom endpoint (a local server, MinIO): path-style, as createS3Client asks for with one.
      if (!config.forcePathStyle) return undefined;
      const { protocol, hostname, port, path } = await config.endpoint();
      const host = hostname.includes(':') ? `[${hostname}]` : hostname;
      return new DirectGet(client, new URL(`${protocol}//${host}${port ? `:${port}` : ''}${path}`), true, bucket, stallMs);
    }
    if ((await config.useFipsEndpoint()) || (await config.useDualstackEndpoint()) || config.useAccelerateEndpoint) return undefined;
    // An endpoint set by AWS_ENDPOINT_URL_S3 or a profile's endpoint_url, an S3 Express directory bucket: the SDK's.
    if (config.serviceConfiguredEndpoint && (await config.serviceConfiguredEndpoint())) return undefined;
    if (!VIRTUAL_HOSTABLE.test(bucket) || bucket.endsWith('--x-s3')) return undefined;
    // The SDK's own endpoint rules give the host (amazonaws.com.cn in China, say), never a template of ours.
    const region = await client.config.region();
    const { url } = config.endpointProvider({ Bucket: bucket, Region: region, UseFIPS: false, UseDualStack: false, Accelerate: false, ForcePathStyle: false });
    if (url.protocol !== 'https:' || !url.hostname.startsWith(`${bucket}.`)) return undefined;
    return new DirectGet(client, new URL(`https://${url.host}`), false, bucket, stallMs);
  }

  private getSigner(): Promise<SignatureV4> {
    this.signer ??= (async () =>
      new SignatureV4({ service: 's3', region: await this.client.config.region(), credentials: this.client.config.credentials, sha256: Sha256, uriEscapePath: false, applyChecksum: true }))();
    return this.signer;
  }

  /**
   * The object's bytes; 'retry' after a failure the SDK would retry (429, 5xx, a dropped connection or short
   * body); undefined for any other answer (a missing key, a refusal), which the SDK then reports.
   */
  async get(key: string): Promise<Buffer | 'retry' | undefined> {
    if (this.off) return undefined;
    const basePath = this.base.pathname.replace(/\/+$/, '');
    const path = `${basePath}${this.pathStyle ? `/${this.bucket}` : ''}/${encodeKey(key)}`;
    const request = {
      method: 'GET',
      protocol: this.base.protocol,
      hostname: this.base.hostname,
      port: this.base.port ? Number(this.base.port) : undefined,
      path,
      query: {},
      headers: { host: this.base.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    };
    let signed;
    try {
      // The SDK's clock-skew correction applies here too (systemClockOffset, learnt from S3's answers).
      const offset = (this.client.config as { systemClockOffset?: number }).systemClockOffset ?? 0;
      signed = await (await this.getSigner()).sign(request, { signingDate: new Date(Date.now() + offset) });
    } catch {
      return undefined; // no credentials yet, say: the SDK reports that properly
    }
    const agent = this.agents[this.base.protocol as 'http:' | 'https:'];
    if (!agent) return undefined;
    const answer = await this.send(agent, request.port, path, signed.headers);
    // A connection that sat idle in the pool and was reset before any answer: one the server closed as idle, its
    // close not yet seen by a busy event loop (seen in 20,000-image runs against the embedded server, whose
    // connections close after 5 idle seconds). Sent again at once, once, as Node's documentation advises, rather
    // than counted and warned of as a retry. A reset of a connection in use (a fault) is a retry as before.
    if (answer !== 'stale') return answer;
    const again = await this.send(agent, request.port, path, signed.headers);
    return again === 'stale' ? 'retry' : again;
  }

  private send(agent: http.Agent, port: number | undefined, path: string, headers: http.OutgoingHttpHeaders): Promise<Buffer | 'retry' | 'stale' | undefined> {
    const transport = this.base.protocol === 'https:' ? https : http;
    return new Promise((resolve) => {
      let answered = false;
      let stalled = false;
      let idleMs = 0;
      const req = transport.request({ method: 'GET', host: this.base.hostname, port, path, headers, agent }, (res) => {
        answered = true;
        if (res.statusCode !== 200) {
          const status = res.statusCode ?? 0;
          if (status === 400 || status === 403 || (status >= 300 && status < 400)) this.off = true;
          res.resume();
          resolve(status === 429 || status >= 500 ? 'retry' : undefined);
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', () => resolve('retry'));
        res.on('end', () => {
          const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
          const length = Number(res.headers['content-length']);
          resolve(res.complete && (!Number.isFinite(length) || length === body.length) ? body : 'retry');
        });
        // A response cut short without an error event: after 'end' this changes nothing (the first answer wins).
        res.on('close', () => resolve('retry'));
      });
      req.on('socket', (socket) => (idleMs = req.reusedSocket ? performance.now() - (this.freedAt.get(socket) ?? Infinity) : 0));
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (req.reusedSocket && idleMs >= IDLE_CLOSE_MS && !answered && !stalled && error.code === 'ECONNRESET') return resolve('stale');
        // A host that cannot be reached this way at all: every read goes back to the SDK, not twice each.
        if (['ENOTFOUND', 'ECONNREFUSED', 'EAI_AGAIN'].includes(error.code ?? '') || error.code?.startsWith('ERR_TLS_')) this.off = true;
        resolve('retry');
      });
      // A stalled connection is given up (and the read handed to the SDK) rather than waited on forever.
      req.setTimeout(this.stallMs, () => {
        stalled = true;
        req.destroy();
      });
      req.end();
    });
  }

  close(): void {
    this.agents['http:'].destroy();
    this.agents['https:'].destroy();
  }
}
