import { setTimeout as delay } from 'node:timers/promises';
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { EC2Client } from '@aws-sdk/client-ec2';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SSMClient } from '@aws-sdk/client-ssm';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ExitCode, OrchardError, describeError } from '../runtime/errors';
import { defaultRunId } from '../runtime/pipeline/config';
import { parseLocation } from '../runtime/storage/uri';
import { OUTPUT, PREFIXES, STACKS, readStack, requireOutput } from './stack-outputs';
import { formatDuration, type Clock } from './trigger/clock';
import {
  cancelRun,
  exitMeaning,
  resultLine,
  resultUris,
  sendRun,
  stderrTail,
  stdoutTail,
  waitForCommand,
  type Invocation,
  type RunParameters,
  type Target,
} from './trigger/command';
import { ensureRunning, refuseIfBusy, stopInstance, waitForSsm, type InstanceRef, type StartState } from './trigger/instance';
import { LogFollower } from './trigger/log-follower';
import { executionName, executionResult, startExecution, stopExecution, waitForExecution } from './trigger/scale';
import { fraction, positiveInt, rate, runIdArg } from '../runtime/cli-args';
import { summaryLine } from '../runtime/cli';
import type { RunStatus } from '../runtime/contracts/results';
import type { ScaleExecutionInput, ScaleRunRequest } from '../runtime/contracts/scale';

/**
 * `npm run trigger`: starts a pipeline run on the deployed instance through SSM Run Command.
 *
 * Reads the compute stack's outputs, starts the instance if it is stopped and waits until SSM sees it, sends the
 * run document with CloudWatch output, and with --wait follows the command to its end, prints the result URIs
 * and stops the instance (unless --keep-running): the instance bills only while a run runs.
 */

export interface TriggerClients {
  readonly cfn: CloudFormationClient;
  readonly ec2: EC2Client;
  readonly ssm: SSMClient;
  readonly sfn: SFNClient;
  readonly logs: CloudWatchLogsClient;
}

/** Everything the trigger touches outside itself: swapped in tests. */
export interface TriggerDeps {
  /** The AWS clients for a region (undefined: the SDK's default region chain). */
  clients(region: string | undefined): TriggerClients;
  now(): number;
  sleep(ms: number): Promise<void>;
  /** Aborted on Ctrl-C: waiting stops, and the instance is left as it is. */
  readonly signal?: AbortSignal;
  /** Results (command id, result URIs). */
  out(text: string): void;
  /** Progress and errors. */
  err(text: string): void;
  readonly env: { readonly AWS_REGION?: string; readonly AWS_DEFAULT_REGION?: string };
}

export interface TriggerOptions {
  input?: string;
  output?: string;
  components?: number;
  variance?: number;
  model?: string;
  runId?: string;
  maxErrorRate?: number;
  wait?: boolean;
  keepRunning?: boolean;
  timeoutMinutes: number;
  region?: string;
  stack: string;
  /** Run on the scale stack's state machine (Lambda) instead of the instance. */
  scale?: boolean;
  maxConcurrency?: number;
  shardsPerTask?: number;
  scaleStack: string;
}

/** With --wait, a run still going after this long is cancelled (Fruits-360's 90,000 images take about an hour). */
export const DEFAULT_TIMEOUT_MINUTES = 720;

