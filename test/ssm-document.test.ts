/**
 * The SSM document's command, taken from the synthesized template, runs here against a real S3 server on
 * loopback with the bundle the CDK asset holds: the asset folder staged in the cloud assembly is copied to an
 * isolated folder (as cfn-init unpacks it to /opt/orchard), its declared dependencies are installed there, and
 * the document's runCommand lines run under bash with the document's parameters in SSM_* variables, as the SSM
 * Agent runs them (interpolationType ENV_VAR). The run must produce its outputs in S3.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { createOrchardApp } from '../bin/orchard';
import { fakeBundle } from './infra/app';
import { buildRuntimeBundle } from '../lib/runtime-bundle';
import { generateSampleImages } from '../runtime/images/generate';
import { initTf } from '../runtime/model/backend';
import { OUTPUTS } from '../runtime/contracts/results';
import { S3Storage, createS3Client } from '../runtime/storage';
import { uploadTree } from '../runtime/upload';
import { S3_CREDENTIALS_ENV, installBundleDependencies, isolatedEnv, run, type Finished } from './helpers/bundle';
import { startTestS3, tempDir } from './helpers/s3';
import { saveTinyModel } from './helpers/tiny-model';

const BUCKET = 'orchard-test';
const CLASSES = ['Banana', 'Kiwi', 'Lemon'];
const PER_CLASS = 4;
const RUN_SCRIPT = path.resolve(__dirname, '..', 'lib', 'scripts', 'run-pipeline.sh');

interface DocumentParameter {
  type: string;
  default?: unknown;
  allowedPattern?: string;
  interpolationType?: string;
}
interface DocumentContent {
  schemaVersion: string;
  parameters: Record<string, DocumentParameter>;
  mainSteps: { action: string; name: string; inputs: { runCommand: string[]; timeoutSeconds?: string } }[];
}

let work: string;
let home: string;
let wrapper: string;
let content: DocumentContent;
let s3: Awaited<ReturnType<typeof startTestS3>>;
const user = spawnSync('id', ['-un'], { encoding: 'utf8' }).stdout.trim();

beforeAll(async () => {
  work = tempDir('orchard-ssm-');
  const { app, compute } = createOrchardApp({ lambdaDir: fakeBundle('lambda'), modelFetchDir: fakeBundle('model-fetch'), runtimeDir: buildRuntimeBundle(path.join(work, 'runtime')), outdir: path.join(work, 'cdk.out') });
  const template = Template.fromStack(compute);
  const documents = Object.values(template.findResources('AWS::SSM::Document'));
  expect(documents).toHaveLength(1);
  content = (documents[0] as { Properties: { Content: DocumentContent } }).Properties.Content;

  // The asset as the cloud assembly holds it, unpacked where the instance has it.
  const staged = path.join(app.outdir, compute.host.runtimeAsset.assetPath);
  home = path.join(work, 'opt-orchard');
  fs.cpSync(staged, home, { recursive: true });
  installBundleDependencies(home);
  // What the bootstrap puts on the PATH as `orchard`, with this machine's node.
  wrapper = path.join(work, 'orchard');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(path.join(home, 'orchard.cjs'))} "$@"\n`, { mode: 0o755 });

  s3 = await startTestS3([BUCKET]);
  const images = path.join(work, 'images');
  await generateSampleImages(images, { perClass: PER_CLASS, seed: 11, classes: CLASSES });
  await uploadTree({ sourceDir: images, target: new S3Storage(createS3Client(s3.options), BUCKET, 'images/'), concurrency: 4 });
  // A model that runs with orchard's defaults for a model given by URI (224-pixel input, its output as features),
  // since the document passes no feature layer or input size; cached in the bucket as the bootstrap caches one.
  const tf = await initTf('wasm');
  await saveTinyModel(tf.tf, new S3Storage(createS3Client(s3.options), BUCKET, 'models/tiny/'), '', { inputSize: 224, head: false });
});

afterAll(async () => {
  await s3?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/**
 * The SSM Agent's part: every document parameter, the value sent or else its default, checked against its
 * allowedPattern, handed over as SSM_<name>. Defaults the template cannot resolve here (the bucket name comes
 * from the data stack) must be sent.
 */
function ssmEnvironment(sent: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, parameter] of Object.entries(content.parameters)) {
    const value = sent[name] ?? parameter.default;
    if (typeof value !== 'string') throw new Error(`parameter ${name}: its default ${JSON.stringify(value)} is not known before deployment: send it`);
    if (parameter.allowedPattern && !new RegExp(parameter.allowedPattern).test(value)) {
      throw new Error(`parameter ${name}: ${JSON.stringify(value)} does not match its allowedPattern ${parameter.allowedPattern}`);
    }
    env[`SSM_${name}`] = value;
  }
  return env;
}

