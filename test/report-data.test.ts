import sharp from 'sharp';
import type { Manifest } from '../runtime/contracts/results';
import { thumbnail } from '../runtime/report/build';
import {
  ClassSampler,
  ErrorCollector,
  MAX_ERRORS_LISTED,
  MAX_POINTS_PER_CLASS,
  MAX_POINTS_TOTAL,
  THUMBNAILS_PER_CLASS,
  classCounts,
  varianceCurve,
} from '../runtime/report/data';
import { renderReport, type Thumbnail } from '../runtime/report/html';

/** Feeds `rows` rows, spread round-robin over `classes` classes, into a sampler. */
function sample(rows: number, classes: number, options: ConstructorParameters<typeof ClassSampler>[0] = {}, order: 'round-robin' | 'blocks' = 'round-robin') {
  const sampler = new ClassSampler(options);
  const perClass = Math.ceil(rows / classes);
  for (let i = 0; i < rows; i++) {
    const c = order === 'round-robin' ? i % classes : Math.floor(i / perClass);
    const n = order === 'round-robin' ? Math.floor(i / classes) : i % perClass;
    sampler.add(`Class ${c}/${n}_100.jpg`, `Class ${c}`, [n, -n, n / 2, 99]);
  }
  return sampler;
}

describe('per-class reservoir sampling of scatter points', () => {
  it('keeps every row of a class smaller than the cap', () => {
    const [only] = sample(30, 1).result();
    expect(only!.points).toHaveLength(30);
  });

  it(`keeps at most MAX_POINTS_PER_CLASS (${MAX_POINTS_PER_CLASS}) points per class`, () => {
    for (const c of sample(6000, 3).result()) expect(c.points).toHaveLength(MAX_POINTS_PER_CLASS);
  });

  it('counts every row of each class, sampled or not', () => {
    expect(classCounts(sample(6001, 3).result())).toEqual([
      { label: 'Class 0', count: 2001 },
      { label: 'Class 1', count: 2000 },
      { label: 'Class 2', count: 2000 },
    ]);
  });

  it('gives the same sample for the same rows and seed', () => {
    expect(sample(5000, 2, { seed: 1 }).result()).toEqual(sample(5000, 2, { seed: 1 }).result());
  });

  it('takes the points as functions too: the same sample, each called only for a row it keeps', () => {
    const lazy = new ClassSampler();
    let calls = 0;
    for (let i = 0; i < 20_000; i++) {
      const c = i % 2;
      const n = Math.floor(i / 2);
      lazy.add(`Class ${c}/${n}_100.jpg`, `Class ${c}`, () => (calls++, [n, -n, n / 2, 99]));
    }
    expect(lazy.result()).toEqual(sample(20_000, 2).result());
    // 500 + 500 ln(10,000 / 500) ≈ 2,000 kept at some point per class of 10,000.
    expect(calls).toBeGreaterThanOrEqual(2 * MAX_POINTS_PER_CLASS);
    expect(calls).toBeLessThan(20_000 / 4);
  });

  it('gives another sample for another seed', () => {
    expect(sample(5000, 2, { seed: 1 }).result()).not.toEqual(sample(5000, 2, { seed: 2 }).result());
  });

  it('gives the same sample however the classes are interleaved', () => {
    expect(sample(4000, 2, {}, 'round-robin').result()).toEqual(sample(4000, 2, {}, 'blocks').result());
  });

  it('samples uniformly: the kept rows of 20,000 spread over the whole stream', () => {
    const [only] = sample(20_000, 1).result();
    const positions = only!.points.map((p) => p.pcs[0]!);
    const mean = positions.reduce((a, b) => a + b, 0) / positions.length;
    expect(Math.abs(mean - 10_000)).toBeLessThan(600); // standard error of the mean ≈ 5,770 / √500 ≈ 260
    expect(positions.filter((p) => p >= 15_000).length).toBeGreaterThan(80); // a quarter of 500, give or take
  });

  it('keeps the points in stream order, with at most PC1..PC3', () => {
    const [only] = sample(3000, 1).result();
    const positions = only!.points.map((p) => p.pcs[0]!);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(only!.points[0]!.pcs).toHaveLength(3);
  });

  it(`shares MAX_POINTS_TOTAL (${MAX_POINTS_TOTAL}) equally when there are many classes`, () => {
    const classes = sample(100 * 600, 100).result();
    for (const c of classes) expect(c.points).toHaveLength(MAX_POINTS_TOTAL / 100);
  });

  it(`remembers the first THUMBNAILS_PER_CLASS (${THUMBNAILS_PER_CLASS}) keys of each class`, () => {
    const [first] = sample(100, 2).result();
    expect(first!.thumbnailKeys).toEqual(['Class 0/0_100.jpg', 'Class 0/1_100.jpg', 'Class 0/2_100.jpg', 'Class 0/3_100.jpg']);
  });

  it('sorts classes by label, numbers in numeric order', () => {
    expect(sample(12, 12).result().map((c) => c.label).slice(0, 4)).toEqual(['Class 0', 'Class 1', 'Class 2', 'Class 3']);
    expect(sample(12, 12).result().at(-1)!.label).toBe('Class 11');
  });
});

