// The trigger's AWS calls (CloudFormation, EC2, SSM) against aws-sdk-client-mock: these services have no local
// server, so this is the one place where mocks stand in for AWS (see BRIEF.md). Time is a fake clock: the
// injected sleep advances it, so waits of minutes or hours take no time.
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { DescribeInstancesCommand, EC2Client, StartInstancesCommand, StopInstancesCommand } from '@aws-sdk/client-ec2';
import {
  CancelCommandCommand,
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  InvocationDoesNotExist,
  ListCommandsCommand,
  SendCommandCommand,
  SSMClient,
  type GetCommandInvocationCommandOutput,
} from '@aws-sdk/client-ssm';
import { CloudWatchLogsClient, FilterLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import {
  DescribeExecutionCommand,
  DescribeMapRunCommand,
  GetExecutionHistoryCommand,
  ListMapRunsCommand,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { main, type TriggerDeps } from '../bin/trigger';
import { readStackOutputs } from '../bin/stack-outputs';
import { missingStack, stackWith as computeStack } from './helpers/cloudformation';

const cfn = mockClient(CloudFormationClient);
const ec2 = mockClient(EC2Client);
const ssm = mockClient(SSMClient);
const sfn = mockClient(SFNClient);
const logs = mockClient(CloudWatchLogsClient);

const REGION = 'eu-west-1';
const BUCKET = 'orchard-data-bucket-1a2b3c';
const INSTANCE = 'i-0123456789abcdef0';
const DOCUMENT = 'OrchardCompute-RunPipeline-7GH2K9';
const LOG_GROUP = '/orchard/runs';
const COMMAND = '0f6a2c1e-1111-2222-3333-444455556666';
/** The fake clock starts here: the generated run id is run-20261124-130522. */
const START = Date.UTC(2026, 10, 24, 13, 5, 22);
const RUN_ID = 'run-20261124-130522';

const OUTPUTS: Record<string, string> = {
  BucketName: BUCKET,
  InstanceId: INSTANCE,
  DocumentName: DOCUMENT,
  LogGroupName: LOG_GROUP,
  SendCommand: `aws ssm send-command --document-name ${DOCUMENT} --instance-ids ${INSTANCE}`,
};

function stackWith(outputs: Record<string, string>, name = 'OrchardCompute') {
  return computeStack(name, outputs, new Date(START));
}

function describedAs(state: string) {
  return { Reservations: [{ Instances: [{ InstanceId: INSTANCE, State: { Name: state as 'running' } }] }] };
}

function invocation(fields: Partial<GetCommandInvocationCommandOutput>): GetCommandInvocationCommandOutput {
  return { $metadata: {}, CommandId: COMMAND, InstanceId: INSTANCE, DocumentName: DOCUMENT, ResponseCode: -1, ...fields };
}

const SUCCESS = invocation({
  Status: 'Success',
  StatusDetails: 'Success',
  ResponseCode: 0,
  StandardOutputContent: `done: 240 images, 0 failed, k=23 (95.15% of variance), 14.1 s, 17.0 images/s on tensorflow\n  csv      s3://${BUCKET}/results/${RUN_ID}/pca.csv\n`,
});

/** The usual world: stack deployed, instance running, agent online, command accepted and then successful. */
function givenDeployed(): void {
  cfn.on(DescribeStacksCommand, { StackName: 'OrchardCompute' }).resolves(stackWith(OUTPUTS));
  ec2.on(DescribeInstancesCommand).resolves(describedAs('running'));
  ec2.on(StopInstancesCommand).resolves({});
  ec2.on(StartInstancesCommand).resolves({});
  ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: [{ InstanceId: INSTANCE, PingStatus: 'Online' }] });
  ssm.on(ListCommandsCommand).resolves({ Commands: [] });
  ssm.on(SendCommandCommand).resolves({ Command: { CommandId: COMMAND } });
  ssm.on(CancelCommandCommand).resolves({});
  ssm
    .on(GetCommandInvocationCommand)
    .rejectsOnce(new InvocationDoesNotExist({ $metadata: {}, message: 'InvocationDoesNotExist' }))
    .resolvesOnce(invocation({ Status: 'Pending', StatusDetails: 'Pending' }))
    .resolvesOnce(invocation({ Status: 'InProgress', StatusDetails: 'InProgress' }))
    .resolves(SUCCESS);
}

interface Run {
  code: number;
  out: string;
  err: string;
  /** Fake milliseconds that passed. */
  elapsed: number;
  regions: (string | undefined)[];
}

async function trigger(...args: string[]): Promise<Run> {
  return triggerWith({}, ...args);
}