export function buildProgram(deps: Pick<TriggerDeps, 'out' | 'err' | 'env'>): Command {
  return new Command('trigger')
    .description(
      'Run the orchard pipeline on the deployed EC2 instance through SSM Run Command: start the instance if it is ' +
        'stopped, send the run, and with --wait follow it, print the result URIs and stop the instance. With --scale, ' +
        'run it on AWS Lambda instead: start an execution of the scale stack\'s state machine and with --wait follow it.',
    )
    .usage('[options]   (npm run trigger -- [options])')
    .option('-i, --input <s3-uri>', `images to process (default: s3://<bucket>/${PREFIXES.images})`, s3Uri('--input'))
    .option('-o, --output <s3-uri>', `results go to <output>/<run-id>/ (default: s3://<bucket>/${PREFIXES.results})`, s3Uri('--output'))
    .addOption(new Option('-k, --components <n>', 'keep exactly n principal components').argParser(positiveInt('--components')).conflicts('variance'))
    .addOption(new Option('--variance <fraction>', 'keep the fewest components explaining more than this share of variance (default 0.95)').argParser(fraction('--variance')))
    .option('-m, --model <name|uri>', 'model preset or tfjs model URL / s3:// URI (default mobilenet_v2)')
    .option('--run-id <id>', 'name of the run; give an earlier one to resume it (default: run-<UTC timestamp>)', runIdArg)
    .option('--max-error-rate <fraction>', 'share of failed images still counted a success (default 0.01)', rate('--max-error-rate'))
    .option('--wait', 'wait for the run to end (showing its log lines), print the result URIs, then stop the instance')
    .addOption(new Option('--keep-running', 'with --wait: leave the instance running afterwards').conflicts('scale'))
    .option('--scale', 'run on AWS Lambda through the scale stack\'s state machine (Step Functions Distributed Map) instead of the instance')
    .option('--max-concurrency <n>', 'with --scale: Lambda invocations at once per map (default: the stack\'s, 40)', positiveInt('--max-concurrency'))
    .option('--shards-per-task <n>', 'with --scale: shards of 4096 images per invocation (default 2)', positiveInt('--shards-per-task'))
    .option('--timeout-minutes <n>', 'with --wait: cancel the run if it has not ended after n minutes', positiveInt('--timeout-minutes'), DEFAULT_TIMEOUT_MINUTES)
    .addOption(new Option('--region <region>', 'region of the stacks (default: $AWS_REGION, else the profile\'s)').default(deps.env.AWS_REGION ?? deps.env.AWS_DEFAULT_REGION))
    .option('--stack <name>', 'name of the compute stack', STACKS.compute)
    .option('--scale-stack <name>', 'name of the scale stack', STACKS.scale)
    .addHelpText('after', EXIT_CODES)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: deps.out, writeErr: deps.err });
}

const EXIT_CODES = `
Exit status:
  0    command sent (without --wait), or the run succeeded
  1    the run failed, timed out or was cancelled, or an AWS call failed; the message names the cause
  2    invalid command line
  3    the run finished, but more images failed than --max-error-rate allows (outputs written, no _SUCCESS)
  130  interrupted while waiting (the run goes on; the instance is left running)`;

/** Parses argv (`node trigger …`) and runs the trigger; returns the exit status. Never throws. */
export async function main(argv: string[], deps: TriggerDeps = defaultDeps()): Promise<number> {
  let options: TriggerOptions;
  try {
    options = buildProgram(deps).parse(argv).opts<TriggerOptions>();
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
    throw error;
  }
  try {
    return await trigger(options, deps);
  } catch (error) {
    if (error instanceof OrchardError) {
      deps.err(`trigger: ${error.message}\n`);
      return error.exitCode;
    }
    deps.err(`trigger: unexpected error: ${describeError(error)}\n`);
    return ExitCode.Fatal;
  }
}

