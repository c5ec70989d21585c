import { DescribeInstancesCommand, EC2Client, StartInstancesCommand, StopInstancesCommand } from '@aws-sdk/client-ec2';
import { DescribeInstanceInformationCommand, ListCommandsCommand, SSMClient } from '@aws-sdk/client-ssm';
import { ExitCode, OrchardError, describeError } from '../../runtime/errors';
import { formatDuration, pollUntil, type Clock } from './clock';

/**
 * The run instance's life around one trigger: start it if it is stopped, wait until SSM can reach it, stop it
 * afterwards. Every wait polls through the injected clock and is bounded.
 */

/** Instance start (stopped → running) takes about a minute; stopping a few. */
export const INSTANCE_STATE_TIMEOUT_MS = 10 * 60_000;
export const INSTANCE_POLL_MS = 5_000;
/** The SSM agent registers a minute or two after boot. */
export const SSM_ONLINE_TIMEOUT_MS = 10 * 60_000;
export const SSM_POLL_MS = 10_000;

export type Log = (line: string) => void;

export interface InstanceRef {
  readonly instanceId: string;
  /** Where the id came from, for messages: "output InstanceId of stack OrchardCompute in eu-west-1". */
  readonly origin: string;
}

/** What happened while making sure the instance runs. */
export interface StartState {
  /** State found before anything was done. */
  initialState?: string;
  /** True once StartInstances was accepted: this trigger is responsible for stopping it again. */
  startedByUs: boolean;
}

/** Current EC2 state name (pending, running, stopping, stopped, shutting-down, terminated). */
export async function instanceState(ec2: EC2Client, ref: InstanceRef): Promise<string> {
  let result;
  try {
    result = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [ref.instanceId] }));
  } catch (error) {
    const name = (error as { name?: string })?.name ?? '';
    if (name.startsWith('InvalidInstanceID')) throw instanceGone(ref, 'does not exist');
    throw new OrchardError(`Cannot describe instance ${ref.instanceId}: ${describeError(error)}`, 'ERR_EC2', ExitCode.Fatal, { cause: error });
  }
  const state = result.Reservations?.[0]?.Instances?.[0]?.State?.Name;
  if (!state) throw instanceGone(ref, 'does not exist');
  return state;
}

/**
 * Brings the instance to `running`: waits out `pending`, waits for `stopping` to end and then starts it, starts
 * it when `stopped`. `state.startedByUs` is set as soon as StartInstances succeeds, so a caller that fails later
 * still knows to stop it.
 */
export async function ensureRunning(ec2: EC2Client, ref: InstanceRef, clock: Clock, log: Log, state: StartState): Promise<void> {
  let current = await instanceState(ec2, ref);
  state.initialState = current;
  if (current === 'shutting-down' || current === 'terminated') throw instanceGone(ref, `is ${current}`);
  if (current === 'stopping') {
    log(`instance ${ref.instanceId} is stopping; waiting until it has stopped to start it again`);
    current = await waitForState(ec2, ref, clock, 'stopped', ['stopping']);
  }
  if (current === 'stopped') {
    log(`starting instance ${ref.instanceId} (it was stopped)`);
    try {
      await ec2.send(new StartInstancesCommand({ InstanceIds: [ref.instanceId] }));
    } catch (error) {
      throw new OrchardError(`Cannot start instance ${ref.instanceId}: ${describeError(error)}`, 'ERR_EC2', ExitCode.Fatal, { cause: error });
    }
    state.startedByUs = true;
    current = 'pending';
  }
  if (current === 'pending') {
    const started = clock.now();
    await waitForState(ec2, ref, clock, 'running', ['pending', 'stopped']);
    log(`instance ${ref.instanceId} is running (after ${formatDuration(clock.now() - started)})`);
  } else if (current === 'running') {
    log(`instance ${ref.instanceId} is already running`);
  } else {
    throw new OrchardError(`Instance ${ref.instanceId} is in an unexpected state: ${current}`, 'ERR_INSTANCE_STATE', ExitCode.Fatal);
  }
}

/**
 * Polls until the instance is in `target`. `transient` are the states it may pass through on the way (right
 * after StartInstances, DescribeInstances can still say `stopped` for a moment); any other state is an error.
 */
