/**
 * The label check (runtime/quality): scikit-learn's fold split, the bounded stratified sample, the figures and
 * the suspicious labels on points whose answer is known; then a real run (tiny model, generated images) where a
 * fifth of one class was filed under another: the check must name those images and the class they look like.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateSampleImages } from '../runtime/images/generate';
import { initTf, type TfRuntime } from '../runtime/model/backend';
import { runPipeline } from '../runtime/pipeline/run';
import { silentReporter } from '../runtime/progress';
import { assessLabels, labelSummary, nearestNeighbours, stratifiedFolds, VOTE_NEIGHBOURS, type LabelQuality } from '../runtime/quality/labels';
import { MAX_MULTIPLY_ADDS, MAX_SAMPLE_ROWS, MIN_ROWS_PER_CLASS, sampleSize, stratifiedSample } from '../runtime/quality/sample';
import { LocalStorage } from '../runtime/storage';
import { tempDir } from './helpers/s3';
import { saveTinyModel, tinyRunConfig } from './helpers/tiny-model';

const fixture = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'stratified-folds.json'), 'utf8')) as {
  sklearn: string;
  cases: { labels: string[]; nSplits: number; folds: number[] }[];
};

type Assessed = Extract<LabelQuality, { status: 'assessed' }>;
const assessed = (quality: LabelQuality | undefined): Assessed => {
  if (quality?.status !== 'assessed') throw new Error(`not assessed: ${JSON.stringify(quality)}`);
  return quality;
};

/** Gaussian-ish clusters around well-apart centres, seeded: `perClass` rows per label, `dim` components. */
function clusters(labels: readonly string[], perClass: number, dim: number, spread = 0.3) {
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) - 0.5;
  const keys: string[] = [];
  const rowLabels: string[] = [];
  const values = new Float64Array(labels.length * perClass * dim);
  let row = 0;
  // Rows interleaved across classes, as shards of a listing would give them.
  for (let i = 0; i < perClass; i++) {
    labels.forEach((label, c) => {
      for (let d = 0; d < dim; d++) values[row * dim + d] = (d === c % dim ? 5 * (1 + Math.floor(c / dim)) : 0) + spread * random();
      keys.push(`${label}/${i}.jpg`);
      rowLabels.push(label);
      row += 1;
    });
  }
  return { keys, labels: rowLabels, values, dim };
}

describe('stratifiedFolds', () => {
  it.each(fixture.cases.map((c, i) => [i, c] as const))(`gives scikit-learn ${fixture.sklearn}'s StratifiedKFold test folds (case %i)`, (_, c) => {
    expect([...stratifiedFolds(c.labels, c.nSplits)]).toEqual(c.folds);
  });
});

describe('stratifiedSample', () => {
  const labels = [...Array.from({ length: 9000 }, () => 'big'), ...Array.from({ length: 900 }, () => 'small'), 'rare', 'rare'];
  const shuffled = labels.map((label, i) => ({ label, at: (i * 7919) % labels.length })).sort((a, b) => a.at - b.at).map((x) => x.label);

  it('keeps every row, in order, when the run is no larger than the sample', () => {
    expect(stratifiedSample(['a', 'b', 'a'], 3)).toEqual([0, 1, 2]);
  });

  it('keeps exactly the size asked for, in run order, without repeats', () => {
    const chosen = stratifiedSample(shuffled, 1000);
    expect(chosen).toHaveLength(1000);
    expect(new Set(chosen).size).toBe(1000);
    expect([...chosen].sort((a, b) => a - b)).toEqual(chosen);
  });

  it(`keeps at least ${MIN_ROWS_PER_CLASS} rows of every class (all of a smaller one) and shares the rest by class size`, () => {
    const chosen = stratifiedSample(shuffled, 1000).map((i) => shuffled[i]);
    const count = (label: string) => chosen.filter((l) => l === label).length;
    expect(count('rare')).toBe(2);
    // The floor first (5 + 5 + 2), then the other 988 rows in proportion to what each class has left.
    const share = MIN_ROWS_PER_CLASS + (988 * (900 - MIN_ROWS_PER_CLASS)) / (9000 + 900 - 2 * MIN_ROWS_PER_CLASS);
    expect(Math.abs(count('small') - share)).toBeLessThan(1);
    expect(count('big')).toBe(1000 - 2 - count('small'));
  });

  it('gives the same sample for the same labels, and another for another seed', () => {
    expect(stratifiedSample(shuffled, 500)).toEqual(stratifiedSample(shuffled, 500));
    expect(stratifiedSample(shuffled, 500, 1)).not.toEqual(stratifiedSample(shuffled, 500));
  });

  it(`bounds the sample by ${MAX_SAMPLE_ROWS} rows and by ${MAX_MULTIPLY_ADDS.toExponential()} multiply-adds`, () => {
    expect(sampleSize(300, 62)).toBe(300);
    expect(sampleSize(1e6, 10)).toBe(MAX_SAMPLE_ROWS);
    const n = sampleSize(1e6, 400);
    expect(n * n * 400).toBeLessThanOrEqual(MAX_MULTIPLY_ADDS);
    expect((n + 1) * (n + 1) * 400).toBeGreaterThan(MAX_MULTIPLY_ADDS);
  });
});

