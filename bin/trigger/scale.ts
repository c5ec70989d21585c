import {
  DescribeExecutionCommand,
  DescribeMapRunCommand,
  GetExecutionHistoryCommand,
  ListMapRunsCommand,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
  type DescribeExecutionCommandOutput,
} from '@aws-sdk/client-sfn';
import type { PublishOutput, ScaleExecutionInput } from '../../runtime/contracts/scale';
import { ExitCode, OrchardError, describeError } from '../../runtime/errors';
import { followRun, type Clock } from './clock';
import type { LogFollower } from './log-follower';
import type { Log } from './instance';

export const EXECUTION_POLL_MS = 10_000;

const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED']);

/**
 * An execution name for a run: the run id and the time (a run resumed later gets an execution of its own; names
 * are unique per state machine for 90 days), in the characters and length Step Functions allows.
 */
export function executionName(runId: string, now: number): string {
  const stamp = new Date(now).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${runId.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 80 - stamp.length - 1)}-${stamp}`;
}

/** StartExecution; returns the execution ARN. */
export async function startExecution(client: SFNClient, stateMachineArn: string, name: string, input: ScaleExecutionInput): Promise<string> {
  try {
    const started = await client.send(new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(input) }));
    if (!started.executionArn) throw new Error('StartExecution returned no execution ARN');
    return started.executionArn;
  } catch (error) {
    throw new OrchardError(`Cannot start an execution of ${stateMachineArn}: ${describeError(error)}`, 'ERR_SFN_START', ExitCode.Fatal, { cause: error });
  }
}

export type ExecutionOutcome =
  | { readonly kind: 'finished'; readonly execution: DescribeExecutionCommandOutput }
  | { readonly kind: 'timeout'; readonly status: string };

/**
 * Polls the execution until it ends or `timeoutMs` passes: a line whenever the current state or a map run's item
 * counts change (succeeded, failed, running of the total), a heartbeat when nothing does, and the run's own log
 * lines as they appear.
 */
export async function waitForExecution(
  client: SFNClient,
  executionArn: string,
  clock: Clock,
  options: { readonly timeoutMs: number; readonly log: Log; readonly follower?: LogFollower },
): Promise<ExecutionOutcome> {
  const outcome = await followRun(clock, { ...options, intervalMs: EXECUTION_POLL_MS, lines: options.follower && (() => options.follower!.poll()) }, async () => {
    const execution = await call('read the status of', executionArn, () => client.send(new DescribeExecutionCommand({ executionArn })));
    const status = execution.status ?? 'UNKNOWN';
    if (TERMINAL.has(status)) return { label: status, done: execution };
    return { label: [status, await currentState(client, executionArn), ...(await mapRunCounts(client, executionArn))].filter(Boolean).join(', ') };
  });
  return outcome.kind === 'finished' ? { kind: 'finished', execution: outcome.value } : outcome;
}

/** The state the execution last entered (`state Extract`). */
async function currentState(client: SFNClient, executionArn: string): Promise<string | undefined> {
  const history = await call('read the history of', executionArn, () => client.send(new GetExecutionHistoryCommand({ executionArn, reverseOrder: true, maxResults: 20 })));
  const entered = history.events?.find((event) => event.stateEnteredEventDetails?.name);
  return entered ? `state ${entered.stateEnteredEventDetails!.name}` : undefined;
}

/** Each map run's items: `Extract: 12 of 123 succeeded, 40 running, 0 failed`. */
async function mapRunCounts(client: SFNClient, executionArn: string): Promise<string[]> {
  const runs = await call('list the map runs of', executionArn, () => client.send(new ListMapRunsCommand({ executionArn })));
  const lines: string[] = [];
  for (const run of runs.mapRuns ?? []) {
    if (!run.mapRunArn) continue;
    const described = await call('read map run', run.mapRunArn, () => client.send(new DescribeMapRunCommand({ mapRunArn: run.mapRunArn })));
    const counts = described.itemCounts;
    if (!counts) continue;
    // arn:aws:states:region:account:mapRun:<state machine>/<label>:<id>
    const label = run.mapRunArn.split(':').at(-2)?.split('/').at(-1) ?? 'map';
    lines.push(`${label}: ${counts.succeeded ?? 0} of ${counts.total ?? 0} batches succeeded, ${counts.running ?? 0} running, ${counts.failed ?? 0} failed`);
  }
  return lines;
}

/** Stops the execution; a failure to do so is returned as a message rather than thrown. */
export async function stopExecution(client: SFNClient, executionArn: string, cause: string): Promise<string | undefined> {
  try {
    await client.send(new StopExecutionCommand({ executionArn, error: 'orchard.Timeout', cause }));
    return undefined;
  } catch (error) {
    return describeError(error);
  }
}

/** The run's result from a succeeded execution's output (the publish stage's, or fit's for a run without PCA). */
export function executionResult(execution: DescribeExecutionCommandOutput): PublishOutput {
  try {
    const output = JSON.parse(execution.output ?? '') as PublishOutput;
    if (typeof output.status === 'string' && typeof output.runUri === 'string') return output;
  } catch {
    // Reported below.
  }
  throw new OrchardError(`Execution ${execution.executionArn} succeeded without a run result in its output: ${(execution.output ?? '').slice(0, 300)}`, 'ERR_SFN_OUTPUT', ExitCode.Fatal);
}

async function call<T>(what: string, arn: string, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (error) {
    throw new OrchardError(`Cannot ${what} ${arn}: ${describeError(error)}`, 'ERR_SFN_STATUS', ExitCode.Fatal, { cause: error });
  }
}