async function waitForState(ec2: EC2Client, ref: InstanceRef, clock: Clock, target: string, transient: readonly string[]): Promise<string> {
  return pollUntil(
    clock,
    { timeoutMs: INSTANCE_STATE_TIMEOUT_MS, intervalMs: INSTANCE_POLL_MS, what: `instance ${ref.instanceId} to be ${target}` },
    async () => {
      const state = await instanceState(ec2, ref);
      if (state === target) return state;
      if (transient.includes(state)) return undefined;
      throw new OrchardError(
        `Instance ${ref.instanceId} went ${state} while waiting for it to be ${target}: see its system log (EC2 console, Actions → Monitor → Get system log)`,
        'ERR_INSTANCE_STATE',
        ExitCode.Fatal,
      );
    },
  );
}

/** Waits until the instance's SSM agent reports Online (Run Command cannot reach it before). */
export async function waitForSsm(ssm: SSMClient, ref: InstanceRef, clock: Clock, log: Log): Promise<void> {
  let last = 'not registered';
  const started = clock.now();
  let said = false;
  await pollUntil(
    clock,
    {
      timeoutMs: SSM_ONLINE_TIMEOUT_MS,
      intervalMs: SSM_POLL_MS,
      what: `the SSM agent of instance ${ref.instanceId} to be online`,
      get hint() {
        return `last status: ${last}. The agent needs outbound HTTPS to the SSM endpoints and the instance role's SSM permissions; see the instance's system log`;
      },
    },
    async () => {
      let info;
      try {
        const result = await ssm.send(
          new DescribeInstanceInformationCommand({ Filters: [{ Key: 'InstanceIds', Values: [ref.instanceId] }] }),
        );
        info = result.InstanceInformationList?.[0];
      } catch (error) {
        throw new OrchardError(`Cannot ask SSM about instance ${ref.instanceId}: ${describeError(error)}`, 'ERR_SSM', ExitCode.Fatal, { cause: error });
      }
      if (info?.PingStatus === 'Online') return true;
      last = info?.PingStatus ?? 'not registered';
      if (!said) log(`waiting for the SSM agent on ${ref.instanceId} (${last})`);
      said = true;
      return undefined;
    },
  );
  if (said) log(`SSM agent on ${ref.instanceId} is online (after ${formatDuration(clock.now() - started)})`);
}

/**
 * Refuses to start a second run next to one still going on the instance (they would share its memory, and the
 * first trigger would stop the instance under the second). Only runs of this document count.
 */
export async function refuseIfBusy(ssm: SSMClient, ref: InstanceRef, documentName: string): Promise<void> {
  let commands;
  try {
    const result = await ssm.send(
      new ListCommandsCommand({
        InstanceId: ref.instanceId,
        Filters: [
          { key: 'DocumentName', value: documentName },
          { key: 'Status', value: 'InProgress' },
        ],
      }),
    );
    commands = result?.Commands ?? [];
  } catch (error) {
    throw new OrchardError(`Cannot list the commands running on ${ref.instanceId}: ${describeError(error)}`, 'ERR_SSM', ExitCode.Fatal, { cause: error });
  }
  const busy = commands.find((command) => command.Status === 'InProgress' || command.Status === 'Pending');
  if (busy) {
    throw new OrchardError(
      `A run is already in progress on instance ${ref.instanceId} (command ${busy.CommandId}${busy.Comment ? `, ${busy.Comment}` : ''}): ` +
        `wait for it, or cancel it with \`aws ssm cancel-command --command-id ${busy.CommandId}\``,
      'ERR_INSTANCE_BUSY',
      ExitCode.Fatal,
    );
  }
}

/** StopInstances; returns without waiting for `stopped` (billing for the instance ends once it is). */
export async function stopInstance(ec2: EC2Client, ref: InstanceRef): Promise<void> {
  try {
    await ec2.send(new StopInstancesCommand({ InstanceIds: [ref.instanceId] }));
  } catch (error) {
    throw new OrchardError(
      `Cannot stop instance ${ref.instanceId}: ${describeError(error)}; stop it yourself: aws ec2 stop-instances --instance-ids ${ref.instanceId}`,
      'ERR_EC2',
      ExitCode.Fatal,
      { cause: error },
    );
  }
}

function instanceGone(ref: InstanceRef, what: string): OrchardError {
  return new OrchardError(
    `Instance ${ref.instanceId} (${ref.origin}) ${what}: run \`npx cdk deploy --all\` to recreate it`,
    'ERR_INSTANCE_GONE',
    ExitCode.Fatal,
  );
}
