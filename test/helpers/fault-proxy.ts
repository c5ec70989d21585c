import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mulberry32 } from '../../runtime/random';

/** What the proxy sees of a request when deciding whether to fail it. */
export interface ProxiedRequest {
  readonly method: string;
  /** Path-style, decoded: `/bucket/key`. */
  readonly path: string;
  /** The query string's keys (`list-type`, `uploads`, `tagging`…). */
  readonly query: URLSearchParams;
}

/** The faults to inject; mutable while the proxy runs (lift a denial, stop the throttling). */
export interface FaultRules {
  /** Requests answered 403 AccessDenied, as an IAM policy would (e.g. GetObject on one prefix). */
  deny?: (request: ProxiedRequest) => boolean;
  /** Share of requests answered 503 SlowDown. */
  slowDownRate?: number;
  /** Share of requests whose connection is reset before any answer. */
  resetRate?: number;
  /** Only these requests are subject to slow-downs and resets (default: all). */
  flaky?: (request: ProxiedRequest) => boolean;
  /** Requests never answered (their connection is held open): a network path gone wrong. */
  hang?: (request: ProxiedRequest) => boolean;
  /** Answer `If-None-Match: *` writes as AWS S3 does (412 when the key exists), which s3rver does not. */
  conditionalWrites?: boolean;
}

export interface FaultProxy {
  readonly endpoint: string;
  readonly rules: FaultRules;
  readonly stats: { requests: number; denied: number; slowDowns: number; resets: number; preconditionFailed: number; hung: number };
  close(): Promise<void>;
}

/**
 * A fault-injecting HTTP proxy in front of a real S3 server (s3rver on loopback): the SDK talks to it as to S3,
 * and it forwards every request unless a rule says to fail it the way AWS fails them (AccessDenied, SlowDown, a
 * reset connection, PreconditionFailed). Faults are drawn from a seeded generator, so a test fails the same way
 * every time.
 */
export async function startFaultProxy(upstream: string, rules: FaultRules = {}, seed = 1): Promise<FaultProxy> {
  const target = new URL(upstream);
  const random = mulberry32(seed);
  const stats = { requests: 0, denied: 0, slowDowns: 0, resets: 0, preconditionFailed: 0, hung: 0 };
  // Conditional writes to one key are serialised, so that check-then-write is atomic as on S3.
  const keyLocks = new Map<string, Promise<void>>();

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, body?: Buffer) =>
    new Promise<void>((resolve) => {
      const headers = { ...req.headers };
      delete headers['if-none-match'];
      const upstreamRequest = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers },
        (upstreamResponse) => {
          res.writeHead(upstreamResponse.statusCode ?? 502, upstreamResponse.headers);
          upstreamResponse.pipe(res);
          upstreamResponse.on('end', resolve);
          upstreamResponse.on('error', () => resolve());
        },
      );
      upstreamRequest.on('error', () => {
        res.destroy();
        resolve();
      });
      if (body) upstreamRequest.end(body);
      else req.pipe(upstreamRequest);
    });

  const exists = (path: string) =>
    new Promise<boolean>((resolve, reject) => {
      const head = http.request({ host: target.hostname, port: target.port, method: 'HEAD', path }, (response) => {
        response.resume();
        resolve(response.statusCode === 200);
      });
      head.on('error', reject);
      head.end();
    });

  const server = http.createServer((req, res) => {
    stats.requests++;
    const url = new URL(req.url ?? '/', 'http://proxy');
    const request: ProxiedRequest = { method: req.method ?? 'GET', path: decodeURIComponent(url.pathname), query: url.searchParams };
    if (rules.deny?.(request)) {
      stats.denied++;
      return answer(req, res, 403, 'AccessDenied', 'Access Denied');
    }
    if (rules.hang?.(request)) {
      stats.hung++;
      return;
    }
    if (rules.flaky?.(request) ?? true) {
      if (random() < (rules.resetRate ?? 0)) {
        stats.resets++;
        req.socket.destroy();
        return;
      }
      if (random() < (rules.slowDownRate ?? 0)) {
        stats.slowDowns++;
        return answer(req, res, 503, 'SlowDown', 'Please reduce your request rate.');
      }
    }
    if (rules.conditionalWrites && req.method === 'PUT' && req.headers['if-none-match'] === '*') {
      const previous = keyLocks.get(request.path) ?? Promise.resolve();
      const turn = previous.then(async () => {
        const body = await readBody(req);
        if (await exists(url.pathname)) {
          stats.preconditionFailed++;
          answer(req, res, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
          return;
        }
        await forward(req, res, body);
      });
      keyLocks.set(request.path, turn.catch(() => undefined));
      return;
    }
    void forward(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    rules,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function answer(req: http.IncomingMessage, res: http.ServerResponse, status: number, code: string, message: string): void {
  const send = () => {
    const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-proxy</RequestId></Error>`;
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(xml) });
    // HEAD answers carry no body; the SDK then reads the status alone, as from S3.
    res.end(req.method === 'HEAD' ? undefined : xml);
  };
  // Drain the request body first: answering mid-upload would make the client see a reset instead of the status.
  if (req.readableEnded) return send();
  req.resume();
  req.on('end', send);
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