async function triggerWith(overrides: Partial<TriggerDeps>, ...args: string[]): Promise<Run> {
  let now = START;
  const run: Run = { code: -1, out: '', err: '', elapsed: 0, regions: [] };
  const deps: TriggerDeps = {
    clients: (region) => {
      run.regions.push(region);
      return {
        cfn: new CloudFormationClient({ region: region ?? REGION }),
        ec2: new EC2Client({ region: region ?? REGION }),
        ssm: new SSMClient({ region: region ?? REGION }),
        sfn: new SFNClient({ region: region ?? REGION }),
        logs: new CloudWatchLogsClient({ region: region ?? REGION }),
      };
    },
    now: () => now,
    sleep: async (ms) => {
      now += ms;
    },
    out: (text) => {
      run.out += text;
    },
    err: (text) => {
      run.err += text;
    },
    env: { AWS_REGION: REGION },
  };
  run.code = await main(['node', 'trigger', ...args], { ...deps, ...overrides });
  run.elapsed = now - START;
  return run;
}

const sentInput = () => {
  const calls = ssm.commandCalls(SendCommandCommand);
  expect(calls).toHaveLength(1);
  return calls[0]!.args[0].input;
};
const stopCalls = () => ec2.commandCalls(StopInstancesCommand).map((call) => call.args[0].input);
const resultFiles = (folder: string) =>
  ['pca.csv', 'pca.parquet', 'pca-model.json', 'errors.csv', 'manifest.json', 'report.html'].map((file) => folder + file);

beforeEach(() => {
  cfn.reset();
  ec2.reset();
  ssm.reset();
  sfn.reset();
  logs.reset();
  logs.on(FilterLogEventsCommand).resolves({ events: [] });
});

describe('trigger --wait, happy path (instance running, agent online, command succeeds)', () => {
  let run: Run;
  beforeEach(async () => {
    givenDeployed();
    run = await trigger('--wait');
  });

  it('exits 0', () => {
    expect(run.code).toBe(0);
  });

  it('reads the outputs of the OrchardCompute stack in the region from $AWS_REGION', () => {
    expect(cfn.commandCalls(DescribeStacksCommand).map((call) => call.args[0].input)).toEqual([{ StackName: 'OrchardCompute' }]);
    expect(run.regions).toEqual([REGION]);
  });

  it('sends the document to the instance with only the run id as parameter, CloudWatch output and a delivery timeout', () => {
    expect(sentInput()).toEqual({
      InstanceIds: [INSTANCE],
      DocumentName: DOCUMENT,
      Parameters: { runId: [RUN_ID] },
      Comment: `orchard run ${RUN_ID}`,
      TimeoutSeconds: 600,
      CloudWatchOutputConfig: { CloudWatchOutputEnabled: true, CloudWatchLogGroupName: LOG_GROUP },
    });
  });

  it('asks SSM whether the agent is online, filtering on the instance id', () => {
    expect(ssm.commandCalls(DescribeInstanceInformationCommand)[0]!.args[0].input).toEqual({
      Filters: [{ Key: 'InstanceIds', Values: [INSTANCE] }],
    });
  });

  it('prints the command id and how to follow its logs in the log group', () => {
    expect(run.out).toContain(`command ${COMMAND}`);
    expect(run.out).toContain(`aws logs tail ${LOG_GROUP} --follow --log-stream-name-prefix ${COMMAND} --region ${REGION}`);
  });

  it('retries GetCommandInvocation while the invocation does not exist yet, and prints each status change', () => {
    expect(ssm.commandCalls(GetCommandInvocationCommand).length).toBe(4);
    expect(ssm.commandCalls(GetCommandInvocationCommand)[0]!.args[0].input).toEqual({ CommandId: COMMAND, InstanceId: INSTANCE });
    const statuses = run.err.split('\n').filter((line) => line.startsWith(`run ${RUN_ID}: `));
    expect(statuses).toEqual([
      `run ${RUN_ID}: Pending (not registered yet) (0 s)`,
      `run ${RUN_ID}: Pending (15 s)`,
      `run ${RUN_ID}: InProgress (30 s)`,
      `run ${RUN_ID}: Success (45 s)`,
    ]);
  });

  it("follows the run's own log lines from the command's CloudWatch streams while it runs", () => {
    const queries = logs.commandCalls(FilterLogEventsCommand).map((call) => call.args[0].input);
    expect(queries.length).toBeGreaterThan(0);
    expect(queries[0]).toMatchObject({ logGroupName: LOG_GROUP, logStreamNamePrefix: COMMAND });
  });

  it("prints the run's result line and the S3 URIs of the run folder and each result file", () => {
    const folder = `s3://${BUCKET}/results/${RUN_ID}/`;
    expect(run.out).toContain('done: 240 images, 0 failed, k=23');
    expect(run.out).toContain(`results  ${folder}\n`);
    for (const uri of resultFiles(folder)) expect(run.out).toContain(` ${uri}\n`);
  });

  it('stops the instance afterwards and starts nothing', () => {
    expect(stopCalls()).toEqual([{ InstanceIds: [INSTANCE] }]);
    expect(ec2.commandCalls(StartInstancesCommand)).toHaveLength(0);
  });

  it('checks that no other run of the document is in progress on the already running instance', () => {
    expect(ssm.commandCalls(ListCommandsCommand)[0]!.args[0].input).toEqual({
      InstanceId: INSTANCE,
      Filters: [
        { key: 'DocumentName', value: DOCUMENT },
        { key: 'Status', value: 'InProgress' },
      ],
    });
  });
});

