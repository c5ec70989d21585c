/**
 * Opens the report.html of a real run (tiny model, generated images, one non-image file) in Debian's headless
 * Chromium and checks what a person would see: the charts drawn with the expected series, the legend, the
 * tooltip, the thumbnails, the error list, and no error in the console. Saves a full-page screenshot to
 * test-output/report.png.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { generateSampleImages } from '../runtime/images/generate';
import { initTf } from '../runtime/model/backend';
import { runPipeline, type RunResult } from '../runtime/pipeline/run';
import { silentReporter } from '../runtime/progress';
import { LocalStorage, S3Storage, createS3Client } from '../runtime/storage';
import { ClassSampler, varianceCurve } from '../runtime/report/data';
import { renderReport } from '../runtime/report/html';
import { uploadTree } from '../runtime/upload';
import { startTestS3, tempDir } from './helpers/s3';
import { saveTinyModel, tinyRunConfig } from './helpers/tiny-model';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = path.resolve(__dirname, '..', 'test-output', 'report.png');
const CLASSES = ['Apple Braeburn', 'Banana', 'Kiwi', 'Pêche de vigne'];
const PER_CLASS = 6;
const NOT_AN_IMAGE = 'Banana/README.txt';
const BUCKET = 'report-test';

// In CI the browser test must run (.ci/run installs chromium); elsewhere it is skipped, loudly, without one.
const available = fs.existsSync(CHROMIUM) || Boolean(process.env.CI);
if (!available) console.warn(`report-browser.test.ts skipped: ${CHROMIUM} is missing (apt-get install chromium to run it)`);
const describeWithBrowser = available ? describe : describe.skip;

interface ChartSummary {
  type: string;
  datasets: { label: string; type?: string; points: number }[];
  legend: string[];
  painted: number;
}

describeWithBrowser('the report of a run, in headless Chromium', () => {
  let s3: Awaited<ReturnType<typeof startTestS3>>;
  let result: RunResult;
  let context: BrowserContext;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    s3 = await startTestS3([BUCKET]);
    const tf = await initTf('wasm');
    const modelDir = tempDir();
    await saveTinyModel(tf.tf, new LocalStorage(modelDir));
    const images = tempDir();
    await generateSampleImages(images, { perClass: PER_CLASS, seed: 11, classes: CLASSES });
    fs.writeFileSync(path.join(images, NOT_AN_IMAGE), 'not a picture\n');
    await uploadTree({ sourceDir: images, target: new S3Storage(createS3Client(s3.options), BUCKET, 'images/') });

    result = await runPipeline(
      tinyRunConfig(modelDir, s3.options, {
        input: { kind: 's3', bucket: BUCKET, prefix: 'images/' },
        output: { kind: 'local', dir: tempDir() },
        runId: 'report',
        components: { kind: 'variance', fraction: 0.99 },
        shardSize: 10,
        maxErrorRate: 0.1,
      }),
      { reporter: silentReporter(), tf },
    );

    context = await chromium.launchPersistentContext(tempDir('orchard-chromium-'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 },
    });
    // The report must need no network: any request other than the file itself is a failure.
    await context.route('**/*', (route) => (route.request().url().startsWith('file:') ? route.continue() : route.abort()));
    page = await context.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
    await page.goto(pathToFileURL(result.outputs.report!).href, { waitUntil: 'load' });
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  afterAll(async () => {
    await context?.close();
    await s3?.close();
  });

  const chart = (id: string): Promise<ChartSummary> =>
    page.evaluate((canvasId) => {
      type ChartLike = {
        config: { type: string };
        data: { datasets: { label: string; type?: string; data: unknown[] }[] };
        legend: { legendItems: { text: string }[] };
      };
      const instance = (window as unknown as { Chart: { getChart(id: string): ChartLike } }).Chart.getChart(canvasId);
      const canvas = document.getElementById(canvasId) as HTMLCanvasElement;
      const pixels = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      let painted = 0;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i]! > 0) painted += 1;
      return {
        type: instance.config.type,
        datasets: instance.data.datasets.map((d) => ({ label: d.label, type: d.type, points: d.data.length })),
        legend: instance.legend.legendItems.map((item) => item.text),
        painted,
      };
    }, id);

  it('runs with k ≥ 3 and one failed file, so every part of the report has something to show', () => {
    expect(result.manifest.pca!.components).toBeGreaterThanOrEqual(3);
    expect(result.manifest.counts.failed).toBe(1);
    expect(result.manifest.outputs.report).toBe(result.outputs.report);
  });

  it('loads without console errors, page errors or network requests', () => {
    expect(problems).toEqual([]);
  });

  it('draws four charts: variance per component, the cumulative curve, PC1 × PC2 and PC1 × PC3', async () => {
    expect(await page.$$eval('canvas', (canvases) => canvases.map((c) => c.id))).toEqual(['scree', 'cumulative', 'scatter-pc1-pc2', 'scatter-pc1-pc3']);
  });

  it('draws the variance per component as bars, past k', async () => {
    const scree = await chart('scree');
    expect(scree.type).toBe('bar');
    expect(scree.datasets).toHaveLength(1);
    expect(scree.datasets[0]!.points).toBeGreaterThan(result.manifest.pca!.components);
    expect(scree.painted).toBeGreaterThan(1000);
  });

  it('draws the cumulative curve on its own chart, with the chosen k and the variance target marked', async () => {
    const cumulative = await chart('cumulative');
    const k = result.manifest.pca!.components;
    expect(cumulative.legend).toEqual([
      'cumulative explained variance',
      `chosen k = ${k} (${(result.manifest.pca!.explainedVariance * 100).toFixed(2)}%)`,
      'variance target 99%',
    ]);
    expect(cumulative.painted).toBeGreaterThan(1000);
  });

  it.each(['scatter-pc1-pc2', 'scatter-pc1-pc3'])('draws %s with one dataset per class, named in the legend', async (id) => {
    const scatter = await chart(id);
    expect(scatter.type).toBe('scatter');
    expect(scatter.legend).toEqual(CLASSES);
    expect(scatter.datasets.map((d) => d.points)).toEqual(CLASSES.map(() => PER_CLASS));
    expect(scatter.painted).toBeGreaterThan(1000);
  });

  it('names the image key in the tooltip of a hovered point', async () => {
    const point = await page.evaluate(() => {
      const instance = (window as unknown as { Chart: { getChart(id: string): { getDatasetMeta(i: number): { data: { x: number; y: number }[] } } } }).Chart.getChart('scatter-pc1-pc2');
      const { x, y } = instance.getDatasetMeta(1).data[0]!;
      return { x, y };
    });
    await page.locator('#scatter-pc1-pc2').scrollIntoViewIfNeeded();
    const box = (await page.locator('#scatter-pc1-pc2').boundingBox())!;
    await page.mouse.move(box.x + point.x, box.y + point.y);
    const lines = await page.evaluate(() => {
      const instance = (window as unknown as { Chart: { getChart(id: string): { tooltip: { body: { lines: string[] }[] } } } }).Chart.getChart('scatter-pc1-pc2');
      return instance.tooltip.body.flatMap((part) => part.lines);
    });
    expect(lines).toContain('Banana: Banana/0_100.jpg');
  });

  it('gives each class one colour and marker, the same in both scatter plots and in the classes table', async () => {
    const looks = await page.evaluate(() => {
      type Dataset = { label: string; borderColor: string; pointStyle: string };
      const charts = (window as unknown as { Chart: { getChart(id: string): { data: { datasets: Dataset[] } } } }).Chart;
      const of = (id: string) => charts.getChart(id).data.datasets.map((d) => `${d.label} ${d.borderColor} ${d.pointStyle}`);
      const table = Array.from(document.querySelectorAll('table.classes tbody tr'), (row) => {
        const mark = row.querySelector('svg.swatch > *')!;
        return `${row.querySelector('td')!.textContent!.trim()} ${mark.getAttribute('fill') ?? mark.getAttribute('stroke')}`;
      });
      return { a: of('scatter-pc1-pc2'), b: of('scatter-pc1-pc3'), table };
    });
    expect(looks.a).toEqual(looks.b);
    expect(new Set(looks.a.map((look) => look.split(' ').slice(-2).join(' '))).size).toBe(CLASSES.length);
    expect(looks.table).toEqual(looks.a.map((look) => look.split(' ').slice(0, -1).join(' ')));
  });

  it("shows the labels' cross-validated accuracy and recall per class", async () => {
    const quality = result.manifest.labelQuality;
    if (quality?.status !== 'assessed') throw new Error('labels not assessed');
    expect(await page.locator('#labels .headline').textContent()).toContain(`${(quality.accuracy * 100).toFixed(1)}%`);
    expect(await page.$$eval('#labels table.recall tbody tr', (rows) => rows.length)).toBe(CLASSES.length);
  });

  it('shows up to four thumbnails per class as data: URIs', async () => {
    const sources = await page.$$eval('td.thumbs img', (images) => images.map((img) => (img as HTMLImageElement).src));
    expect(sources).toHaveLength(CLASSES.length * 4);
    for (const src of sources) expect(src).toMatch(/^data:image\/jpeg;base64,/);
    expect(await page.$$eval('td.thumbs img', (images) => images.every((img) => (img as HTMLImageElement).naturalWidth > 0))).toBe(true);
  });

  it('counts the images of each class', async () => {
    const rows = await page.$$eval('table.classes tbody tr', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td')).slice(0, 2).map((td) => td.textContent!.trim())));
    expect(rows).toEqual(CLASSES.map((label) => [label, String(PER_CLASS)]));
  });

  it('lists the file that failed, with its reason', async () => {
    const rows = await page.$$eval('table.errors tbody tr', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent!.trim())));
    expect(rows).toEqual([[NOT_AN_IMAGE, expect.stringMatching(/image/)]]);
  });

  it('saves a full-page screenshot', () => {
    expect(fs.statSync(SCREENSHOT).size).toBeGreaterThan(10_000);
  });

  it('keeps 100 classes apart: every class in both legends, no two with the same colour and marker', async () => {
    const sampler = new ClassSampler();
    const names = Array.from({ length: 100 }, (_, c) => `Fruit number ${c + 1}`);
    for (let i = 0; i < 1000; i++) sampler.add(`${names[i % 100]}/${i}.jpg`, names[i % 100]!, [Math.sin(i), Math.cos(i * 3), (i % 100) / 10]);
    const html = renderReport({
      manifest: { ...result.manifest, labelQuality: undefined },
      classes: sampler.result(),
      variance: varianceCurve({ n_components_: 3, cumulative_explained_variance_ratio: [0.5, 0.8, 0.9, 1] }),
      errors: { listed: [], total: 0 },
      thumbnails: new Map(),
      sampling: { perClass: 500, total: 20_000 },
      generatedAt: new Date(),
    });
    const file = path.join(tempDir(), 'report-100.html');
    fs.writeFileSync(file, html);
    const many = await context.newPage();
    try {
      await many.goto(pathToFileURL(file).href, { waitUntil: 'load' });
      const shown = await many.evaluate(() => {
        type ChartLike = { legend: { legendItems: { text: string }[] }; data: { datasets: { borderColor: string; pointStyle: string }[] } };
        const charts = (window as unknown as { Chart: { getChart(id: string): ChartLike } }).Chart;
        return ['scatter-pc1-pc2', 'scatter-pc1-pc3'].map((id) => ({
          // Chart.js lays every item out but draws the legend box no taller than its maxHeight: count the items
          // inside the box.
          drawn: ((legend: { bottom: number; legendHitBoxes: { top: number; height: number }[] }) =>
            legend.legendHitBoxes.filter((box) => box.top + box.height <= legend.bottom + 1).length)(charts.getChart(id).legend as never),
          looks: new Set(charts.getChart(id).data.datasets.map((d) => `${d.borderColor} ${d.pointStyle}`)).size,
        }));
      });
      expect(shown).toEqual([{ drawn: 100, looks: 100 }, { drawn: 100, looks: 100 }]);
    } finally {
      await many.close();
    }
  });
});