/** Runs the document's commands as the agent does: its runCommand lines, as one script, under bash. */
function runDocument(ssm: Record<string, string>): Promise<Finished> {
  const script = path.join(work, `_script-${Date.now()}.sh`);
  fs.writeFileSync(script, `${content.mainSteps.flatMap((step) => step.inputs.runCommand).join('\n')}\n`);
  return run('bash', [script], {
    cwd: work,
    env: isolatedEnv({
      ...S3_CREDENTIALS_ENV,
      AWS_ENDPOINT_URL: s3.endpoint,
      ORCHARD_HOME: home,
      ORCHARD_BIN: wrapper,
      ORCHARD_USER: user,
      ...ssm,
    }),
  });
}

describe('the document', () => {
  test('runs one shell step that calls run-pipeline.sh', () => {
    expect(content.schemaVersion).toBe('2.2');
    expect(content.mainSteps.map((step) => step.action)).toEqual(['aws:runShellScript']);
    expect(content.mainSteps[0]!.inputs.runCommand.join('\n')).toContain('run-pipeline.sh');
  });

  test('hands every parameter over as an environment variable, never inside the command text', () => {
    for (const parameter of Object.values(content.parameters)) expect(parameter.interpolationType).toBe('ENV_VAR');
    expect(content.mainSteps[0]!.inputs.runCommand.join('\n')).not.toContain('{{');
  });

  test('declares exactly the parameters run-pipeline.sh reads', () => {
    const read = [...fs.readFileSync(RUN_SCRIPT, 'utf8').matchAll(/^\w+=\$\(param (\w+) /gm)].map((match) => match[1]);
    expect(Object.keys(content.parameters).sort()).toEqual(read.sort());
  });

  test.each([
    ['input', 's3://orchard-test/images/Apple Braeburn/'],
    ['input', 's3://orchard-test/images/Äpfel+Birnen, 2=1@x:y/'],
    ['output', 's3://orchard-test/results/'],
    ['components', '12'],
    ['variance', '0.95'],
    ['model', 'mobilenet_v2'],
    ['model', 's3://orchard-test/models/my-cnn/'],
    ['model', 'https://example.com/models/cnn/model.json'],
    ['model', 'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v2_100_224/feature_vector/3/default/1?tfjs-format=file'],
    ['runId', 'run-20261124-120000'],
    ['maxErrorRate', '0.05'],
  ])('its allowedPattern for %s accepts %s, which run-pipeline.sh accepts', (name, value) => {
    const pattern = content.parameters[name]!.allowedPattern;
    expect(pattern === undefined || new RegExp(pattern).test(value)).toBe(true);
  });
});

describe('the document command, run locally with the asset bundle', () => {
  let result: Finished;
  const runId = 'ssm-doc-run';
  beforeAll(async () => {
    result = await runDocument(
      ssmEnvironment({
        input: `s3://${BUCKET}/images/`,
        output: `s3://${BUCKET}/results/`,
        components: '2',
        model: `s3://${BUCKET}/models/tiny/`,
        runId,
      }),
    );
  });

  test('exits 0 and prints the run result line the trigger shows', () => {
    expect(result.err).not.toMatch(/^orchard: /m);
    expect(result.code).toBe(0);
    expect(result.out).toMatch(new RegExp(`^done: ${CLASSES.length * PER_CLASS} images, 0 failed, k=2 `, 'm'));
  });

  test('writes every output of the run, _SUCCESS included, under <output>/<run-id>/ in S3', async () => {
    const runFolder = new S3Storage(createS3Client(s3.options), BUCKET, `results/${runId}/`);
    for (const file of Object.values(OUTPUTS)) expect([file, await runFolder.head(file)]).toEqual([file, expect.anything()]);
    const csv = (await runFolder.get(OUTPUTS.csv)).toString('utf8').trim().split('\n');
    expect(csv[0]).toBe('key,label,pc_1,pc_2');
    expect(csv).toHaveLength(1 + CLASSES.length * PER_CLASS);
    const manifest = JSON.parse((await runFolder.get(OUTPUTS.manifest)).toString('utf8')) as { status: string; model: { loadedFrom: string } };
    expect(manifest.status).toBe('succeeded');
    expect(manifest.model.loadedFrom).toBe(`s3://${BUCKET}/models/tiny/model.json`);
  });

  test("a run id carrying a command is refused by the document's pattern, and by the script if it got through", async () => {
    const attack = `x; touch ${path.join(work, 'pwned')}`;
    expect(new RegExp(content.parameters.runId!.allowedPattern!).test(attack)).toBe(false);
    const env = { ...ssmEnvironment({ input: `s3://${BUCKET}/images/`, output: `s3://${BUCKET}/results/`, model: `s3://${BUCKET}/models/tiny/` }), SSM_runId: attack };
    const refused = await runDocument(env);
    expect(refused.code).toBe(2);
    expect(refused.err).toContain("run-pipeline: parameter 'runId': expected");
    expect(fs.existsSync(path.join(work, 'pwned'))).toBe(false);
  });
});
