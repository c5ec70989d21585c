import { setTimeout as delay } from 'node:timers/promises';
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { EC2Client } from '@aws-sdk/client-ec2';
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
import { fraction, positiveInt, rate, runIdArg } from '../runtime/cli-args';

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
}

/** With --wait, a run still going after this long is cancelled (Fruits-360's 90,000 images take about an hour). */
export const DEFAULT_TIMEOUT_MINUTES = 720;

export function buildProgram(deps: Pick<TriggerDeps, 'out' | 'err' | 'env'>): Command {
  return new Command('trigger')
    .description(
      'Run the orchard pipeline on the deployed EC2 instance through SSM Run Command: start the instance if it is ' +
        'stopped, send the run, and with --wait follow it, print the result URIs and stop the instance.',
    )
    .usage('[options]   (npm run trigger -- [options])')
    .option('-i, --input <s3-uri>', `images to process (default: s3://<bucket>/${PREFIXES.images})`, s3Uri('--input'))
    .option('-o, --output <s3-uri>', `results go to <output>/<run-id>/ (default: s3://<bucket>/${PREFIXES.results})`, s3Uri('--output'))
    .addOption(new Option('-k, --components <n>', 'keep exactly n principal components').argParser(positiveInt('--components')).conflicts('variance'))
    .addOption(new Option('--variance <fraction>', 'keep the fewest components explaining more than this share of variance (default 0.95)').argParser(fraction('--variance')))
    .option('-m, --model <name|uri>', 'model preset or tfjs model URL / s3:// URI (default mobilenet_v2)')
    .option('--run-id <id>', 'name of the run; give an earlier one to resume it (default: run-<UTC timestamp>)', runIdArg)
    .option('--max-error-rate <fraction>', 'share of failed images still counted a success (default 0.01)', rate('--max-error-rate'))
    .option('--wait', 'wait for the run to end, print the result URIs, then stop the instance')
    .option('--keep-running', 'with --wait: leave the instance running afterwards')
    .option('--timeout-minutes <n>', 'with --wait: cancel the run if it has not ended after n minutes', positiveInt('--timeout-minutes'), DEFAULT_TIMEOUT_MINUTES)
    .addOption(new Option('--region <region>', 'region of the stacks (default: $AWS_REGION, else the profile\'s)').default(deps.env.AWS_REGION ?? deps.env.AWS_DEFAULT_REGION))
    .option('--stack <name>', 'name of the compute stack', STACKS.compute)
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
  const log = (line: string) => deps.err(`${line}\n`);
  const clock: Clock = { now: deps.now, sleep: deps.sleep, signal: deps.signal };
  const { cfn, ec2, ssm } = deps.clients(options.region);

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
  try {
    await ensureRunning(ec2, instance, clock, log, start);
    await waitForSsm(ssm, instance, clock, log);
    if (!start.startedByUs) await refuseIfBusy(ssm, instance, target.documentName);
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
    outcome = await waitForCommand(ssm, commandId, instance.instanceId, clock, { timeoutMs, log: (line) => log(`run ${run.runId}: ${line}`) });
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
