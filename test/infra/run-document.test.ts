import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Template } from 'aws-cdk-lib/assertions';
import { RUN_COMMAND, RUN_PARAMETER_PATTERNS } from '../../lib/constructs/run-document';
import { type SynthesizedOrchard, fakeBundle, flat, logicalId, resource, scratchDir, synthOrchard } from './app';

let orchard: SynthesizedOrchard;
let template: Template;

beforeAll(() => {
  orchard = synthOrchard({ runtimeDir: fakeBundle('run document tests: the bundle does not matter here') });
  template = orchard.computeTemplate;
});

const document = () => resource(template, logicalId(orchard.compute.runDocument.document));
const content = () => document().Properties.Content;
const parameters = () => content().parameters as Record<string, any>;
const CONTRACT = ['input', 'output', 'components', 'variance', 'model', 'runId', 'maxErrorRate'];
/** A bucket name as CloudFormation would generate it, in place of the import in the template. */
const SAMPLE_BUCKET = 'orcharddata-databucketa1b2c3d4-0123456789ab';

test('is an SSM Command document in JSON, schema 2.2', () => {
  expect(document().Properties).toMatchObject({ DocumentType: 'Command', DocumentFormat: 'JSON', Content: { schemaVersion: '2.2' } });
});

test('has no fixed name: a changed document is replaced, and the DocumentName output gives the new name', () => {
  expect(document().Properties.Name).toBeUndefined();
  expect(document().Properties.UpdateMethod).toBeUndefined();
});

test('declares exactly the parameters of the contract', () => {
  expect(Object.keys(parameters())).toEqual(CONTRACT);
});

describe.each(CONTRACT)('parameter %s', (name) => {
  test('is a String', () => {
    expect(parameters()[name].type).toBe('String');
  });

  test('reaches the script as the environment variable SSM_' + name + ', never as command text', () => {
    expect(parameters()[name].interpolationType).toBe('ENV_VAR');
  });

  test('is constrained by its allowedPattern', () => {
    expect(parameters()[name].allowedPattern).toBe(RUN_PARAMETER_PATTERNS[name as keyof typeof RUN_PARAMETER_PATTERNS]);
  });

  test('has a default that its own pattern accepts', () => {
    const value = flat(parameters()[name].default).replace('OrchardData-BucketName', SAMPLE_BUCKET);
    expect(value).toMatch(new RegExp(parameters()[name].allowedPattern));
  });
});

test('defaults to the images/ input, the results/ output, 95 % of variance, MobileNetV2 and 1 % of failures', () => {
  const defaults = Object.fromEntries(CONTRACT.map((name) => [name, flat(parameters()[name].default)]));
  expect(defaults).toEqual({
    input: 's3://OrchardData-BucketName/images/',
    output: 's3://OrchardData-BucketName/results/',
    components: '',
    variance: '0.95',
    model: 'mobilenet_v2',
    runId: '',
    maxErrorRate: '0.01',
  });
});

describe('allowedPattern', () => {
  const cases: [keyof typeof RUN_PARAMETER_PATTERNS, string, boolean][] = [
    ['input', `s3://${SAMPLE_BUCKET}/images/`, true],
    ['input', `s3://${SAMPLE_BUCKET}/images/Test/Apple Braeburn/`, true],
    ['input', `s3://${SAMPLE_BUCKET}/images/"; rm -rf / #`, false],
    ['input', `s3://${SAMPLE_BUCKET}/images/$(reboot)`, false],
    ['input', `s3://${SAMPLE_BUCKET}/images/\`reboot\``, false],
    ['input', `s3://${SAMPLE_BUCKET}/images/\nreboot`, false],
    ['input', '/etc/', false],
    ['output', `s3://${SAMPLE_BUCKET}/results/`, true],
    ['output', 'https://example.com/results/', false],
    ['components', '', true],
    ['components', '10', true],
    ['components', '1280', true],
    ['components', '0', false],
    ['components', '-1', false],
    ['components', '10; reboot', false],
    ['variance', '', true],
    ['variance', '0.95', true],
    ['variance', '.5', true],
    ['variance', '0', false],
    ['variance', '0.0', false],
    ['variance', '1', false],
    ['variance', '95%', false],
    ['model', 'mobilenet_v2', true],
    ['model', 'mobilenet_v2_offline', true],
    ['model', `s3://${SAMPLE_BUCKET}/models/my-cnn/`, true],
    ['model', 'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v2_100_224/feature_vector/3/default/1', true],
    ['model', 'mobilenet_v2; reboot', false],
    ['model', 'https://example.com/$(reboot)', false],
    ['runId', '', true],
    ['runId', 'run-2026-11-24.1', true],
    ['runId', '-rf', false],
    ['runId', '../escape', false],
    ['runId', 'a b', false],
    ['maxErrorRate', '0', true],
    ['maxErrorRate', '0.01', true],
    ['maxErrorRate', '1', true],
    ['maxErrorRate', '1.5', false],
    ['maxErrorRate', '', true],
  ];
  test.each(cases)('for %s %j is accepted: %s', (name, value, accepted) => {
    expect(new RegExp(RUN_PARAMETER_PATTERNS[name]).test(value)).toBe(accepted);
  });
});

describe('step', () => {
  const step = () => content().mainSteps[0];

  test('is the only step: aws:runShellScript on Linux', () => {
    expect(content().mainSteps).toHaveLength(1);
    expect(step()).toMatchObject({ action: 'aws:runShellScript', precondition: { StringEquals: ['platformType', 'Linux'] } });
  });

  test('runs one fixed command: run-pipeline.sh from ORCHARD_HOME, /opt/orchard by default', () => {
    expect(step().inputs.runCommand).toEqual([RUN_COMMAND]);
    expect(RUN_COMMAND).toBe('/bin/bash "${ORCHARD_HOME:-/opt/orchard}/run-pipeline.sh"');
  });

  test('pastes no parameter into the command ({{ }} interpolation)', () => {
    expect(JSON.stringify(step())).not.toContain('{{');
  });

  test('may run 48 hours, far above the 3,600 s default', () => {
    expect(Number(step().inputs.timeoutSeconds)).toBe(172_800);
  });

  test('command runs the script of ORCHARD_HOME (even with a space in it) and hands it the SSM_ variables', () => {
    const home = path.join(scratchDir('orchard-home-'), 'with space');
    fs.mkdirSync(home);
    fs.writeFileSync(path.join(home, 'run-pipeline.sh'), 'echo "ran $0 with input=$SSM_input"\n');
    const ran = spawnSync('bash', ['-c', step().inputs.runCommand[0]], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, ORCHARD_HOME: home, SSM_input: 's3://b/images/a "quoted" $(name)' },
    });
    expect({ status: ran.status, out: ran.stdout }).toEqual({
      status: 0,
      out: `ran ${home}/run-pipeline.sh with input=s3://b/images/a "quoted" $(name)\n`,
    });
  });
});

describe('output log group', () => {
  test('keeps Run Command output three months', () => {
    expect(resource(template, logicalId(orchard.compute.runDocument.logGroup)).Properties.RetentionInDays).toBe(90);
  });
});