describe('parameters', () => {
  beforeEach(givenDeployed);

  it('sends exactly the options given: --components 50 sends components and not variance', async () => {
    const run = await trigger(
      '--input', 's3://other-bucket/fruits/Test/',
      '--output', 's3://other-bucket/out',
      '--components', '50',
      '--model', 'mobilenet_v2_offline',
      '--run-id', 'fruits-test-1',
      '--max-error-rate', '0.05',
      '--wait',
    );
    expect(run.code).toBe(0);
    expect(sentInput().Parameters).toEqual({
      input: ['s3://other-bucket/fruits/Test/'],
      output: ['s3://other-bucket/out'],
      components: ['50'],
      model: ['mobilenet_v2_offline'],
      runId: ['fruits-test-1'],
      maxErrorRate: ['0.05'],
    });
    expect(run.out).toContain('results  s3://other-bucket/out/fruits-test-1/\n');
    expect(run.out).toContain(' s3://other-bucket/out/fruits-test-1/pca.parquet\n');
  });

  it('--variance 0.9 sends variance and not components', async () => {
    await trigger('--variance', '0.9');
    expect(sentInput().Parameters).toEqual({ variance: ['0.9'], runId: [RUN_ID] });
  });

  it.each([
    [['--components', '5', '--variance', '0.9'], 'cannot be used with'],
    [['--components', '0'], 'expected a whole number ≥ 1 for --components'],
    [['--variance', '1.5'], 'expected a number between 0 and 1 (exclusive) for --variance'],
    [['--max-error-rate', '2'], 'expected a number from 0 to 1 for --max-error-rate'],
    [['--input', './fruits-360/Test'], 'expected an s3:// URI for --input'],
    [['--run-id', 'a b'], '--run-id'],
    [['--timeout-minutes', '-1'], '--timeout-minutes'],
  ])('rejects %j with exit 2 before any AWS call', async (args, message) => {
    const run = await trigger(...args);
    expect(run.code).toBe(2);
    expect(run.err).toContain(message);
    expect(cfn.calls()).toHaveLength(0);
    expect(ec2.calls()).toHaveLength(0);
    expect(ssm.calls()).toHaveLength(0);
  });

  it('--region and --stack choose the region and the stack', async () => {
    cfn.on(DescribeStacksCommand, { StackName: 'OrchardCompute-dev' }).resolves(stackWith(OUTPUTS, 'OrchardCompute-dev'));
    const run = await trigger('--region', 'us-west-2', '--stack', 'OrchardCompute-dev');
    expect(run.code).toBe(0);
    expect(run.regions).toEqual(['us-west-2']);
    expect(cfn.commandCalls(DescribeStacksCommand)[0]!.args[0].input).toEqual({ StackName: 'OrchardCompute-dev' });
  });

  it('--help lists the options and the exit statuses and exits 0', async () => {
    const run = await trigger('--help');
    expect(run.code).toBe(0);
    for (const option of ['--input', '--output', '--components', '--variance', '--model', '--run-id', '--max-error-rate', '--wait', '--keep-running', '--timeout-minutes', '--region', '--stack']) {
      expect(run.out).toContain(option);
    }
    expect(run.out).toContain('Exit status:');
    expect(cfn.calls()).toHaveLength(0);
  });
});