export async function trigger(options: TriggerOptions, deps: TriggerDeps): Promise<number> {
  if (options.scale) return triggerScale(options, deps);
  const log = (line: string) => deps.err(`${line}\n`);
  const clock: Clock = { now: deps.now, sleep: deps.sleep, signal: deps.signal };
  const { cfn, ec2, ssm, logs } = deps.clients(options.region);

  const stack = await readStack(cfn, options.stack);
  const origin = `output ${OUTPUT.instanceId} of stack ${stack.stackName} in ${stack.region}`;
  const instance: InstanceRef = { instanceId: requireOutput(stack, OUTPUT.instanceId), origin };
  const target: Target = {
    instanceId: instance.instanceId,
    documentName: requireOutput(stack, OUTPUT.documentName),
    logGroupName: requireOutput(stack, OUTPUT.logGroupName),
  };
  const bucket = requireOutput(stack, OUTPUT.bucketName);
  const run: RunParameters = {
    input: options.input,
    output: options.output,
    components: options.components,
    variance: options.variance,
    model: options.model,
    // Always sent: the folder the results land in must be known here.
    runId: options.runId ?? defaultRunId(new Date(deps.now())),
    maxErrorRate: options.maxErrorRate,
  };
  const output = parseLocation(options.output ?? `s3://${bucket}/${PREFIXES.results}`, '--output');
  const runFolder = output.kind === 's3' ? `s3://${output.bucket}/${output.prefix}${run.runId}/` : '';
  const region = stack.region === '?' ? '' : ` --region ${stack.region}`;

  // 1. Instance running and reachable, command sent. If this trigger started the instance and anything fails
  //    before the command is out, it stops it again: nothing runs on it.
  const start: StartState = { startedByUs: false };
  let commandId: string;
  let sentAt = deps.now();
  try {
    await ensureRunning(ec2, instance, clock, log, start);
    await waitForSsm(ssm, instance, clock, log);
    if (!start.startedByUs) await refuseIfBusy(ssm, instance, target.documentName);
    sentAt = deps.now();
    commandId = await sendRun(ssm, target, run);
  } catch (error) {
    if (start.startedByUs && !options.keepRunning) {
      log(`stopping instance ${instance.instanceId} again: nothing was started on it`);
      await stopInstance(ec2, instance).catch((stopError: unknown) => log(`warning: ${describeError(stopError)}`));
    }
    throw error;
  }

  deps.out(
    [
      `sent run ${run.runId} to instance ${instance.instanceId}: command ${commandId} (document ${target.documentName})`,
      `  logs     aws logs tail ${target.logGroupName} --follow --log-stream-name-prefix ${commandId}${region}`,
      `  status   aws ssm get-command-invocation --command-id ${commandId} --instance-id ${instance.instanceId}${region}`,
      `  results  ${runFolder}`,
      '',
    ].join('\n'),
  );
  const stopHint = `aws ec2 stop-instances --instance-ids ${instance.instanceId}${region}`;
  if (!options.wait) {
    log(
      `not waiting (no --wait): instance ${instance.instanceId} keeps running, and billing, after the run; ` +
        `stop it when the run has ended: ${stopHint}`,
    );
    return ExitCode.Ok;
  }

  // 2. Follow the command to its end.
  const timeoutMs = options.timeoutMinutes * 60_000;
  let outcome;
  try {
    const follower = new LogFollower(logs, { logGroupName: target.logGroupName, logStreamNamePrefix: commandId }, sentAt, log);
    outcome = await waitForCommand(ssm, commandId, instance.instanceId, clock, { timeoutMs, log: (line) => log(`run ${run.runId}: ${line}`), follower });
  } catch (error) {
    // The run goes on without us: leave the instance alone and say how to finish by hand.
    const why = error instanceof OrchardError && error.exitCode === ExitCode.Interrupted ? 'stopped waiting' : describeError(error);
    deps.err(
      `trigger: ${why}; command ${commandId} goes on, instance ${instance.instanceId} is left running: ` +
        `follow the logs as above, then stop it: ${stopHint}\n`,
    );
    return error instanceof OrchardError ? error.exitCode : ExitCode.Fatal;
  }

  let code: number;
  if (outcome.kind === 'timeout') {
    const cancelError = await cancelRun(ssm, commandId, instance.instanceId);
    deps.err(
      `trigger: run ${run.runId} had not ended after ${formatDuration(timeoutMs)} (--timeout-minutes ${options.timeoutMinutes}; last status ${outcome.status}): ` +
        (cancelError ? `could not cancel command ${commandId}: ${cancelError}` : `cancelled command ${commandId}`) +
        `; finished shards are kept: resume with --run-id ${run.runId}\n`,
    );
    code = ExitCode.Fatal;
  } else {
    code = reportEnd(outcome.invocation, { runId: run.runId, runFolder, target, commandId }, deps);
  }

  // 3. Stop the instance: the user pays only while a run runs.
  if (options.keepRunning) {
    log(`instance ${instance.instanceId} left running (--keep-running); stop it with: ${stopHint}`);
  } else {
    try {
      await stopInstance(ec2, instance);
      log(`stopping instance ${instance.instanceId} (pass --keep-running to keep it up)`);
    } catch (error) {
      deps.err(`trigger: warning: ${describeError(error)}\n`);
      if (code === ExitCode.Ok) code = ExitCode.Fatal;
    }
  }
  return code;
}

/**
 * The scale path: an execution of the scale stack's state machine with the run's settings; with --wait, its
 * states, map runs and log lines while it runs, then the result as the instance path prints it.
 */
