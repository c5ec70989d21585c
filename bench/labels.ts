/**
 * `npm run bench:labels -- <run folder>`: checks the manifest's label figures against scikit-learn. Rebuilds the
 * sample the publish stage checked (the same pure sampling, from pca.csv's rows in run order), hands it to
 * bench/labels_sklearn.py (KNeighborsClassifier(1), cross_val_score with cv = the manifest's folds), and prints
 * both side by side. Exits 1 when the accuracy or a class's recall differs by more than 0.01.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import type { Manifest } from '../runtime/contracts/results';
import { sampleSize, stratifiedSample } from '../runtime/quality/sample';
import { runChild } from './child';

const PYTHON = '/usr/bin/python3';
const SCRIPT = path.join(__dirname, 'labels_sklearn.py');
export const TOLERANCE = 0.01;

async function main(): Promise<number> {
  const dir = process.argv[2];
  if (!dir || process.argv.includes('--help')) {
    process.stdout.write('usage: npm run bench:labels -- <local run folder with manifest.json and pca.csv>\n');
    return dir ? 0 : 2;
  }
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Manifest;
  const quality = manifest.labelQuality;
  if (quality?.status !== 'assessed') {
    process.stderr.write(`${dir}/manifest.json has no label figures (${quality ? quality.reason : 'no labelQuality'})\n`);
    return 2;
  }
  const csvFile = path.join(dir, 'pca.csv');
  if (!fs.existsSync(csvFile)) {
    process.stderr.write(`${csvFile} is missing (the run was too large for the single-file outputs)\n`);
    return 2;
  }
  const [header, ...rows] = parse(fs.readFileSync(csvFile)) as string[][];
  const k = quality.sample.components;
  const labelAt = header!.indexOf('label');
  const pcAt = Array.from({ length: k }, (_, i) => header!.indexOf(`pc_${i + 1}`));
  const chosen = stratifiedSample(rows.map((row) => row[labelAt]!), sampleSize(rows.length, k));
  const sampleFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'orchard-bench-labels-')), 'sample.csv');
  fs.writeFileSync(sampleFile, stringify([['label', ...pcAt.map((_, i) => `pc_${i + 1}`)], ...chosen.map((i) => [rows[i]![labelAt]!, ...pcAt.map((at) => rows[i]![at]!)])]));

  const result = await runChild(PYTHON, [SCRIPT, sampleFile, String(quality.folds)]);
  fs.rmSync(path.dirname(sampleFile), { recursive: true, force: true });
  const sk = JSON.parse(result.stdout.trim().split('\n').pop() ?? '{}') as {
    error?: boolean;
    message?: string;
    sklearn: string;
    rows: number;
    accuracy: number;
    recall: Record<string, number>;
    confusions: [string, string, number][];
  };
  if (result.code !== 0 || sk.error) {
    process.stderr.write(`labels_sklearn.py failed: ${sk.message ?? result.stderr.trim().split('\n').slice(-3).join(' | ')}\n`);
    return 2;
  }
  const recallGaps = quality.classes.map((c) => ({ label: c.label, orchard: c.recall, sklearn: sk.recall[c.label] ?? NaN }));
  const worst = recallGaps.reduce((m, g) => Math.max(m, Math.abs(g.orchard - g.sklearn)), 0);
  const cells = (list: readonly (readonly [string, string, number])[]) => new Set(list.map((c) => JSON.stringify(c)));
  const ours = cells(quality.confusions.map((c) => [c.label, c.predicted, c.count] as const));
  const theirs = cells(sk.confusions);
  const sameConfusions = ours.size === theirs.size && [...ours].every((c) => theirs.has(c));
  const accuracyGap = Math.abs(quality.accuracy - sk.accuracy);
  const lines = [
    `run ${manifest.runId}: ${quality.sample.rows} sampled rows of ${quality.sample.of}, ${k} components, ${quality.folds} folds (scikit-learn ${sk.sklearn} on ${sk.rows} rows)`,
    `accuracy          orchard ${quality.accuracy.toFixed(4)}   scikit-learn ${sk.accuracy.toFixed(4)}   |difference| ${accuracyGap.toFixed(4)}`,
    `per-class recall  largest |difference| ${worst.toFixed(4)} over ${recallGaps.length} classes`,
    ...recallGaps.map((g) => `  ${g.label.padEnd(28)} orchard ${g.orchard.toFixed(3)}   scikit-learn ${g.sklearn.toFixed(3)}`),
    `confusion cells   ${sameConfusions ? 'identical' : 'DIFFERENT'} (${ours.size} non-zero off-diagonal cells)`,
    `confused pairs    ${quality.confusedPairs.slice(0, 5).map((p) => `${p.a} ↔ ${p.b} (${p.aAsB}+${p.bAsA})`).join(', ')}`,
  ];
  const ok = accuracyGap <= TOLERANCE && worst <= TOLERANCE;
  process.stdout.write(`${lines.join('\n')}\n${ok ? 'OK' : 'FAIL'}: within ${TOLERANCE}\n`);
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(2);
  },
);
