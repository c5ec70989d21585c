/**
 * One error vocabulary for the whole runtime. Every failure that reaches the CLI carries a machine-readable
 * `code` and the process exit status it maps to, because SSM Run Command shows the exit status and nothing
 * else at a glance: it has to mean something.
 */

/** Exit statuses of `orchard` (documented in the README). */
export const ExitCode = {
  /** Finished; failed images within --max-error-rate. */
  Ok: 0,
  /** Fatal: storage, permissions, model loading or any unexpected error. Nothing is published. */
  Fatal: 1,
  /** Invalid command line or configuration. Nothing was started. */
  Usage: 2,
  /** Finished, outputs written, but more images failed than --max-error-rate allows (no _SUCCESS). */
  TooManyErrors: 3,
  /** Interrupted (SIGINT/SIGTERM); rerun with the same --run-id to resume. */
  Interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class OrchardError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly exitCode: ExitCode = ExitCode.Fatal,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'OrchardError';
  }
}

/** A configuration or command-line value is wrong: "expected X for Y but got Z". */
export function invalidParameter(name: string, expected: string, actual: unknown): OrchardError {
  return new OrchardError(
    `Expected ${expected} for ${name} but got ${JSON.stringify(actual)}`,
    'ERR_INVALID_PARAMETER',
    ExitCode.Usage,
  );
}

/** A short, single-line description of any thrown value. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message.split('\n')[0] ?? error.name;
  return String(error);
}