async function triggerScale(options: TriggerOptions, deps: TriggerDeps): Promise<number> {
  const log = (line: string) => deps.err(`${line}\n`);
  const clock: Clock = { now: deps.now, sleep: deps.sleep, signal: deps.signal };
  const { cfn, sfn, logs } = deps.clients(options.region);
  const stack = await readStack(cfn, options.scaleStack);
  const stateMachineArn = requireOutput(stack, OUTPUT.stateMachineArn);
  const logGroupName = requireOutput(stack, OUTPUT.functionLogGroupName);
  const bucket = requireOutput(stack, OUTPUT.bucketName);
  const runId = options.runId ?? defaultRunId(new Date(deps.now()));
  const output = withSlash(options.output ?? `s3://${bucket}/${PREFIXES.results}`);
  const settings = { components: options.components, variance: options.variance, model: options.model, maxErrorRate: options.maxErrorRate };
  const request: ScaleRunRequest = { input: options.input ?? `s3://${bucket}/${PREFIXES.images}`, output, runId, ...defined(settings) };
  const input: ScaleExecutionInput = { run: request, ...defined({ maxConcurrency: options.maxConcurrency, shardsPerTask: options.shardsPerTask }) };
  const startedAt = deps.now();
  const executionArn = await startExecution(sfn, stateMachineArn, executionName(runId, startedAt), input);
  const runFolder = `${output}${runId}/`;
  const region = stack.region === '?' ? '' : ` --region ${stack.region}`;
  const filterPattern = `{ $.runId = "${runId}" }`;
  deps.out(
    [
      `started run ${runId} on the scale path: execution ${executionArn}`,
      `  logs     aws logs tail ${logGroupName} --follow --filter-pattern '${filterPattern}'${region}`,
      `  status   aws stepfunctions describe-execution --execution-arn ${executionArn}${region}`,
      `  results  ${runFolder}`,
      '',
    ].join('\n'),
  );
  if (!options.wait) {
    log('not waiting (no --wait): the execution goes on by itself; nothing of the scale path bills once it has ended');
    return ExitCode.Ok;
  }

  const timeoutMs = options.timeoutMinutes * 60_000;
  const follower = new LogFollower(logs, { logGroupName, filterPattern }, startedAt, log);
  let outcome;
  try {
    outcome = await waitForExecution(sfn, executionArn, clock, { timeoutMs, log: (line) => log(`run ${runId}: ${line}`), follower });
  } catch (error) {
    const why = error instanceof OrchardError && error.exitCode === ExitCode.Interrupted ? 'stopped waiting' : describeError(error);
    deps.err(`trigger: ${why}; execution ${executionArn} goes on: follow it as above\n`);
    return error instanceof OrchardError ? error.exitCode : ExitCode.Fatal;
  }
  const resume = `finished shards are kept: resume with --run-id ${runId} (on either path), or redrive: aws stepfunctions redrive-execution --execution-arn ${executionArn}${region}`;
  if (outcome.kind === 'timeout') {
    const stopError = await stopExecution(sfn, executionArn, `--timeout-minutes ${options.timeoutMinutes}`);
    deps.err(
      `trigger: run ${runId} had not ended after ${formatDuration(timeoutMs)} (--timeout-minutes ${options.timeoutMinutes}; last status ${outcome.status}): ` +
        `${stopError ? `could not stop execution ${executionArn}: ${stopError}` : `stopped execution ${executionArn}`}; ${resume}\n`,
    );
    return ExitCode.Fatal;
  }
  const { execution } = outcome;
  if (execution.status !== 'SUCCEEDED') {
    const cause = [execution.error, execution.cause].filter(Boolean).join(': ');
    deps.err(`trigger: run ${runId} failed on the scale path: execution ${execution.status}${cause ? ` (${cause})` : ''}; ${resume}\n`);
    return ExitCode.Fatal;
  }
  const result = executionResult(execution);
  const status = result.status as RunStatus;
  if (status !== 'succeeded') {
    deps.err(
      `trigger: run ${runId} ${status === 'too_few_images' ? 'had too few readable images for a PCA' : 'finished with too many failed images (more than --max-error-rate)'}: ` +
        `outputs written without _SUCCESS; see ${runFolder}errors.csv for why each failed\n`,
    );
  }
  deps.out(
    [
      summaryLine({ status, counts: { processed: result.counts.processed ?? 0, failed: result.counts.failed ?? 0 }, components: result.components, explainedVariance: result.explainedVariance, seconds: result.seconds, imagesPerSecond: result.imagesPerSecond, where: 'AWS Lambda' }),
      `results  ${runFolder}`,
      ...resultUris(runFolder).map(([name, uri]) => `  ${name.padEnd(8)} ${uri}`),
      '',
    ].join('\n'),
  );
  return status === 'succeeded' ? ExitCode.Ok : ExitCode.TooManyErrors;
}