describe('variance curve', () => {
  // Full curve of 6 features with rank 4: the last two ratios are 0.
  const model = {
    n_components_: 3,
    explained_variance_ratio_: [0.5, 0.25, 0.15],
    cumulative_explained_variance_ratio: [0.5, 0.75, 0.9, 1, 1, 1],
  };

  it('recovers the per-component ratios from the cumulative curve', () => {
    const curve = varianceCurve(model);
    expect(curve.ratio.map((r) => Number(r.toFixed(12)))).toEqual([0.5, 0.25, 0.15, 0.1]);
    expect(curve.cumulative).toEqual([0.5, 0.75, 0.9, 1]);
  });

  it('stops the curve at the rank of the data', () => {
    expect(varianceCurve(model).available).toBe(4);
  });

  it('gives the chosen k and the variance it explains', () => {
    expect(varianceCurve(model)).toMatchObject({ k: 3, explained: 0.9 });
  });

  it('gives the variance target of a --variance run', () => {
    expect(varianceCurve(model, { kind: 'variance', fraction: 0.85 }).target).toBe(0.85);
  });

  it('gives no target for a fixed -k', () => {
    expect(varianceCurve(model, { kind: 'components', count: 3 }).target).toBeUndefined();
  });

  it('draws enough components past k to see the curve flatten, not all 1280', () => {
    let sum = 0;
    const ratios = Array.from({ length: 1280 }, (_, i) => 0.1 * 0.9 ** i);
    const curve = varianceCurve({ n_components_: 23, cumulative_explained_variance_ratio: ratios.map((r) => (sum += r)) });
    expect(curve.ratio).toHaveLength(46);
  });

  it("says where a curve of the leading shares only stops, and nothing of a full one", () => {
    const leading = varianceCurve({ n_components_: 3, n_features_in_: 1280, cumulative_explained_variance_ratio: [0.5, 0.75, 0.9, 0.95, 0.97] });
    expect(leading.partial).toEqual({ components: 5, explained: 0.97 });
    expect(leading.cumulative).toEqual([0.5, 0.75, 0.9, 0.95, 0.97]);
    expect(varianceCurve({ ...model, n_features_in_: 6 }).partial).toBeUndefined();
    // Fewer values than features but all the variance (rank-deficient data): not partial.
    expect(varianceCurve({ n_components_: 2, n_features_in_: 1280, cumulative_explained_variance_ratio: [0.6, 1] }).partial).toBeUndefined();
  });

  it('falls back to the kept ratios when the model has no full curve', () => {
    const curve = varianceCurve({ n_components_: 2, explained_variance_ratio_: [0.6, 0.3] });
    expect(curve.cumulative).toEqual([0.6, 0.8999999999999999]);
    expect(curve.explained).toBeCloseTo(0.9, 12);
  });
});

describe('error list', () => {
  it(`lists the first MAX_ERRORS_LISTED (${MAX_ERRORS_LISTED}) errors and counts them all`, () => {
    const errors = new ErrorCollector();
    for (let i = 0; i < 2500; i++) errors.add(`bad/${i}.jpg`, 'not an image');
    const result = errors.result();
    expect(result.total).toBe(2500);
    expect(result.listed).toHaveLength(MAX_ERRORS_LISTED);
    expect(result.listed[0]).toEqual({ key: 'bad/0.jpg', reason: 'not an image' });
  });
});

/** A manifest as runPipeline writes it, for rendering without a run. */
function fakeManifest(k: number, images: number, failed: number): Manifest {
  return {
    orchard: '0.1.0',
    runId: 'run-synthetic',
    status: 'succeeded',
    startedAt: '2026-11-24T13:00:00.000Z',
    finishedAt: '2026-11-24T15:00:00.000Z',
    input: 's3://fruits/Training/',
    output: 's3://fruits/results/run-synthetic/',
    config: {},
    counts: { listed: images + failed, processed: images, failed, errorRate: failed / (images + failed), shards: 25, shardsResumed: 0 },
    pca: { components: k, explainedVariance: 0.95, spec: { kind: 'variance', fraction: 0.95 } },
    timings: { list: 3, model_load: 2, extract: 4000, fit: 30, publish: 40, total: 4075, predict: 3500 },
    imagesPerSecond: 25,
    engine: { name: 'tfjs', version: '4.22.0', backend: 'tensorflow', threads: 4, batchSize: 8 },
    model: { name: 'mobilenet_v2', featureDim: 1280 } as Manifest['model'],
    versions: {},
    s3Retries: {},
    outputs: {},
  };
}