describe('instance stopped', () => {
  it('starts it, waits until it runs and SSM sees it online, then sends the command', async () => {
    givenDeployed();
    const states = ['stopped', 'stopped', 'pending', 'pending', 'running'];
    let state = '';
    ec2.on(DescribeInstancesCommand).callsFake(() => describedAs((state = states.shift() ?? 'running')));
    const pings = ['ConnectionLost', 'ConnectionLost', 'Online'];
    let ping = '';
    ssm.on(DescribeInstanceInformationCommand).callsFake(() => ({
      InstanceInformationList: [{ InstanceId: INSTANCE, PingStatus: (ping = pings.shift() ?? 'Online') }],
    }));
    ssm.on(SendCommandCommand).callsFake(() => {
      expect([state, ping]).toEqual(['running', 'Online']);
      return { Command: { CommandId: COMMAND } };
    });

    const run = await trigger('--wait');

    expect(run.code).toBe(0);
    expect(ec2.commandCalls(StartInstancesCommand).map((call) => call.args[0].input)).toEqual([{ InstanceIds: [INSTANCE] }]);
    expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(5);
    expect(ssm.commandCalls(DescribeInstanceInformationCommand)).toHaveLength(3);
    expect(ssm.commandCalls(SendCommandCommand)).toHaveLength(1);
    expect(run.err).toContain(`starting instance ${INSTANCE} (it was stopped)`);
    expect(run.err).toContain(`waiting for the SSM agent on ${INSTANCE} (ConnectionLost)`);
    // It did not check for other runs: it has just started the instance itself.
    expect(ssm.commandCalls(ListCommandsCommand)).toHaveLength(0);
    expect(stopCalls()).toEqual([{ InstanceIds: [INSTANCE] }]);
  });

  it('waits for a stopping instance to be stopped before starting it', async () => {
    givenDeployed();
    const states = ['stopping', 'stopping', 'stopped', 'pending', 'running'];
    ec2.on(DescribeInstancesCommand).callsFake(() => describedAs(states.shift() ?? 'running'));
    ec2.on(StartInstancesCommand).callsFake(() => {
      expect(states).toEqual(['pending', 'running']);
      return {};
    });
    const run = await trigger();
    expect(run.code).toBe(0);
    expect(ec2.commandCalls(StartInstancesCommand)).toHaveLength(1);
    expect(run.err).toContain(`instance ${INSTANCE} is stopping; waiting until it has stopped`);
  });

  it('stops the instance it started when the SSM agent never comes online, and names the instance', async () => {
    givenDeployed();
    const states = ['stopped', 'running'];
    ec2.on(DescribeInstancesCommand).callsFake(() => describedAs(states.shift() ?? 'running'));
    ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: [] });

    const run = await trigger('--wait');

    expect(run.code).toBe(1);
    expect(run.err).toContain(`Timed out after 10 min waiting for the SSM agent of instance ${INSTANCE} to be online: last status: not registered`);
    expect(ssm.commandCalls(SendCommandCommand)).toHaveLength(0);
    expect(stopCalls()).toEqual([{ InstanceIds: [INSTANCE] }]);
  });

  it('a terminated instance is an error that says to redeploy', async () => {
    givenDeployed();
    ec2.on(DescribeInstancesCommand).resolves(describedAs('terminated'));
    const run = await trigger('--wait');
    expect(run.code).toBe(1);
    expect(run.err).toBe(
      `trigger: Instance ${INSTANCE} (output InstanceId of stack OrchardCompute in ${REGION}) is terminated: run \`npx cdk deploy --all\` to recreate it\n`,
    );
    expect(ec2.commandCalls(StartInstancesCommand)).toHaveLength(0);
  });
});