function defined<T extends Record<string, unknown>>(values: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}

const withSlash = (uri: string) => (uri.endsWith('/') ? uri : `${uri}/`);

/** Prints how the command ended (result URIs on success) and returns the trigger's exit status. */
function reportEnd(
  invocation: Invocation,
  run: { runId: string; runFolder: string; target: Target; commandId: string },
  deps: Pick<TriggerDeps, 'out' | 'err'>,
): number {
  const results = () => {
    const summary = resultLine(invocation);
    deps.out(
      [
        ...(summary ? [summary] : []),
        `results  ${run.runFolder}`,
        ...resultUris(run.runFolder).map(([name, uri]) => `  ${name.padEnd(8)} ${uri}`),
        '',
      ].join('\n'),
    );
  };
  const status = invocation.Status;
  const details = invocation.StatusDetails;
  const resume = `rerun with --run-id ${run.runId} to resume (finished shards are kept)`;

  if (status === 'Success') {
    results();
    return ExitCode.Ok;
  }
  if (status === 'Failed' && invocation.ResponseCode === ExitCode.TooManyErrors) {
    deps.err(
      `trigger: run ${run.runId} finished with too many failed images (more than --max-error-rate): ` +
        `outputs written without _SUCCESS; see ${run.runFolder}errors.csv for why each failed\n`,
    );
    results();
    return ExitCode.TooManyErrors;
  }
  let why: string;
  if (status === 'TimedOut') {
    why =
      details === 'DeliveryTimedOut'
        ? 'the command never reached the instance (delivery timed out)'
        : `the run exceeded the document's execution timeout; ${resume}`;
  } else if (status === 'Cancelled') {
    why = `the command was cancelled; ${resume}`;
  } else {
    why = `${details && details !== status ? `${status} (${details})` : status}, ${exitMeaning(invocation.ResponseCode)}`;
  }
  deps.err(`trigger: run ${run.runId} failed on instance ${run.target.instanceId}: ${why}\n`);
  const stdout = stdoutTail(invocation);
  if (stdout.length > 0) deps.err(`last lines of its stdout:\n${stdout.map((line) => `  | ${line}\n`).join('')}`);
  const tail = stderrTail(invocation);
  if (tail.lines.length > 0) {
    deps.err(
      `last lines of its stderr${tail.truncated ? ' (as far as the API returns it: its first 8,000 characters)' : ''}:\n` +
        tail.lines.map((line) => `  | ${line}\n`).join(''),
    );
  }
  deps.err(`whole log: CloudWatch Logs group ${run.target.logGroupName}, streams ${run.commandId}/…\n`);
  return ExitCode.Fatal;
}

function defaultDeps(): TriggerDeps {
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(ExitCode.Interrupted);
    controller.abort();
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  return {
    clients: (region) => ({
      cfn: new CloudFormationClient({ region }),
      ec2: new EC2Client({ region }),
      ssm: new SSMClient({ region }),
      sfn: new SFNClient({ region }),
      logs: new CloudWatchLogsClient({ region }),
    }),
    now: () => Date.now(),
    sleep: (ms) => delay(ms, undefined, { signal: controller.signal }).catch(() => undefined),
    signal: controller.signal,
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    env: process.env,
  };
}

function s3Uri(name: string) {
  return (value: string) => {
    let location;
    try {
      location = parseLocation(value, name);
    } catch (error) {
      throw new InvalidArgumentError(describeError(error));
    }
    if (location.kind !== 's3') throw new InvalidArgumentError(`expected an s3:// URI for ${name} (the instance reads and writes S3 only)`);
    return value;
  };
}

if (require.main === module) {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  void main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
