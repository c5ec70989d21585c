/**
 * The scripts that run on the instance (lib/scripts/*.sh): shellcheck, and run-pipeline.sh's handling of the SSM
 * document's parameters. ORCHARD_BIN points at a stub that prints the arguments it was given: this checks the
 * argument vector the script builds, nothing else (test/ssm-document.test.ts runs the real bundle through it).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempDir } from './helpers/s3';
import { stageInstanceScripts } from '../lib/runtime-bundle';

const ROOT = path.resolve(__dirname, '..');
const SCRIPTS_DIR = path.join(ROOT, 'lib', 'scripts');
const SCRIPTS = fs.readdirSync(SCRIPTS_DIR).filter((name) => name.endsWith('.sh'));

const hasShellcheck = spawnSync('shellcheck', ['--version']).status === 0;
// In CI shellcheck must run (.ci/run installs it); elsewhere it is skipped, loudly, without one.
const shellcheckAvailable = hasShellcheck || Boolean(process.env.CI);
if (!shellcheckAvailable) console.warn('scripts.test.ts: shellcheck tests skipped: shellcheck is missing (apt-get install shellcheck)');

describe('shellcheck', () => {
  test('finds the instance scripts', () => {
    expect(SCRIPTS).toEqual(expect.arrayContaining(['bootstrap.sh', 'run-pipeline.sh']));
  });

  (shellcheckAvailable ? test.each(SCRIPTS) : test.skip.each(SCRIPTS))('%s passes shellcheck with no finding', (script) => {
    const result = spawnSync('shellcheck', ['--shell=bash', '--severity=style', path.join(SCRIPTS_DIR, script)], { encoding: 'utf8' });
    expect(result.error).toBeUndefined();
    expect(result.stdout).toBe('');
    expect(result.status).toBe(0);
  });

  test.each(SCRIPTS)('%s starts with a bash shebang, a documented usage and strict mode', (script) => {
    const text = fs.readFileSync(path.join(SCRIPTS_DIR, script), 'utf8');
    expect(text.startsWith('#!/usr/bin/env bash\n')).toBe(true);
    expect(text).toMatch(/^# Usage: /m);
    expect(text).toMatch(/^set -euo pipefail$/m);
  });
});

describe('run-pipeline.sh', () => {
  let dir: string;
  let stub: string;
  let startedMarker: string;
  /** The script as the bundle holds it: next to the run-parameters.sh it sources. */
  let RUN_PIPELINE: string;

  beforeAll(() => {
    dir = tempDir('orchard-scripts-');
    stageInstanceScripts(dir);
    RUN_PIPELINE = path.join(dir, 'run-pipeline.sh');
    startedMarker = path.join(dir, 'orchard-started');
    stub = path.join(dir, 'orchard-stub');
    // Prints who ran it, where, and each argument on its own line; exits with STUB_EXIT.
    fs.writeFileSync(
      stub,
      ['#!/usr/bin/env bash', `touch ${JSON.stringify(startedMarker)} 2>/dev/null`, 'printf "%s\\n" "user=$(id -un)" "cwd=$PWD" "$@"', 'exit "${STUB_EXIT:-0}"', ''].join('\n'),
      { mode: 0o755 },
    );
  });

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  beforeEach(() => fs.rmSync(startedMarker, { force: true }));

  const VALID = { SSM_input: 's3://orchard-test/images/', SSM_output: 's3://orchard-test/results/' };

  /** Runs the script the way SSM does: no arguments, parameters in SSM_* variables, and nothing else inherited. */
  function runPipeline(ssm: Record<string, string>, extra: Record<string, string> = {}) {
    const result = spawnSync('bash', [RUN_PIPELINE], {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? dir,
        ORCHARD_BIN: stub,
        ORCHARD_HOME: dir,
        ORCHARD_USER: userName(),
        ...ssm,
        ...extra,
      },
    });
    const lines = result.stdout.split('\n').filter((line) => line !== '');
    return {
      status: result.status,
      stderr: result.stderr,
      user: lines[0]?.replace(/^user=/, ''),
      cwd: lines[1]?.replace(/^cwd=/, ''),
      argv: lines.slice(2),
      started: fs.existsSync(startedMarker),
    };
  }

  test('passes every parameter to orchard run as one argument each', () => {
    const result = runPipeline({
      SSM_input: 's3://orchard-test/images/Apple Braeburn/',
      SSM_output: 's3://orchard-test/results/',
      SSM_components: '',
      SSM_variance: '0.9',
      SSM_model: 'mobilenet_v2',
      SSM_runId: 'run-20261124-120000',
      SSM_maxErrorRate: '0.05',
    });
    expect(result.status).toBe(0);
    expect(result.argv).toEqual([
      'run',
      '--input', 's3://orchard-test/images/Apple Braeburn/',
      '--output', 's3://orchard-test/results/',
      '--variance', '0.9',
      '--model', 'mobilenet_v2',
      '--run-id', 'run-20261124-120000',
      '--max-error-rate', '0.05',
    ]);
  });

  test('passes keys with spaces, non-ASCII letters and S3\'s other ordinary characters unchanged', () => {
    const input = 's3://orchard-test/images/Äpfel Braeburn/x+y=1,@2:(a)!_.*/';
    expect(runPipeline({ ...VALID, SSM_input: input }).argv).toEqual(['run', '--input', input, '--output', VALID.SSM_output]);
  });

  test('passes a model URL with a query string', () => {
    const model = 'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v2_100_224/feature_vector/3/default/1?tfjs-format=file';
    expect(runPipeline({ ...VALID, SSM_model: model }).argv).toEqual(['run', '--input', VALID.SSM_input, '--output', VALID.SSM_output, '--model', model]);
  });

  test('leaves out the optional parameters that are empty or unset', () => {
    const result = runPipeline({ ...VALID, SSM_components: '', SSM_model: '', SSM_runId: '' });
    expect(result.status).toBe(0);
    expect(result.argv).toEqual(['run', '--input', VALID.SSM_input, '--output', VALID.SSM_output]);
  });

  test('passes components, and a model given by S3 URI or https URL', () => {
    expect(runPipeline({ ...VALID, SSM_components: '12', SSM_model: 's3://orchard-test/models/my-cnn/' }).argv).toEqual([
      'run', '--input', VALID.SSM_input, '--output', VALID.SSM_output, '--components', '12', '--model', 's3://orchard-test/models/my-cnn/',
    ]);
    expect(runPipeline({ ...VALID, SSM_model: 'https://example.com/models/cnn/model.json' }).argv).toContain('https://example.com/models/cnn/model.json');
  });

  test('runs orchard from ORCHARD_HOME, as ORCHARD_USER', () => {
    const result = runPipeline(VALID);
    expect(result.user).toBe(userName());
    expect(fs.realpathSync(result.cwd!)).toBe(fs.realpathSync(dir));
  });

  test("exits with orchard's own exit status", () => {
    expect(runPipeline(VALID, { STUB_EXIT: '3' }).status).toBe(3);
    expect(runPipeline(VALID, { STUB_EXIT: '1' }).status).toBe(1);
  });

  const ATTACKS: [string, Record<string, string>][] = [
    ['a command after the run id', { SSM_runId: 'x; touch MARKER' }],
    ['a command substitution in the input', { SSM_input: 's3://orchard-test/$(touch MARKER)/' }],
    ['backticks in the output', { SSM_output: 's3://orchard-test/`touch MARKER`/' }],
    ['a second option inside components', { SSM_components: '3 --keep-features' }],
    ['a newline and a command in the variance', { SSM_variance: '0.9\ntouch MARKER' }],
    ['an option as the model', { SSM_model: '--feature-layer=x' }],
    ['a pipe in the model URL', { SSM_model: 'https://example.com/m|touch MARKER' }],
    ['a command in the max error rate', { SSM_maxErrorRate: '0.1&&touch MARKER' }],
    ['a relative path as the input', { SSM_input: '../../etc/' }],
    ['a quote in the input', { SSM_input: "s3://orchard-test/a'b/" }],
    ['a glob in the output', { SSM_output: 's3://orchard-test/[a-z]*/' }],
    ['a second option after the run id', { SSM_runId: 'run-1 --keep-features' }],
  ];

  test.each(ATTACKS)('refuses %s (exit 2), and neither runs it nor starts orchard', (_name, attack) => {
    const marker = path.join(dir, 'pwned');
    fs.rmSync(marker, { force: true });
    const parameters = Object.fromEntries(Object.entries(attack).map(([key, value]) => [key, value.replaceAll('MARKER', marker)]));
    const result = runPipeline({ ...VALID, ...parameters });
    expect(result.status).toBe(2);
    const name = Object.keys(attack)[0]!.replace(/^SSM_/, '');
    expect(result.stderr).toContain(`run-pipeline: parameter '${name}': expected`);
    expect(fs.existsSync(marker)).toBe(false);
    expect(result.started).toBe(false);
  });

  test("lets components win over variance, which SSM fills with the document's default when it is not sent", () => {
    const result = runPipeline({ ...VALID, SSM_components: '5', SSM_variance: '0.95' });
    expect(result.status).toBe(0);
    expect(result.argv).toEqual(['run', '--input', VALID.SSM_input, '--output', VALID.SSM_output, '--components', '5']);
    expect(result.stderr).toContain("components=5 given: variance=0.95 (the document's default) does not apply");
  });

  test('says what is wrong when the SSM Agent set no SSM_* variables', () => {
    const result = runPipeline({});
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('SSM_input is not set');
    expect(result.stderr).toContain('interpolationType ENV_VAR');
    expect(result.started).toBe(false);
  });

  test('refuses arguments: parameters come only from the environment', () => {
    const result = spawnSync('bash', [RUN_PIPELINE, '--input', 's3://orchard-test/x/'], { encoding: 'utf8', env: { PATH: process.env.PATH, ...VALID } });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('usage:');
  });

  const canSwitchUser = process.getuid?.() === 0 && spawnSync('id', ['-u', 'nobody']).status === 0 && spawnSync('runuser', ['--help']).status === 0;
  (canSwitchUser ? test : test.skip)('as root, runs orchard as ORCHARD_USER through runuser', () => {
    // The stub and its folder must be reachable by that user, as /opt/orchard is on the instance.
    fs.chmodSync(dir, 0o755);
    const result = runPipeline(VALID, { ORCHARD_USER: 'nobody' });
    expect(result.status).toBe(0);
    expect(result.user).toBe('nobody');
  });
});

function userName(): string {
  return spawnSync('id', ['-un'], { encoding: 'utf8' }).stdout.trim();
}
