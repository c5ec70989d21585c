/**
 * The scale stack as synthesized: the state machine's definition (states, item readers, batching, concurrency,
 * retries, result writers, catches), validated by asl-validator too; the exact IAM of its two roles; the Lambda
 * function's settings; and the real Lambda asset: its size and the ELF header of every native file in it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Template } from 'aws-cdk-lib/assertions';
import { OUTPUT } from '../../bin/stack-outputs';
import { Size } from 'aws-cdk-lib';
import { createOrchardApp } from '../../bin/orchard';
import { INLINE_MAP_CONCURRENCY } from '../../lib/constructs/scale-workflow';
import { threadsForMemory } from '../../lib/constructs/stage-function';
import { PROCESS_ENV } from '../../runtime/contracts/deployment';
import { SCALE_DEFAULTS } from '../../runtime/contracts/scale';
import { type SynthesizedOrchard, buildBundle, buildLambda, fakeBundle, flat, logicalId, resource, scratchDir, synthOrchard } from './app';
import aslValidator from 'asl-validator';
import { definitionOf, deployedDefinitionOf } from '../helpers/definition';
import { LEASE_TTL_MS } from '../../runtime/pipeline/lease';

let orchard: SynthesizedOrchard;
let template: Template;
let definition: Record<string, any>;
let lambdaDir: string;

beforeAll(() => {
  lambdaDir = buildLambda('x64');
  orchard = synthOrchard({ runtimeDir: buildBundle(), lambdaDir });
  template = orchard.scaleTemplate;
  definition = definitionOf(template);
});

const states = () => definition.States as Record<string, any>;
const BUCKET_ARN = 'arn:<AWS::Partition>:s3:::OrchardData-BucketName';
const TRANSIENT = ['Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException', 'Lambda.TooManyRequestsException', 'Lambda.ClientExecutionTimeoutException'];

describe('the state machine definition', () => {
  test('runs plan, the extract map, the merge groups, fit, then project and publish, or ends early without a PCA', () => {
    const flow = Object.fromEntries(Object.entries(states()).map(([name, state]) => [name, `${state.Type}${state.Next ? ` → ${state.Next}` : state.End ? ' (end)' : ''}`]));
    expect(definition.StartAt).toBe('Defaults');
    expect(flow).toEqual({
      Defaults: 'Pass → Options',
      Options: 'Pass → Plan',
      Plan: 'Task → Extract',
      Extract: 'Map → MergeGroups',
      MergeGroups: 'Map → Fit',
      Fit: 'Task → Fitted',
      Fitted: 'Choice',
      Project: 'Map → Publish',
      Publish: 'Task → Finished',
      NoPca: 'Pass → Finished',
      Finished: 'Succeed',
      RunFailed: 'Fail',
    });
    expect(states().Fitted.Choices).toEqual([{ Variable: '$.fit.fitted', BooleanEquals: true, Next: 'Project' }]);
    expect(states().Fitted.Default).toBe('NoPca');
    expect(states().Finished.OutputPath).toBe('$.result');
  });

  test('fills in the defaults under the execution input', () => {
    expect(states().Defaults.Result).toEqual({ maxConcurrency: SCALE_DEFAULTS.maxConcurrency, shardsPerTask: SCALE_DEFAULTS.shardsPerTask });
    expect(states().Options.Parameters).toEqual({ 'options.$': 'States.JsonMerge($.defaults, $$.Execution.Input, false)' });
  });

  test.each(['Extract', 'Project'])('%s is a distributed map over the item file its stage wrote, in batches, results to S3', (name) => {
    const map = states()[name];
    const items = name === 'Extract' ? '$.plan.extractItems' : '$.fit.projectItems';
    expect(map.ItemProcessor.ProcessorConfig).toEqual({ Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' });
    expect(map.ItemReader).toEqual({
      Resource: 'arn:<AWS::Partition>:states:::s3:getObject',
      ReaderConfig: { InputType: 'JSON' },
      Parameters: { 'Bucket.$': '$.plan.bucket', 'Key.$': items },
    });
    expect(map.ItemBatcher).toEqual({ MaxItemsPerBatchPath: '$.options.shardsPerTask', BatchInput: { 'output.$': '$.plan.output', 'runId.$': '$.plan.runId' } });
    expect(map.MaxConcurrencyPath).toBe('$.options.maxConcurrency');
    // No failure tolerated: the service's default when the field is absent (CDK leaves out a 0).
    expect(map.ToleratedFailurePercentage ?? 0).toBe(0);
    expect(map.ToleratedFailureCount ?? 0).toBe(0);
    expect(map.ResultWriter).toEqual({ Resource: 'arn:<AWS::Partition>:states:::s3:putObject', Parameters: { 'Bucket.$': '$.plan.bucket', 'Prefix.$': '$.plan.mapResults' } });
    // Nothing of the children's results comes back into the state: it stays small whatever the shard count.
    expect(map.ResultPath).toBeNull();
    expect(map.Label).toBe(name);
  });

  test.each([
    ['Plan', { stage: 'plan', 'run.$': '$.options.run' }],
    ['Fit', { stage: 'fit', 'output.$': '$.plan.output', 'runId.$': '$.plan.runId' }],
    ['Publish', { stage: 'publish', 'output.$': '$.plan.output', 'runId.$': '$.plan.runId' }],
  ])('%s invokes the stage function with the stage and the run', (name, payload) => {
    expect(states()[name].Resource).toBe(`<${logicalId(orchard.scale.stages.function)}.Arn>`);
    expect(states()[name].Parameters).toEqual(payload);
  });

  test('each map child invokes the stage function with its batch: the stage, BatchInput and Items', () => {
    for (const [map, stage] of [['Extract', 'extract'], ['Project', 'project']]) {
      const child = states()[map].ItemProcessor.States[`${map}Shards`];
      expect(child.Parameters).toEqual({ stage, 'BatchInput.$': '$.BatchInput', 'Items.$': '$.Items' });
    }
    const merge = states().MergeGroups;
    expect(merge.ItemsPath).toBe('$.plan.mergeGroups');
    expect(merge.ItemSelector).toEqual({ stage: 'merge', 'output.$': '$.plan.output', 'runId.$': '$.plan.runId', 'group.$': '$$.Map.Item.Value' });
    // Within the Lambda concurrency of 10 that a new account has.
    expect(merge.MaxConcurrency).toBe(INLINE_MAP_CONCURRENCY);
    expect(INLINE_MAP_CONCURRENCY).toBeLessThanOrEqual(8);
    // The item is the event as it is (a Parameters template here would replace it).
    expect(merge.ItemProcessor.States.MergeGroup.Parameters).toBeUndefined();
    expect(merge.ItemProcessor.States.MergeGroup.InputPath).toBeUndefined();
  });

  test('retries Lambda\'s transient errors, S3 failures past the SDK\'s retries, timeouts and held leases, and nothing else', () => {
    const tasks = [
      ...['Plan', 'Fit', 'Publish'].map((name) => states()[name]),
      states().Extract.ItemProcessor.States.ExtractShards,
      states().Project.ItemProcessor.States.ProjectShards,
      states().MergeGroups.ItemProcessor.States.MergeGroup,
    ];
    for (const task of tasks) {
      expect(task.Retry).toEqual([
        { ErrorEquals: TRANSIENT, IntervalSeconds: 2, MaxAttempts: 6, BackoffRate: 2, MaxDelaySeconds: 60, JitterStrategy: 'FULL' },
        { ErrorEquals: ['ERR_STORAGE', 'ERR_STORAGE_UNREACHABLE', 'Sandbox.Timedout'], IntervalSeconds: 10, MaxAttempts: 2, BackoffRate: 3, JitterStrategy: 'FULL' },
        // Past the lease's 120 s: a lease left by a killed attempt has expired by then.
        { ErrorEquals: ['ERR_RUN_LOCKED', 'ERR_LEASE_LOST'], IntervalSeconds: 130, MaxAttempts: 2, BackoffRate: 1 },
      ]);
      expect(task.Retry[2].IntervalSeconds * 1000).toBeGreaterThan(LEASE_TTL_MS);
    }
  });

  test('catches any failure of a stage into RunFailed, which fails the execution with the cause', () => {
    for (const name of ['Plan', 'Extract', 'MergeGroups', 'Fit', 'Project', 'Publish']) {
      expect(states()[name].Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'RunFailed' }]);
    }
    expect(states().RunFailed).toMatchObject({ ErrorPath: '$.error.Error', CausePath: '$.error.Cause' });
  });

  test('is valid Amazon States Language for asl-validator', () => {
    const result = aslValidator(deployedDefinitionOf(template));
    expect(result.errorsText('\n')).toBe('');
    expect(result.isValid).toBe(true);
  });
});

describe('the state machine', () => {
  const machine = () => Object.values(template.findResources('AWS::StepFunctions::StateMachine'))[0]!;

  test('is a Standard workflow that logs every event to its log group, and traces with X-Ray', () => {
    expect(machine().Properties.StateMachineType).toBe('STANDARD');
    expect(machine().Properties.LoggingConfiguration).toMatchObject({ Level: 'ALL', IncludeExecutionData: false });
    expect(machine().Properties.TracingConfiguration).toEqual({ Enabled: true });
  });

  test('its role may do exactly this', () => {
    const role = machine().Properties.RoleArn['Fn::GetAtt'][0] as string;
    expect(statementsOf(role)).toEqual([
      `lambda:InvokeFunction on <${logicalId(orchard.scale.stages.function)}.Arn>, <${logicalId(orchard.scale.stages.function)}.Arn>:*`,
      // Log delivery and X-Ray have no resource-level permissions; nothing else is on "*" (CDK's own S3 reader and
      // writer statements on "*" are left out).
      'logs:CreateLogDelivery, logs:DeleteLogDelivery, logs:DescribeLogGroups, logs:DescribeResourcePolicies, logs:GetLogDelivery, logs:ListLogDeliveries, logs:PutResourcePolicy, logs:UpdateLogDelivery, xray:GetSamplingRules, xray:GetSamplingTargets, xray:PutTelemetryRecords, xray:PutTraceSegments on *',
      's3:GetObject on ' + `${BUCKET_ARN}/results/*`,
      's3:AbortMultipartUpload, s3:GetObject, s3:ListMultipartUploadParts, s3:PutObject on ' + `${BUCKET_ARN}/map-results/*`,
      'states:StartExecution on <WorkflowStateMachine*>',
      'states:DescribeExecution, states:StopExecution on arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<WorkflowStateMachine*.Name>:*',
      'states:RedriveExecution on arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<WorkflowStateMachine*.Name>/Extract:*, arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<WorkflowStateMachine*.Name>/Project:*',
    ]);
  });
});

describe('the stage function\'s memory (context orchard:lambdaMemory)', () => {
  test('sets the memory, and the threads follow the vCPUs it pays for (1769 MB each), not the cores it sees', () => {
    const larger = synthOrchard({ context: { 'orchard:lambdaMemory': '5307' } });
    const props = resource(larger.scaleTemplate, logicalId(larger.scale.stages.function)).Properties;
    expect(props.MemorySize).toBe(5307);
    expect(props.Environment.Variables.ORCHARD_THREADS).toBe('3');
  });

  test.each([
    [128, 1],
    [1769, 1],
    [3008, 2],
    [4000, 2],
    [10240, 6],
  ])('%i MB: %i thread(s)', (mb, threads) => {
    expect(threadsForMemory(Size.mebibytes(mb))).toBe(threads);
  });

  test.each(['127', '10241', 'lots'])('refuses %s at synth, naming the key and the range', (value) => {
    expect(() =>
      createOrchardApp({ lambdaDir: fakeBundle('lambda'), modelFetchDir: fakeBundle('model-fetch'), runtimeDir: fakeBundle('x'), outdir: scratchDir('o-'), context: { 'orchard:lambdaMemory': value } }),
    ).toThrow(`expected a whole number from 128 to 10240 for context orchard:lambdaMemory but got "${value}"`);
  });
});

describe('the stage function', () => {
  const fn = () => resource(template, logicalId(orchard.scale.stages.function));

  test('runs the bundle on Node.js 22, x86_64, 3008 MB (what every account accepts), 15 minutes, with the instance\'s malloc setting', () => {
    expect(fn().Properties).toMatchObject({
      Runtime: 'nodejs22.x',
      Architectures: ['x86_64'],
      Handler: 'index.handler',
      MemorySize: 3008,
      Timeout: 900,
      EphemeralStorage: { Size: 2048 },
      // 3008 MB buys about 1.7 vCPUs of CPU time: 2 threads for ONNX Runtime and sharp.
      Environment: { Variables: { ...PROCESS_ENV, HOME: '/tmp', ORCHARD_THREADS: '2' } },
    });
    expect(fn().Properties.VpcConfig).toBeUndefined();
    expect(flat(fn().Properties.LoggingConfig.LogGroup)).toBe(`<${logicalId(orchard.scale.stages.logGroup)}>`);
  });

  test('its role may write its own log group and use the data bucket\'s three prefixes, nothing else', () => {
    expect(statementsOf(logicalId(orchard.scale.stages.role))).toEqual([
      `logs:CreateLogStream, logs:PutLogEvents on <${logicalId(orchard.scale.stages.logGroup)}.Arn>`,
      's3:ListBucket on ' + `${BUCKET_ARN} if {"StringLike":{"s3:prefix":["images/*"]}}`,
      's3:GetObject on ' + `${BUCKET_ARN}/images/*`,
      's3:ListBucket on ' + `${BUCKET_ARN} if {"StringLike":{"s3:prefix":["results/*"]}}`,
      's3:AbortMultipartUpload, s3:DeleteObject, s3:GetObject, s3:PutObject, s3:PutObjectTagging on ' + `${BUCKET_ARN}/results/*`,
      's3:ListBucket on ' + `${BUCKET_ARN} if {"StringLike":{"s3:prefix":["models/*"]}}`,
      's3:AbortMultipartUpload, s3:GetObject, s3:PutObject on ' + `${BUCKET_ARN}/models/*`,
    ]);
    expect(resource(template, logicalId(orchard.scale.stages.role)).Properties.ManagedPolicyArns).toBeUndefined();
  });

  test('no statement of the stack grants an S3 action on every resource', () => {
    for (const policy of Object.values(template.findResources('AWS::IAM::Policy'))) {
      for (const statement of policy.Properties.PolicyDocument.Statement as any[]) {
        const actions = [statement.Action].flat() as string[];
        if (actions.some((action) => action.startsWith('s3:'))) expect([statement.Resource].flat()).not.toContain('*');
      }
    }
  });

  test('log groups keep three months of lines and go with the stack', () => {
    const groups = Object.values(template.findResources('AWS::Logs::LogGroup'));
    expect(groups).toHaveLength(2);
    for (const group of groups) expect(group).toMatchObject({ Properties: { RetentionInDays: 90 }, DeletionPolicy: 'Delete' });
  });

  test('outputs the state machine and the function\'s log group for the trigger', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(Object.keys(outputs).sort()).toEqual([OUTPUT.bucketName, OUTPUT.functionLogGroupName, OUTPUT.stateMachineArn].sort());
  });
});

describe('the Lambda asset', () => {
  const files = () => walk(lambdaDir);

  test('is the bundle the function runs: the handler and the native packages it loads', () => {
    const asset = orchard.scale.stages.function.node.findAll().find((child) => child.constructor.name === 'Asset');
    expect(asset).toBeDefined();
    for (const file of ['index.js', 'predict-worker.cjs', 'node_modules/sharp/package.json', 'node_modules/onnxruntime-node/dist/index.js', 'node_modules/chart.js/dist/chart.umd.js']) {
      expect(fs.existsSync(path.join(lambdaDir, file))).toBe(true);
    }
  });

  test('stays under Lambda\'s 250 MB unzipped limit', () => {
    const bytes = files().reduce((sum, file) => sum + fs.statSync(file).size, 0);
    console.log(`Lambda asset: ${(bytes / 1e6).toFixed(1)} MB unzipped, ${files().length} files`);
    expect(bytes).toBeLessThan(250 * 1e6);
  });

  test('holds only Linux x86-64 binaries: the ELF header of every .node and .so file says so', () => {
    const natives = files().filter((file) => /\.(node|so(\.\d+)*|dylib|dll)$/.test(file));
    expect(natives.map((file) => path.relative(lambdaDir, file)).sort()).toEqual(
      expect.arrayContaining(['node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node', expect.stringMatching(/^node_modules\/@img\/sharp-linux-x64\//)]),
    );
    for (const file of natives) expect({ file: path.relative(lambdaDir, file), ...elfHeader(file) }).toEqual({ file: path.relative(lambdaDir, file), elf: true, bits: 64, littleEndian: true, linux: true, machine: 'x86-64' });
  });
});

/** The identity fields of an ELF header, read here without the bundle builder's own reader. */
function elfHeader(file: string) {
  const header = Buffer.alloc(20);
  const fd = fs.openSync(file, 'r');
  fs.readSync(fd, header, 0, 20, 0);
  fs.closeSync(fd);
  const machines: Record<number, string> = { 62: 'x86-64', 183: 'aarch64' };
  return {
    elf: header.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])),
    bits: header[4] === 2 ? 64 : 32,
    littleEndian: header[5] === 1,
    // System V or GNU/Linux OS ABI: what Linux loads (a Mach-O or PE file has no ELF magic at all).
    linux: header[7] === 0 || header[7] === 3,
    machine: machines[header.readUInt16LE(18)] ?? `e_machine ${header.readUInt16LE(18)}`,
  };
}

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? walk(path.join(dir, entry.name)) : [path.join(dir, entry.name)]));
}

/** A role's statements as readable text: `actions on resources [if conditions]`, in template order. */
function statementsOf(roleLogicalId: string): string[] {
  const policies = Object.values(template.findResources('AWS::IAM::Policy')).filter((policy) =>
    (policy.Properties.Roles as unknown[]).some((role) => flat(role) === `<${roleLogicalId}>`),
  );
  return policies.flatMap((policy) =>
    (policy.Properties.PolicyDocument.Statement as any[]).map((statement) => {
      const actions = ([statement.Action].flat() as string[]).sort().join(', ');
      const resources = [statement.Resource]
        .flat()
        .map((value) => flat(value).replace(/select\(6, split\(":", <WorkflowStateMachine[0-9A-F]{8}>\)\)/g, '<WorkflowStateMachine*.Name>').replace(/WorkflowStateMachine[0-9A-F]{8}/g, 'WorkflowStateMachine*'))
        .join(', ');
      return `${actions} on ${resources}${statement.Condition ? ` if ${JSON.stringify(statement.Condition)}` : ''}`;
    }),
  );
}