describe('command failed', () => {
  const stderr = [
    ...Array.from({ length: 30 }, (_, i) => `extract shard ${i}: 4096/4096 images, 0 failed`),
    'orchard: Access denied to s3://orchard-data-bucket-1a2b3c/results/ (AccessDenied)',
  ].join('\n');

  it('exits 1, prints the last lines of its stderr, and still stops the instance', async () => {
    givenDeployed();
    ssm.on(GetCommandInvocationCommand).resolves(
      invocation({
        Status: 'Failed',
        StatusDetails: 'Failed',
        ResponseCode: 1,
        StandardErrorContent: `${stderr}\n`,
        StandardOutputContent: 'orchard-run: orchard exited with status 1\n',
      }),
    );

    const run = await trigger('--wait');

    expect(run.code).toBe(1);
    expect(run.err).toContain(`trigger: run ${RUN_ID} failed on instance ${INSTANCE}: Failed, exit status 1: fatal error (storage, permissions or model)`);
    expect(run.err).toContain('  | orchard: Access denied to s3://orchard-data-bucket-1a2b3c/results/ (AccessDenied)\n');
    expect(run.err).toContain('  | extract shard 29:');
    expect(run.err).toContain('  | extract shard 11:');
    expect(run.err).not.toContain('  | extract shard 10:'); // 20 lines: shards 11…29 and the error
    expect(run.err).toContain('last lines of its stdout:\n  | orchard-run: orchard exited with status 1\n');
    expect(run.err).toContain(`whole log: CloudWatch Logs group ${LOG_GROUP}`);
    expect(run.out).not.toContain('pca.csv');
    expect(stopCalls()).toEqual([{ InstanceIds: [INSTANCE] }]);
  });

  it('exit status 3 is "finished with too many failed images": exit 3, and the result URIs are printed', async () => {
    givenDeployed();
    ssm.on(GetCommandInvocationCommand).resolves(
      invocation({
        Status: 'Failed',
        StatusDetails: 'Failed',
        ResponseCode: 3,
        StandardOutputContent: 'finished with too many errors: 240 images, 12 failed, k=23 (95.15% of variance)\n',
      }),
    );
    const run = await trigger('--wait');
    expect(run.code).toBe(3);
    expect(run.err).toContain(`trigger: run ${RUN_ID} finished with too many failed images (more than --max-error-rate)`);
    expect(run.err).toContain(`s3://${BUCKET}/results/${RUN_ID}/errors.csv`);
    expect(run.out).toContain('finished with too many errors: 240 images, 12 failed');
    for (const uri of resultFiles(`s3://${BUCKET}/results/${RUN_ID}/`)) expect(run.out).toContain(uri);
    expect(stopCalls()).toHaveLength(1);
  });

  it('a cancelled command exits 1 and says how to resume', async () => {
    givenDeployed();
    ssm.on(GetCommandInvocationCommand).resolves(invocation({ Status: 'Cancelled', StatusDetails: 'Cancelled' }));
    const run = await trigger('--wait', '--run-id', 'r1');
    expect(run.code).toBe(1);
    expect(run.err).toContain('trigger: run r1 failed on instance i-0123456789abcdef0: the command was cancelled; rerun with --run-id r1 to resume');
  });

  it("a run past the document's execution timeout exits 1", async () => {
    givenDeployed();
    ssm.on(GetCommandInvocationCommand).resolves(invocation({ Status: 'TimedOut', StatusDetails: 'ExecutionTimedOut' }));
    const run = await trigger('--wait');
    expect(run.code).toBe(1);
    expect(run.err).toContain("the run exceeded the document's execution timeout");
  });
});

describe('timeout', () => {
  it('cancels a command still in progress after --timeout-minutes, stops the instance and exits 1', async () => {
    givenDeployed();
    ssm.on(GetCommandInvocationCommand).resolves(invocation({ Status: 'InProgress', StatusDetails: 'InProgress' }));

    const run = await trigger('--wait', '--timeout-minutes', '30');

    expect(run.code).toBe(1);
    expect(run.elapsed).toBe(30 * 60_000);
    expect(run.err).toContain(
      `trigger: run ${RUN_ID} had not ended after 30 min (--timeout-minutes 30; last status InProgress): cancelled command ${COMMAND}; finished shards are kept: resume with --run-id ${RUN_ID}`,
    );
    expect(run.err).toContain(`run ${RUN_ID}: still InProgress (5 min)`);
    expect(ssm.commandCalls(CancelCommandCommand).map((call) => call.args[0].input)).toEqual([{ CommandId: COMMAND, InstanceIds: [INSTANCE] }]);
    expect(stopCalls()).toEqual([{ InstanceIds: [INSTANCE] }]);
    expect(run.out).not.toContain('pca.csv');
  });
});

