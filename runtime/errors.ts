/**
 * One error vocabulary for the whole runtime. Every failure that reaches the CLI carries a machine-readable
 * `code` and the process exit status it maps to, because SSM Run Command shows the exit status and nothing
 * else at a glance: it has to mean something.
 */

/** Exit statuses of `orchard` (documented in docs/cli.md). */
export const ExitCode = {
  /** Finished; failed images within --max-error-rate. */
  Ok: 0,
  /** Fatal: storage, permissions, model loading or any unexpected error. Nothing is published. */
  Fatal: 1,
  /** Invalid command line or configuration. Nothing was started. */
  Usage: 2,
  /**
   * Finished and errors.csv, the report and the manifest written, but the run did not succeed (no _SUCCESS):
   * more images failed than --max-error-rate allows, or fewer than 2 could be processed.
   */
  TooManyErrors: 3,
  /** Interrupted (SIGINT/SIGTERM); rerun with the same --run-id to resume. */
  Interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * Every code an OrchardError may carry: a closed set, so that a code matched elsewhere (a test, the trigger, a
 * retry rule) cannot drift from the one thrown.
 */
export type ErrorCode =
  // configuration and command line
  | 'ERR_INVALID_PARAMETER'
  | 'ERR_INVALID_KEY'
  | 'ERR_NOT_A_DIRECTORY'
  | 'ERR_NO_SOURCE_DIR'
  | 'ERR_NO_INPUT'
  | 'ERR_NO_EMBEDDED_S3'
  // storage and the environment: the run stops, resumable once the cause is fixed
  | 'ERR_ACCESS_DENIED'
  | 'ERR_NO_CREDENTIALS'
  | 'ERR_NO_SUCH_BUCKET'
  | 'ERR_STORAGE'
  | 'ERR_STORAGE_UNREACHABLE'
  | 'ERR_SOURCE_UNREADABLE'
  | 'ERR_NO_SPACE'
  // models and engines
  | 'ERR_MODEL_FETCH'
  | 'ERR_MODEL_LOAD'
  | 'ERR_BACKEND'
  | 'ERR_ENGINE'
  | 'ERR_SHARP'
  // run state
  | 'ERR_RUN_EXISTS'
  | 'ERR_RUN_LOCKED'
  | 'ERR_LEASE_LOST'
  | 'ERR_RESUME_MISMATCH'
  | 'ERR_NO_PLAN'
  | 'ERR_NOT_FITTED'
  | 'ERR_NOT_A_RUN'
  | 'ERR_SHARD_INCOMPLETE'
  | 'ERR_CORRUPT_SHARD'
  | 'ERR_CORRUPT_STATE'
  | 'ERR_INVALID_MOMENTS'
  | 'ERR_TOO_FEW_IMAGES'
  | 'ERR_INTERRUPTED'
  // the trigger and the deployment (bin/)
  | 'ERR_EC2'
  | 'ERR_INSTANCE_BUSY'
  | 'ERR_INSTANCE_GONE'
  | 'ERR_INSTANCE_STATE'
  | 'ERR_SFN_OUTPUT'
  | 'ERR_SFN_START'
  | 'ERR_SFN_STATUS'
  | 'ERR_SSM'
  | 'ERR_SSM_SEND'
  | 'ERR_SSM_STATUS'
  | 'ERR_STACK_NOT_FOUND'
  | 'ERR_STACK_OUTPUT_MISSING'
  | 'ERR_STACK_UNREADABLE'
  | 'ERR_TIMEOUT';

export class OrchardError extends Error {
  constructor(
    message: string,
    readonly code: ErrorCode,
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
