import { ExitCode, OrchardError } from './errors';

/**
 * How long work told to stop (Ctrl-C, SIGTERM) may take to stop by itself, at the end of its batch, before it is
 * abandoned: a request to an endpoint that never answers, or any other wait, must not keep a run from ending.
 */
export const STOP_GRACE_MS = 1_500;

export function interrupted(): OrchardError {
  return new OrchardError('Interrupted', 'ERR_INTERRUPTED', ExitCode.Interrupted);
}

/**
 * The work's result; or, once the signal has aborted and the work has not settled within `graceMs`, the
 * "interrupted" error (the work is left behind: the process is about to exit).
 */
export function interruptible<T>(work: Promise<T>, signal: AbortSignal | undefined, graceMs = STOP_GRACE_MS): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      timer = setTimeout(() => reject(interrupted()), graceMs);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    });
  });
}

/** Whether the work settled within `ms` (it is awaited no longer after that). */
export async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([work.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}