/**
 * The search the label check did before it pruned: every pair summed in full, once, offered to both rows with the
 * other row's indices in ascending order (strict comparisons: a tie keeps the row offered first).
 */
function bruteForceNeighbours(values: Float32Array | Float64Array, dim: number, fold: Int32Array, k: number) {
  const n = fold.length;
  const best = new Float64Array(n).fill(Infinity);
  const bestJ = new Int32Array(n).fill(-1);
  const nearD = new Float64Array(n * k);
  const neighbours = new Int32Array(n * k);
  const filled = new Int32Array(n);
  const offer = (r: number, j: number, d: number) => {
    if (fold[j] !== fold[r] && d < best[r]!) {
      best[r] = d;
      bestJ[r] = j;
    }
    const base = r * k;
    const count = filled[r]!;
    if (count < k || d < nearD[base + count - 1]!) {
      let at = count < k ? (filled[r] = count + 1) - 1 : k - 1;
      while (at > 0 && nearD[base + at - 1]! > d) {
        nearD[base + at] = nearD[base + at - 1]!;
        neighbours[base + at] = neighbours[base + at - 1]!;
        at -= 1;
      }
      nearD[base + at] = d;
      neighbours[base + at] = j;
    }
  };
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      let d = 0;
      for (let c = 0; c < dim; c++) d += (values[i * dim + c]! - values[j * dim + c]!) ** 2;
      offer(i, j, d);
      offer(j, i, d);
    }
  }
  return { bestJ, neighbours };
}

describe('nearestNeighbours', () => {
  const folds = (n: number, count: number) => Int32Array.from({ length: n }, (_, i) => (i * 7) % count);
  let seed = 99;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);

  it('finds what comparing every pair finds, on float32 clusters of many sizes', () => {
    for (const [n, dim, k] of [[2, 1, 1], [7, 3, 6], [300, 26, VOTE_NEIGHBOURS], [900, 8, VOTE_NEIGHBOURS]] as const) {
      const { values } = clusters(['a', 'b', 'c', 'd', 'e'], Math.ceil(n / 5), dim, 2);
      const rows = Float32Array.from(values.subarray(0, n * dim));
      const fold = folds(n, 5);
      expect(nearestNeighbours(rows, dim, fold, k)).toEqual(bruteForceNeighbours(rows, dim, fold, k));
    }
  });

  it('breaks ties as a search in index order does, on rows with many equal distances and duplicates', () => {
    const n = 400;
    const dim = 9;
    // Small integers, mostly 0: distances repeat everywhere, partial sums often equal the whole, and rows have twins.
    const values = Float64Array.from({ length: n * dim }, () => (random() < 0.7 ? 0 : Math.floor(random() * 3)));
    const fold = folds(n, 3);
    const found = nearestNeighbours(values, dim, fold, VOTE_NEIGHBOURS);
    expect(found).toEqual(bruteForceNeighbours(values, dim, fold, VOTE_NEIGHBOURS));
  });

  it('breaks ties in the first component too (rows equal there, apart elsewhere)', () => {
    const n = 200;
    const dim = 4;
    const values = Float32Array.from({ length: n * dim }, (_, i) => (i % dim === 0 ? Math.floor(random() * 3) : random()));
    const fold = folds(n, 5);
    expect(nearestNeighbours(values, dim, fold, VOTE_NEIGHBOURS)).toEqual(bruteForceNeighbours(values, dim, fold, VOTE_NEIGHBOURS));
  });
});