describe('--keep-running and no --wait', () => {
  it('--keep-running leaves the instance running after the run', async () => {
    givenDeployed();
    const run = await trigger('--wait', '--keep-running');
    expect(run.code).toBe(0);
    expect(ec2.commandCalls(StopInstancesCommand)).toHaveLength(0);
    expect(run.err).toContain(`instance ${INSTANCE} left running (--keep-running)`);
  });

  it('without --wait: sends the command, neither waits nor stops the instance, and says so', async () => {
    givenDeployed();
    const run = await trigger();
    expect(run.code).toBe(0);
    expect(ssm.commandCalls(SendCommandCommand)).toHaveLength(1);
    expect(ssm.commandCalls(GetCommandInvocationCommand)).toHaveLength(0);
    expect(ec2.commandCalls(StopInstancesCommand)).toHaveLength(0);
    expect(run.out).toContain(`command ${COMMAND}`);
    expect(run.err).toContain(`instance ${INSTANCE} keeps running, and billing, after the run`);
    expect(run.err).toContain(`aws ec2 stop-instances --instance-ids ${INSTANCE} --region ${REGION}`);
  });

  it('Ctrl-C while waiting: exit 130, the run goes on and the instance is left running', async () => {
    givenDeployed();
    ssm.on(GetCommandInvocationCommand).resolves(invocation({ Status: 'InProgress', StatusDetails: 'InProgress' }));
    const controller = new AbortController();
    let sleeps = 0;
    const run = await triggerWith(
      {
        signal: controller.signal,
        sleep: async () => {
          if (++sleeps === 3) controller.abort();
        },
      },
      '--wait',
    );
    expect(run.code).toBe(130);
    expect(run.err).toContain(`trigger: stopped waiting; command ${COMMAND} goes on, instance ${INSTANCE} is left running`);
    expect(ssm.commandCalls(CancelCommandCommand)).toHaveLength(0);
    expect(ec2.commandCalls(StopInstancesCommand)).toHaveLength(0);
  });

  it('refuses to send a second run while one of the document is in progress on the instance', async () => {
    givenDeployed();
    ssm.on(ListCommandsCommand).resolves({ Commands: [{ CommandId: 'earlier-command', Status: 'InProgress', Comment: 'orchard run run-1' }] });
    const run = await trigger('--wait');
    expect(run.code).toBe(1);
    expect(run.err).toContain(`A run is already in progress on instance ${INSTANCE} (command earlier-command, orchard run run-1)`);
    expect(ssm.commandCalls(SendCommandCommand)).toHaveLength(0);
    expect(ec2.commandCalls(StopInstancesCommand)).toHaveLength(0);
  });
});

describe('stack outputs', () => {
  it('a missing stack is a clear error naming the stack and the region, before any EC2 or SSM call', async () => {
    cfn.on(DescribeStacksCommand).rejects(missingStack('OrchardCompute'));
    const run = await trigger('--wait');
    expect(run.code).toBe(1);
    expect(run.err).toBe(
      `trigger: Stack OrchardCompute not found in ${REGION}: run \`npx cdk deploy --all\` first (or pass the region it was deployed to with --region)\n`,
    );
    expect(ec2.calls()).toHaveLength(0);
    expect(ssm.calls()).toHaveLength(0);
  });

  it('a missing output is an error naming the stack and the output', async () => {
    givenDeployed();
    const { DocumentName: _omitted, ...rest } = OUTPUTS;
    cfn.on(DescribeStacksCommand).resolves(stackWith(rest));
    const run = await trigger();
    expect(run.code).toBe(1);
    expect(run.err).toContain(`trigger: Stack OrchardCompute in ${REGION} has no output DocumentName (stack status CREATE_COMPLETE)`);
    expect(ec2.calls()).toHaveLength(0);
  });

  it('readStackOutputs returns the outputs by key', async () => {
    cfn.on(DescribeStacksCommand).resolves(stackWith(OUTPUTS));
    expect(await readStackOutputs(new CloudFormationClient({ region: REGION }), 'OrchardCompute')).toEqual(OUTPUTS);
  });
});

