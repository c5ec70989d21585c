import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  SendCommandCommand,
  SSMClient,
  type GetCommandInvocationCommandOutput,
} from '@aws-sdk/client-ssm';
import { ExitCode, OrchardError, describeError } from '../../runtime/errors';
import { OUTPUTS, PARTS_PREFIX } from '../../runtime/contracts/results';
import { followRun, type Clock } from './clock';
import type { Log } from './instance';
import type { LogFollower } from './log-follower';

/** The run's settings as the SSM document's parameters take them; undefined ones keep the document's default. */
export interface RunParameters {
  readonly input?: string;
  readonly output?: string;
  readonly components?: number;
  readonly variance?: number;
  readonly model?: string;
  readonly runId: string;
  readonly maxErrorRate?: number;
}

/** How long SSM tries to deliver the command before giving up (the instance is online by then). */
export const DELIVERY_TIMEOUT_SECONDS = 600;
export const COMMAND_POLL_MS = 15_000;
/** Right after SendCommand, GetCommandInvocation may answer InvocationDoesNotExist for a few seconds. */
export const INVOCATION_GRACE_MS = 2 * 60_000;
/** Lines of the run's stderr shown when it failed. */
export const STDERR_TAIL_LINES = 20;
/** GetCommandInvocation returns only the first 8,000 characters of stderr. */
const STDERR_API_LIMIT = 8000;

const TERMINAL = new Set(['Success', 'Failed', 'Cancelled', 'TimedOut']);

/** The document parameters to send: only those given, as strings, plus the run id (always: it names the folder). */
export function documentParameters(run: RunParameters): Record<string, string[]> {
  const parameters: Record<string, string[]> = {};
  const put = (name: string, value: string | number | undefined) => {
    if (value !== undefined) parameters[name] = [String(value)];
  };
  put('input', run.input);
  put('output', run.output);
  put('components', run.components);
  put('variance', run.variance);
  put('model', run.model);
  put('runId', run.runId);
  put('maxErrorRate', run.maxErrorRate);
  return parameters;
}

export interface Target {
  readonly instanceId: string;
  readonly documentName: string;
  readonly logGroupName: string;
}

/** SendCommand with CloudWatch output; returns the command id. */
export async function sendRun(ssm: SSMClient, target: Target, run: RunParameters): Promise<string> {
  let result;
  try {
    result = await ssm.send(
      new SendCommandCommand({
        InstanceIds: [target.instanceId],
        DocumentName: target.documentName,
        Parameters: documentParameters(run),
        Comment: `orchard run ${run.runId}`.slice(0, 100),
        TimeoutSeconds: DELIVERY_TIMEOUT_SECONDS,
        CloudWatchOutputConfig: { CloudWatchOutputEnabled: true, CloudWatchLogGroupName: target.logGroupName },
      }),
    );
  } catch (error) {
    throw new OrchardError(
      `Cannot send document ${target.documentName} to instance ${target.instanceId}: ${describeError(error)}`,
      'ERR_SSM_SEND',
      ExitCode.Fatal,
      { cause: error },
    );
  }
  const commandId = result.Command?.CommandId;
  if (!commandId) throw new OrchardError(`SendCommand returned no command id for ${target.documentName}`, 'ERR_SSM_SEND', ExitCode.Fatal);
  return commandId;
}

export type Invocation = GetCommandInvocationCommandOutput;

export type WaitOutcome =
  | { readonly kind: 'finished'; readonly invocation: Invocation }
  | { readonly kind: 'timeout'; readonly status: string };

/**
 * Polls GetCommandInvocation until the command reaches a terminal status (Success, Failed, Cancelled,
 * TimedOut) or `timeoutMs` passes, logging each status change and a heartbeat while nothing changes.
 */