describe('assessLabels', () => {
  const names = ['Apple', 'Banana', 'Kiwi', 'Lemon'];

  it('gives accuracy 1, recall 1, no confusion and no suspicious label for well-apart classes', () => {
    const q = assessed(assessLabels(clusters(names, 20, 4)));
    expect(q.accuracy).toBe(1);
    expect(q.classes.map((c) => [c.label, c.rows, c.recall])).toEqual(names.map((name) => [name, 20, 1]));
    expect(q.confusions).toEqual([]);
    expect(q.suspicious).toEqual([]);
    expect(q.majorityShare).toBe(0.25);
  });

  it('names a relabelled row, with the class its neighbours carry, and counts its confusion both ways', () => {
    const rows = clusters(names, 20, 4);
    const at = rows.keys.indexOf('Kiwi/3.jpg');
    const labels = [...rows.labels];
    labels[at] = 'Apple';
    const q = assessed(assessLabels({ ...rows, labels }));
    expect(q.suspicious).toContainEqual({ key: 'Kiwi/3.jpg', label: 'Apple', looksLike: 'Kiwi', reason: 'neighbours', score: VOTE_NEIGHBOURS });
    // Mislabelled as Apple, its nearest neighbour is a Kiwi; and the Kiwi next to it takes it for an Apple.
    expect(q.confusions.find((c) => c.label === 'Apple' && c.predicted === 'Kiwi')?.count).toBe(1);
    expect(q.confusedPairs[0]).toMatchObject({ a: 'Apple', b: 'Kiwi' });
    expect(q.accuracy).toBeLessThan(1);
  });

  it('names a row far from its own class, with the class it is nearest to', () => {
    const rows = clusters(names, 20, 4);
    const at = rows.keys.indexOf('Banana/5.jpg');
    const values = Float64Array.from(rows.values);
    // Halfway between Banana (axis 1) and Lemon (axis 3), a bit nearer Lemon: its neighbours are split.
    values.set([0, 2.2, 0, 2.8], at * 4);
    const q = assessed(assessLabels({ ...rows, values }));
    expect(q.suspicious.map((s) => [s.key, s.looksLike])).toContainEqual(['Banana/5.jpg', 'Lemon']);
  });

  it('sums the check up in one line for the run summaries', () => {
    const rows = clusters(names, 20, 4);
    const labels = [...rows.labels];
    labels[rows.keys.indexOf('Kiwi/3.jpg')] = 'Apple';
    const q = assessed(assessLabels({ ...rows, labels }, 1000));
    const weakest = [...q.classes].sort((a, b) => a.recall - b.recall)[0]!;
    expect(weakest.recall).toBeLessThan(1);
    expect(labelSummary(q)).toBe(
      `${(q.accuracy * 100).toFixed(1)}% 5-fold 1-NN accuracy on a sample of 80 of 1000 images of 4 classes; lowest recall ${weakest.label} ${(weakest.recall * 100).toFixed(0)}%; 1 suspicious label (see the report)`,
    );
    expect(labelSummary(assessed(assessLabels(rows)))).toMatch(/^100\.0% 5-fold 1-NN accuracy on 80 images of 4 classes; recall 100% in every class; 0 suspicious labels/);
    expect(labelSummary({ status: 'absent', reason: 'the run has no labels (--label-from none)' })).toBe('not checked: the run has no labels (--label-from none)');
  });

  it('says labels are absent when every label is empty (--label-from none), and when there is one class', () => {
    const rows = clusters(['x'], 10, 2);
    expect(assessLabels({ ...rows, labels: rows.labels.map(() => '') })).toEqual({ status: 'absent', reason: expect.stringMatching(/--label-from none/) });
    expect(assessLabels(rows)).toMatchObject({ status: 'absent', reason: expect.stringMatching(/same label \(x\)/) });
  });
});

