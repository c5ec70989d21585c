import type { S3Client } from '@aws-sdk/client-s3';

/** One retried request: the command, how many retries it needed, and the running count for that command. */
export interface RetryEvent {
  readonly command: string;
  readonly retries: number;
  readonly total: number;
  /** Milliseconds the SDK waited between attempts, in all, for this request. */
  readonly delayMs: number;
  /** Whether the request failed in the end (its error stops the run). */
  readonly failed: boolean;
}

/**
 * Counts the S3 requests the SDK retried (throttling, 5xx, reset connections), per command, so that retries
 * are neither silent (a warning line per command, at the 1st, 10th, 100th… retry) nor lost (the totals go into
 * the manifest). The SDK itself retries up to `maxAttempts` with backoff; only what it gives up on stops a run.
 */
export class S3RetryCounter {
  private readonly counts = new Map<string, number>();

  constructor(private readonly onRetry?: (event: RetryEvent) => void) {}

  record(command: string, retries: number, delayMs: number, failed: boolean): void {
    if (retries <= 0) return;
    const before = this.counts.get(command) ?? 0;
    const total = before + retries;
    this.counts.set(command, total);
    // A line when the count reaches the next power of ten (1, 10, 100, …). Not for a request that failed in the
    // end: its error stops the run and is the one line that says what happened (with the attempts it took).
    if (!failed && Math.floor(Math.log10(total)) > Math.floor(Math.log10(Math.max(before, 0.5)))) {
      this.onRetry?.({ command, retries, total, delayMs, failed });
    }
  }

  totals(): Record<string, number> {
    return Object.fromEntries([...this.counts.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
  }

  /** Every retry so far, all commands together. */
  get total(): number {
    return [...this.counts.values()].reduce((a, b) => a + b, 0);
  }

  /** Counts the retries of the client's requests from now on (after the SDK's own retry loop has ended). */
  attach(client: S3Client): void {
    attached.set(client, this);
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const command = String(context.commandName ?? 'request').replace(/Command$/, '');
        try {
          const result = await next(args);
          const metadata = (result.output as { $metadata?: { attempts?: number; totalRetryDelay?: number } }).$metadata;
          this.record(command, (metadata?.attempts ?? 1) - 1, metadata?.totalRetryDelay ?? 0, false);
          return result;
        } catch (error) {
          const metadata = (error as { $metadata?: { attempts?: number; totalRetryDelay?: number } }).$metadata;
          this.record(command, (metadata?.attempts ?? 1) - 1, metadata?.totalRetryDelay ?? 0, true);
          throw error;
        }
      },
      { step: 'initialize', name: 'orchardRetryCounter' },
    );
  }
}

const attached = new WeakMap<S3Client, S3RetryCounter>();

/** The counter attached to a client, for requests made beside the SDK (s3-direct-get.ts) to be counted too. */
export function retryCounterOf(client: S3Client): S3RetryCounter | undefined {
  return attached.get(client);
}