export async function waitForCommand(
  ssm: SSMClient,
  commandId: string,
  instanceId: string,
  clock: Clock,
  options: { timeoutMs: number; log: Log; pluginName?: string; follower?: LogFollower },
): Promise<WaitOutcome> {
  const outcome = await followRun(clock, { ...options, intervalMs: COMMAND_POLL_MS, lines: options.follower && (() => options.follower!.poll()) }, async (elapsedMs) => {
    const invocation = await getInvocation(ssm, commandId, instanceId, options.pluginName, elapsedMs);
    const finished = invocation && TERMINAL.has(invocation.Status ?? 'Pending');
    return { label: invocation ? statusLabel(invocation) : 'Pending (not registered yet)', done: finished ? invocation : undefined };
  });
  return outcome.kind === 'finished' ? { kind: 'finished', invocation: outcome.value } : outcome;
}

async function getInvocation(
  ssm: SSMClient,
  commandId: string,
  instanceId: string,
  pluginName: string | undefined,
  elapsedMs: number,
): Promise<Invocation | undefined> {
  try {
    return await ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId, PluginName: pluginName }));
  } catch (error) {
    if ((error as { name?: string })?.name === 'InvocationDoesNotExist' && elapsedMs < INVOCATION_GRACE_MS) return undefined;
    throw new OrchardError(
      `Cannot read the status of command ${commandId} on ${instanceId}: ${describeError(error)}`,
      'ERR_SSM_STATUS',
      ExitCode.Fatal,
      { cause: error },
    );
  }
}

function statusLabel(invocation: Invocation): string {
  const { Status, StatusDetails } = invocation;
  return StatusDetails && StatusDetails !== Status ? `${Status} (${StatusDetails})` : `${Status}`;
}

/** Cancels the command; a failure to do so is returned as a message rather than thrown. */
export async function cancelRun(ssm: SSMClient, commandId: string, instanceId: string): Promise<string | undefined> {
  try {
    await ssm.send(new CancelCommandCommand({ CommandId: commandId, InstanceIds: [instanceId] }));
    return undefined;
  } catch (error) {
    return describeError(error);
  }
}

/** What `orchard` exit statuses mean (runtime/errors.ts ExitCode), for a failed command's message. */
const EXIT_MEANINGS: Record<number, string> = {
  [ExitCode.Fatal]: 'fatal error (storage, permissions or model)',
  [ExitCode.Usage]: 'invalid configuration, or the run id is already complete or was started with other settings',
  [ExitCode.TooManyErrors]: 'finished with too many failed images',
  [ExitCode.Interrupted]: 'interrupted',
};

export function exitMeaning(code: number | undefined): string {
  if (code === undefined || code < 0) return 'no exit status';
  return `exit status ${code}${EXIT_MEANINGS[code] ? `: ${EXIT_MEANINGS[code]}` : ''}`;
}

/** The last lines of the run's stderr as the API returns it, and whether the API cut it. */
export function stderrTail(invocation: Invocation, lines = STDERR_TAIL_LINES): { lines: string[]; truncated: boolean } {
  const content = invocation.StandardErrorContent ?? '';
  return { lines: lastLines(content, lines), truncated: content.length >= STDERR_API_LIMIT };
}

/** The last lines of the run's stdout (orchard prints only its result there; a wrapper may add a failure excerpt). */
export function stdoutTail(invocation: Invocation, lines = STDERR_TAIL_LINES): string[] {
  return lastLines(invocation.StandardOutputContent ?? '', lines);
}

function lastLines(content: string, count: number): string[] {
  return content
    .split('\n')
    .filter((line) => line.trim() !== '')
    .slice(-count);
}

/** The runtime's one-line result ("done: 240 images, 0 failed, k=23 …") from the run's stdout, if there. */
export function resultLine(invocation: Invocation): string | undefined {
  return (invocation.StandardOutputContent ?? '')
    .split('\n')
    .find((line) => /^(done|finished with too (many errors|few images)): /.test(line.trim()))
    ?.trim();
}

/** The run folder and its result files, named as runtime/contracts/results.ts names them. */
export function resultUris(runFolder: string): [string, string][] {
  return [
    ['csv', runFolder + OUTPUTS.csv],
    ['parquet', runFolder + OUTPUTS.parquet],
    ['parts', runFolder + PARTS_PREFIX],
    ['model', runFolder + OUTPUTS.model],
    ['errors', runFolder + OUTPUTS.errors],
    ['manifest', runFolder + OUTPUTS.manifest],
    ['report', runFolder + OUTPUTS.report],
  ];
}