describe('a report of 100,000 images', () => {
  const classes = 131; // as many as Fruits-360 has
  const k = 60;
  let html: string;

  beforeAll(async () => {
    const sampler = new ClassSampler();
    const pcs = new Array<number>(k);
    for (let i = 0; i < 100_000; i++) {
      const c = i % classes;
      for (let d = 0; d < k; d++) pcs[d] = Math.sin(i * (d + 1)) * 10 + c;
      sampler.add(`Training/Fruit number ${c}/r_${i}_100.jpg`, `Fruit number ${c}`, pcs);
    }
    const errors = new ErrorCollector();
    for (let i = 0; i < 3000; i++) errors.add(`Training/Broken/${i}.jpg`, 'corrupt or truncated image: premature end of JPEG data');
    // Real thumbnails of a 100×100 fruit-like image: the size of the page depends on them.
    const image = await sharp({ create: { width: 100, height: 100, channels: 3, background: '#ffffff' } })
      .composite([{ input: Buffer.from('<svg width="100" height="100"><circle cx="50" cy="50" r="38" fill="#c33"/><circle cx="40" cy="40" r="9" fill="#f99"/></svg>') }])
      .jpeg()
      .toBuffer();
    const src = await thumbnail(image, 1e6);
    const sampled = sampler.result();
    const thumbnails = new Map<string, Thumbnail[]>(sampled.map((c) => [c.label, c.thumbnailKeys.map((key) => ({ key, src }))]));
    let sum = 0;
    const curve = Array.from({ length: 1280 }, (_, i) => (sum += 0.9 ** i * 0.1));
    html = renderReport({
      manifest: fakeManifest(k, 100_000, 3000),
      classes: sampled,
      variance: varianceCurve({ n_components_: k, cumulative_explained_variance_ratio: curve.map((c) => c / sum) }, { kind: 'variance', fraction: 0.95 }),
      errors: errors.result(),
      thumbnails,
      sampling: { perClass: MAX_POINTS_PER_CLASS, total: MAX_POINTS_TOTAL },
      generatedAt: new Date(),
    });
  });

  it('stays under 4 MB', () => {
    // About 2.4 MB: 20,000 sampled points, 524 thumbnails, 1,000 errors and Chart.js (200 kB).
    expect(Buffer.byteLength(html)).toBeLessThan(4 * 1024 * 1024);
  });

  it('plots at most MAX_POINTS_TOTAL points', () => {
    const data = JSON.parse(html.match(/<script type="application\/json" id="report-data">(.*?)<\/script>/s)![1]!);
    const plotted = data.classes.reduce((sum: number, c: { keys: string[] }) => sum + c.keys.length, 0);
    expect(plotted).toBeLessThanOrEqual(MAX_POINTS_TOTAL);
    expect(plotted).toBeGreaterThan(MAX_POINTS_TOTAL * 0.9);
  });

  it('lists the first 1,000 errors and says how many more there are', () => {
    expect(html.match(/<td class="key">Training\/Broken\//g)).toHaveLength(MAX_ERRORS_LISTED);
    expect(html).toContain('… and 2,000 more');
  });
});

describe('rendering', () => {
  const render = (k: number, label: string) => {
    const sampler = new ClassSampler();
    for (let i = 0; i < 10; i++) sampler.add(`${label}/${i}.jpg`, label, [i, -i, i * 2].slice(0, k));
    return renderReport(
      {
        manifest: fakeManifest(k, 10, 0),
        classes: sampler.result(),
        variance: varianceCurve({ n_components_: k, cumulative_explained_variance_ratio: [0.7, 0.9, 1].slice(0, Math.max(k, 2)) }),
        errors: { listed: [], total: 0 },
        thumbnails: new Map(),
        sampling: { perClass: MAX_POINTS_PER_CLASS, total: MAX_POINTS_TOTAL },
        generatedAt: new Date(),
      },
      '/* Chart.js stub */',
    );
  };
  const canvases = (html: string) => [...html.matchAll(/<canvas id="([^"]+)"/g)].map((m) => m[1]);

  it('draws the variance charts and both scatter plots when k ≥ 3', () => {
    expect(canvases(render(3, 'Kiwi'))).toEqual(['scree', 'cumulative', 'scatter-pc1-pc2', 'scatter-pc1-pc3']);
  });

  it('leaves out PC1 × PC3 when k = 2', () => {
    expect(canvases(render(2, 'Kiwi'))).toEqual(['scree', 'cumulative', 'scatter-pc1-pc2']);
  });

  it('draws PC1 per class when k = 1', () => {
    expect(canvases(render(1, 'Kiwi'))).toEqual(['scree', 'cumulative', 'scatter-pc1']);
  });

  it('escapes a label that holds </script> in both the HTML and the inline JSON', () => {
    const html = render(2, '</script><script>alert(1)</script>');
    expect(html.match(/<\/script>/gi)).toHaveLength(3); // the three script elements of the page, no more
    expect(html).toContain('&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;');
    const data = JSON.parse(html.match(/<script type="application\/json" id="report-data">(.*?)<\/script>/s)![1]!);
    expect(data.classes[0].label).toBe('</script><script>alert(1)</script>');
  });
});