describe('a run where a fifth of one class is filed under another', () => {
  const PER_CLASS = 20;
  const CLASSES = ['Apple Braeburn', 'Banana', 'Lemon', 'Kiwi', 'Strawberry'];
  let tf: TfRuntime;
  let modelDir: string;
  let moved: string[];
  let quality: Assessed;
  let report: string;
  let images: string;

  beforeAll(async () => {
    tf = await initTf('wasm');
    modelDir = tempDir();
    await saveTinyModel(tf.tf, new LocalStorage(modelDir));
    images = tempDir();
    await generateSampleImages(images, { perClass: PER_CLASS, seed: 5, classes: CLASSES });
    // Every fifth Banana goes into the Lemon folder: its label becomes Lemon.
    const bananas = fs.readdirSync(path.join(images, 'Banana')).sort();
    moved = bananas.filter((_, i) => i % 5 === 2).map((file) => {
      fs.renameSync(path.join(images, 'Banana', file), path.join(images, 'Lemon', `moved-${file}`));
      return `Lemon/moved-${file}`;
    });
    const output = tempDir();
    const result = await runPipeline(
      tinyRunConfig(modelDir, {}, { input: { kind: 'local', dir: images }, output: { kind: 'local', dir: output }, runId: 'relabelled', components: { kind: 'components', count: 8 } }),
      { reporter: silentReporter(), tf },
    );
    quality = assessed(result.manifest.labelQuality);
    report = fs.readFileSync(result.outputs.report!, 'utf8');
  });

  it(`moved ${PER_CLASS / 5} of ${PER_CLASS} Bananas`, () => {
    expect(moved).toHaveLength(PER_CLASS / 5);
  });

  it('lists every moved image among the suspicious labels, as looking like a Banana', () => {
    const listed = new Map(quality.suspicious.map((s) => [s.key, s]));
    for (const key of moved) expect(listed.get(key)).toMatchObject({ label: 'Lemon', looksLike: 'Banana' });
  });

  it('checks every image of the run, and counts the moved ones as Lemons that look like Bananas', () => {
    expect(quality.sample).toEqual({ rows: PER_CLASS * CLASSES.length, of: PER_CLASS * CLASSES.length, components: 8 });
    expect(quality.classes.find((c) => c.label === 'Lemon')?.rows).toBe(PER_CLASS + moved.length);
    expect(quality.confusions.find((c) => c.label === 'Lemon' && c.predicted === 'Banana')?.count).toBeGreaterThanOrEqual(moved.length - 1);
  });

  it("shows the moved images in the report's Labels section, with thumbnails, and says what the check cannot see", () => {
    const section = report.slice(report.indexOf('<section id="labels">'), report.indexOf('<section id="classes">'));
    expect(section).toContain(`${(quality.accuracy * 100).toFixed(1)}%`);
    for (const key of moved) expect(section).toContain(`<div class="key">${key}</div>`);
    expect(section.match(/<img src="data:image\/jpeg;base64,/g)!.length).toBeGreaterThanOrEqual(2 * moved.length);
    expect(section).toMatch(/a whole folder that is consistently wrong/);
  });

  it('gives the same figures when the run is too large for the single files (the rows read back from the Parquet parts)', async () => {
    const result = await runPipeline(
      tinyRunConfig(modelDir, {}, {
        input: { kind: 'local', dir: images },
        output: { kind: 'local', dir: tempDir() },
        runId: 'parts-only',
        components: { kind: 'components', count: 8 },
        singleFileMaxRows: 10,
      }),
      { reporter: silentReporter(), tf },
    );
    expect(result.outputs.csv).toBeUndefined();
    expect(result.manifest.labelQuality).toEqual(quality);
  });

  it('says labels are absent when the run has none (--label-from none)', async () => {
    const output = tempDir();
    const images = tempDir();
    await generateSampleImages(images, { perClass: 4, seed: 6, classes: ['Kiwi', 'Banana'] });
    const result = await runPipeline(
      tinyRunConfig(modelDir, {}, { input: { kind: 'local', dir: images }, output: { kind: 'local', dir: output }, runId: 'unlabelled', labelFrom: 'none' }),
      { reporter: silentReporter(), tf },
    );
    expect(result.manifest.labelQuality).toEqual({ status: 'absent', reason: 'the run has no labels (--label-from none)' });
    expect(fs.readFileSync(result.outputs.report!, 'utf8')).toMatch(/<h2>Labels<\/h2>\s*<p>Labels are absent: the run has no labels/);
  });
});