describe('live log lines while waiting (instance path)', () => {
  it('prints each new line once, orchard JSON lines as the CLI shows them, in time order', async () => {
    givenDeployed();
    const line = (eventId: string, timestamp: number, message: string) => ({ eventId, timestamp, message, logStreamName: `${COMMAND}/${INSTANCE}/aws-runShellScript/stderr` });
    logs
      .on(FilterLogEventsCommand)
      .resolvesOnce({ events: [line('1', START + 1000, '{"time":"t","level":"info","message":"list: 240 objects in 1 shard(s)"}')] })
      .resolvesOnce({
        events: [
          line('1', START + 1000, '{"time":"t","level":"info","message":"list: 240 objects in 1 shard(s)"}'),
          line('3', START + 3000, '{"time":"t","level":"warn","message":"s3: a GetObject request needed 1 retry","retries":1}'),
          line('2', START + 2000, '{"time":"t","level":"info","message":"extract: 120/240 images","imagesPerSecond":17.1}'),
        ],
      })
      .resolves({ events: [] });
    const run = await trigger('--wait');
    const shown = run.err.split('\n').filter((text) => text.includes(' | '));
    expect(shown).toEqual([
      `run ${RUN_ID}:   | list: 240 objects in 1 shard(s)`,
      `run ${RUN_ID}:   | extract: 120/240 images imagesPerSecond=17.1`,
      `run ${RUN_ID}:   | warning: s3: a GetObject request needed 1 retry retries=1`,
    ]);
  });

  it('goes on waiting without them when the logs cannot be read, saying so once', async () => {
    givenDeployed();
    logs.on(FilterLogEventsCommand).rejects(Object.assign(new Error('not authorized to perform: logs:FilterLogEvents'), { name: 'AccessDeniedException' }));
    const run = await trigger('--wait');
    expect(run.code).toBe(0);
    expect(run.err.match(/cannot follow the run's log lines/g)).toHaveLength(1);
    expect(logs.commandCalls(FilterLogEventsCommand)).toHaveLength(1);
  });
});

describe('trigger --scale (the state machine of the OrchardScale stack)', () => {
  const MACHINE = 'arn:aws:states:eu-west-1:123456789012:stateMachine:OrchardScaleWorkflow';
  const EXECUTION = `arn:aws:states:eu-west-1:123456789012:execution:OrchardScaleWorkflow:${RUN_ID}-20261124-130522`;
  const MAP_RUN = 'arn:aws:states:eu-west-1:123456789012:mapRun:OrchardScaleWorkflow/Extract:4f1c';
  const FUNCTION_LOGS = '/aws/lambda/orchard-stages';
  const SCALE_OUTPUTS = { StateMachineArn: MACHINE, FunctionLogGroupName: FUNCTION_LOGS, BucketName: BUCKET };
  const folder = `s3://${BUCKET}/results/${RUN_ID}/`;
  const RESULT = {
    status: 'succeeded',
    runUri: folder,
    outputs: { csv: `${folder}pca.csv` },
    counts: { listed: 90000, processed: 89990, failed: 10, errorRate: 0.0001, shards: 22, shardsResumed: 0 },
    components: 26,
    explainedVariance: 0.9501,
    seconds: 312.4,
    imagesPerSecond: 288.1,
  };

  function givenScale(status: 'SUCCEEDED' | 'FAILED' = 'SUCCEEDED', output: object = RESULT): void {
    cfn.on(DescribeStacksCommand, { StackName: 'OrchardScale' }).resolves(stackWith(SCALE_OUTPUTS, 'OrchardScale'));
    sfn.on(StartExecutionCommand).resolves({ executionArn: EXECUTION, startDate: new Date(START) });
    sfn
      .on(DescribeExecutionCommand)
      .resolvesOnce({ executionArn: EXECUTION, status: 'RUNNING' } as never)
      .resolvesOnce({ executionArn: EXECUTION, status: 'RUNNING' } as never)
      .resolves(
        status === 'SUCCEEDED'
          ? ({ executionArn: EXECUTION, status, output: JSON.stringify(output) } as never)
          : ({ executionArn: EXECUTION, status, error: 'ERR_ACCESS_DENIED', cause: '{"errorMessage":"Access denied to s3://b/images/x.jpg"}' } as never),
      );
    sfn
      .on(GetExecutionHistoryCommand)
      .resolvesOnce({ events: [{ id: 3, type: 'TaskStateEntered', timestamp: new Date(START), stateEnteredEventDetails: { name: 'Plan' } }] })
      .resolves({ events: [{ id: 9, type: 'MapRunStarted', timestamp: new Date(START) }, { id: 8, type: 'MapStateEntered', timestamp: new Date(START), stateEnteredEventDetails: { name: 'Extract' } }] });
    sfn.on(ListMapRunsCommand).resolvesOnce({ mapRuns: [] }).resolves({ mapRuns: [{ mapRunArn: MAP_RUN, executionArn: EXECUTION, stateMachineArn: MACHINE, startDate: new Date(START) }] });
    sfn.on(DescribeMapRunCommand).resolves({ mapRunArn: MAP_RUN, itemCounts: { succeeded: 4, failed: 0, running: 7, pending: 0, total: 11, timedOut: 0, aborted: 0, resultsWritten: 4 } } as never);
    sfn.on(StopExecutionCommand).resolves({ stopDate: new Date(START) });
    logs.on(FilterLogEventsCommand).resolves({ events: [{ eventId: 'e1', timestamp: START + 500, message: `{"time":"t","level":"info","message":"extract: shards 0, 1 of run ${RUN_ID}","runId":"${RUN_ID}","stage":"extract"}` }] });
  }

  it('starts an execution named after the run with the run and the map options, never touching the instance', async () => {
    givenScale();
    const run = await trigger('--scale', '-k', '26', '--max-concurrency', '100', '--shards-per-task', '1');
    expect(run.code).toBe(0);
    const started = sfn.commandCalls(StartExecutionCommand)[0]!.args[0].input;
    expect(started.stateMachineArn).toBe(MACHINE);
    expect(started.name).toBe(`${RUN_ID}-20261124-130522`);
    expect(JSON.parse(started.input!)).toEqual({
      run: { input: `s3://${BUCKET}/images/`, output: `s3://${BUCKET}/results/`, runId: RUN_ID, components: 26 },
      maxConcurrency: 100,
      shardsPerTask: 1,
    });
    expect(run.out).toContain(`started run ${RUN_ID} on the scale path: execution ${EXECUTION}`);
    expect(run.out).toContain(`aws logs tail ${FUNCTION_LOGS} --follow --filter-pattern '{ $.runId = "${RUN_ID}" }' --region ${REGION}`);
    expect(ec2.calls()).toHaveLength(0);
    expect(ssm.calls()).toHaveLength(0);
    expect(sfn.commandCalls(DescribeExecutionCommand)).toHaveLength(0);
  });

  it('with --wait: shows the state, the map run\'s item counts and the run\'s log lines, then the result as the instance path prints it', async () => {
    givenScale();
    const run = await trigger('--scale', '--wait');
    expect(run.code).toBe(0);
    const lines = run.err.split('\n').filter((line) => line.startsWith(`run ${RUN_ID}: `));
    // The lines logged since the last poll come first, then the state as it is now.
    expect(lines).toEqual([
      `run ${RUN_ID}:   | extract: shards 0, 1 of run ${RUN_ID}`,
      `run ${RUN_ID}: RUNNING, state Plan (0 s)`,
      `run ${RUN_ID}: RUNNING, state Extract, Extract: 4 of 11 batches succeeded, 7 running, 0 failed (10 s)`,
      `run ${RUN_ID}: SUCCEEDED (20 s)`,
    ]);
    expect(logs.commandCalls(FilterLogEventsCommand)[0]!.args[0].input).toMatchObject({ logGroupName: FUNCTION_LOGS, filterPattern: `{ $.runId = "${RUN_ID}" }` });
    expect(run.out).toContain('done: 89990 images, 10 failed, k=26 (95.01% of variance), 312.4 s, 288.1 images/s on AWS Lambda');
    expect(run.out).toContain(`results  ${folder}\n`);
    for (const uri of resultFiles(folder)) expect(run.out).toContain(` ${uri}\n`);
  });

  it('a failed execution: exit 1 with the error and its cause, and how to resume or redrive', async () => {
    givenScale('FAILED');
    const run = await trigger('--scale', '--wait');
    expect(run.code).toBe(1);
    expect(run.err).toContain(`trigger: run ${RUN_ID} failed on the scale path: execution FAILED (ERR_ACCESS_DENIED: {"errorMessage":"Access denied to s3://b/images/x.jpg"})`);
    expect(run.err).toContain(`resume with --run-id ${RUN_ID} (on either path), or redrive: aws stepfunctions redrive-execution --execution-arn ${EXECUTION} --region ${REGION}`);
    expect(run.out).not.toContain('pca.csv');
  });

  it('a run with too many failed images: exit 3, the result printed, errors.csv named', async () => {
    givenScale('SUCCEEDED', { ...RESULT, status: 'too_many_errors' });
    const run = await trigger('--scale', '--wait');
    expect(run.code).toBe(3);
    expect(run.out).toContain('finished with too many errors: 89990 images');
    expect(run.err).toContain(`see ${folder}errors.csv`);
  });

  it('stops the execution after --timeout-minutes and exits 1', async () => {
    givenScale();
    sfn.on(DescribeExecutionCommand).resolves({ executionArn: EXECUTION, status: 'RUNNING' } as never);
    const run = await trigger('--scale', '--wait', '--timeout-minutes', '20');
    expect(run.code).toBe(1);
    expect(run.elapsed).toBe(20 * 60_000);
    expect(sfn.commandCalls(StopExecutionCommand).map((call) => call.args[0].input)).toEqual([{ executionArn: EXECUTION, error: 'orchard.Timeout', cause: '--timeout-minutes 20' }]);
    expect(run.err).toContain(`had not ended after 20 min (--timeout-minutes 20`);
    expect(run.err).toContain(`stopped execution ${EXECUTION}`);
  });

  it('refuses --keep-running, which means nothing without an instance', async () => {
    const run = await trigger('--scale', '--keep-running');
    expect(run.code).toBe(2);
    expect(run.err).toContain("option '--keep-running' cannot be used with option '--scale'");
  });

  it('names the scale stack when it is not deployed', async () => {
    cfn.on(DescribeStacksCommand).rejects(missingStack('OrchardScale'));
    const run = await trigger('--scale');
    expect(run.code).toBe(1);
    expect(run.err).toContain('Stack OrchardScale not found');
  });
});
