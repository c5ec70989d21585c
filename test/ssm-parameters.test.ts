/**
 * The SSM document's parameters and run-pipeline.sh accept exactly the same values (issue 16, defect 7): the same
 * cases go to the allowedPattern of the synthesized document and to the script, run with bash as SSM runs it
 * (ORCHARD_BIN a stub that only records that it started). One source of truth: lib/run-parameters.ts.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stageInstanceScripts } from '../lib/runtime-bundle';
import { fakeBundle, logicalId, resource, synthOrchard } from './infra/app';
import { tempDir } from './helpers/s3';

const NAMES = ['input', 'output', 'components', 'variance', 'model', 'runId', 'maxErrorRate'] as const;
type Name = (typeof NAMES)[number];
const VALID: Record<Name, string> = {
  input: 's3://orchard-test/images/',
  output: 's3://orchard-test/results/',
  components: '',
  variance: '0.95',
  model: 'mobilenet_v2',
  runId: '',
  maxErrorRate: '0.01',
};

/** [parameter, value]: each must be accepted by both or refused by both. */
const CASES: [Name, string][] = [
  ['variance', '.1234567891'],
  ['variance', '0.95'],
  ['variance', '0.0'],
  ['variance', '1'],
  ['maxErrorRate', '0.0000000001'],
  ['maxErrorRate', '0'],
  ['maxErrorRate', '1'],
  ['maxErrorRate', '1.0'],
  ['maxErrorRate', '1.5'],
  ['maxErrorRate', '.5'],
  ['model', '0abc'],
  ['model', 'mobilenet_v2_offline'],
  ['model', 's3://orchard-test/models/my cnn/'],
  ['model', 'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v2_100_224/feature_vector/3/default/1?tfjs-format=file'],
  ['model', 'https://example.com/a b'],
  ['input', 's3://orchard-test/images/A&B/'],
  ['input', 's3://orchard-test/images/#1/'],
  ['input', 's3://orchard-test/images/Apple Braeburn/'],
  ['input', 's3://orchard-test/images/Äpfel+Birnen, 2=1@x:y/(a)!_.*-/'],
  ['input', 's3://orchard-test'],
  ['input', 's3://Orchard/images/'],
  ['input', 's3://orchard-test/images/a\tb/'],
  ['input', "s3://orchard-test/images/a'b/"],
  ['output', 's3://orchard-test/results/?x'],
  ['components', '9999'],
  ['components', '10000'],
  ['components', '0'],
  ['runId', 'run-20261124-120000'],
  ['runId', '-rf'],
  ['runId', '../x'],
];

let patterns: Record<string, string>;
let dir: string;

beforeAll(() => {
  const synthesized = synthOrchard({ runtimeDir: fakeBundle('ssm parameter tests: the bundle does not matter here') });
  const document = resource(synthesized.computeTemplate, logicalId(synthesized.compute.runDocument.document));
  patterns = Object.fromEntries(Object.entries(document.Properties.Content.parameters as Record<string, { allowedPattern: string }>).map(([name, p]) => [name, p.allowedPattern]));
  dir = tempDir('orchard-ssm-parameters-');
  stageInstanceScripts(dir);
  fs.writeFileSync(path.join(dir, 'orchard-stub'), '#!/usr/bin/env bash\necho started\n', { mode: 0o755 });
});

/** Whether run-pipeline.sh, run as SSM runs it, gets as far as starting orchard. */
function scriptAccepts(name: Name, value: string): boolean {
  const ssm = Object.fromEntries(Object.entries({ ...VALID, [name]: value }).map(([key, v]) => [`SSM_${key}`, v]));
  const user = spawnSync('id', ['-un'], { encoding: 'utf8' }).stdout.trim();
  const result = spawnSync('bash', [path.join(dir, 'run-pipeline.sh')], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ORCHARD_HOME: dir, ORCHARD_BIN: path.join(dir, 'orchard-stub'), ORCHARD_USER: user, ...ssm },
  });
  if (result.status !== 0 && result.status !== 2) throw new Error(`run-pipeline.sh exited ${result.status}: ${result.stderr}`);
  if (result.status === 2) expect(result.stderr).toContain(`parameter '${name}'`);
  return result.status === 0 && result.stdout.includes('started');
}

describe('16.7 the SSM document accepts exactly what the instance script accepts', () => {
  test('16.7 the document declares a pattern for every parameter the script reads', () => {
    expect(Object.keys(patterns).sort()).toEqual([...NAMES].sort());
  });

  test.each(CASES)('16.7 ssm document and run-pipeline.sh agree on %s %j', (name, value) => {
    const documentAccepts = new RegExp(patterns[name]!).test(value);
    expect([name, value, scriptAccepts(name, value)]).toEqual([name, value, documentAccepts]);
  });

  test('16.7 the cases cover both answers for each parameter with a pattern to get wrong', () => {
    for (const name of ['variance', 'maxErrorRate', 'model', 'input', 'components', 'runId'] as const) {
      const answers = new Set(CASES.filter(([n]) => n === name).map(([n, value]) => new RegExp(patterns[n]!).test(value)));
      expect([name, [...answers].sort()]).toEqual([name, [false, true]]);
    }
  });
});
