/**
 * Renders the run report: one self-contained HTML page (no CDN, no network) that opens offline in any
 * browser. The static parts (summary, classes, thumbnails, errors) are plain HTML, readable without
 * JavaScript; the charts are drawn by Chart.js from data embedded as inline JSON.
 *
 * Why Chart.js (4.x, MIT): it is well kept (regular releases, wide use), small enough to inline (~200 kB
 * minified UMD, no dependencies), draws on a canvas (thousands of scatter points stay fast, where an SVG
 * library would create one DOM node per point), and has the scatter, bar and line charts, legends and
 * tooltips this page needs out of the box. Marker lines (chosen k, variance target) are extra line datasets,
 * so no plugin is needed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeEngine } from '../model/feature-model';
import type { Manifest } from '../contracts/results';
import { roundForPlot, type ClassSample, type ErrorList, type VarianceCurve } from './data';
import { displayLabel, escapeHtml, integer, percent } from './format';
import { labelsSection } from './labels-section';
import { classStyles, swatchSvg, type ClassStyle } from './palette';

export interface Thumbnail {
  readonly key: string;
  /** A `data:image/jpeg;base64,…` URI. */
  readonly src: string;
}

export interface ReportContent {
  /** The run's manifest (manifest.json); fields are read defensively, so older manifests render too. */
  readonly manifest: Manifest;
  /** Classes sorted by label, with counts and sampled scatter points. */
  readonly classes: readonly ClassSample[];
  /** The explained-variance curve; absent when the run has no PCA (too few images): the page then shows why. */
  readonly variance?: VarianceCurve;
  readonly errors: ErrorList;
  /** Thumbnails by class label. */
  readonly thumbnails: ReadonlyMap<string, readonly Thumbnail[]>;
  /** Thumbnails of the suspicious labels' images, by key (`data:` URIs). */
  readonly suspiciousThumbnails?: ReadonlyMap<string, string>;
  /** How the scatter was sampled, for the note under the plots. */
  readonly sampling: { readonly perClass: number; readonly total: number };
  readonly generatedAt: Date;
}

let chartJsCache: string | undefined;

/** Chart.js's UMD build, read from node_modules once. It defines the global `Chart`. */
export function chartJsSource(): string {
  if (chartJsCache === undefined) {
    // The package exports only its ESM/CJS entry points; the UMD build sits next to the CJS one.
    const file = path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.js');
    chartJsCache = fs.readFileSync(file, 'utf8');
  }
  return chartJsCache;
}

/**
 * Makes a script safe inside an HTML `<script>` element: a `</script` or `<!--` in it would end or confuse the
 * element. Chart.js has neither today; this keeps it so if a later version does (both only ever appear inside
 * JavaScript strings or regular expressions, where `<\/` and `<\!` mean the same).
 */
export function inlineScript(source: string): string {
  return source.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');
}

/** JSON for a `<script type="application/json">` element: every `<` escaped, so nothing can end the element. */
export function inlineJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

const seconds = (value: number | undefined) => (value === undefined ? '–' : `${value.toFixed(value < 10 ? 2 : 1)} s`);

/** Bars in the per-component chart: past these the bars are too thin to read; the cumulative curve goes on. */
export const SCREE_BARS = 40;
/** Height of a row of the scatter plots' legend, in px. */
const LEGEND_ROW = 24;

/** Renders the whole page. `chartJs` is the Chart.js UMD source (tests may pass a stub). */
export function renderReport(content: ReportContent, chartJs: string = chartJsSource()): string {
  if (!content.variance) return renderWithoutPca(content);
  const { classes } = content;
  const variance = content.variance;
  const styles = classStyles(classes.length);
  const dims = Math.min(variance.k, 3);
  // Legend rows for a chart about 520 px wide (two side by side): by the average label's width, so that the
  // legend never takes the plot's room nor is cut (Chart.js cuts a legend taller than half the chart by default).
  const averageLabel = classes.reduce((sum, c) => sum + displayLabel(c.label).length, 0) / Math.max(classes.length, 1);
  const legendRows = Math.ceil(classes.length / Math.max(1, Math.floor(500 / (7 * averageLabel + 34))));
  const scatterHeight = 420 + LEGEND_ROW * legendRows;
  const payload = {
    variance: {
      ratio: variance.ratio.map(roundForPlot),
      cumulative: variance.cumulative.map((c) => Number(c.toFixed(6))),
      k: variance.k,
      explained: variance.explained,
      target: variance.target ?? null,
    },
    dims,
    bars: SCREE_BARS,
    legendHeight: LEGEND_ROW * (legendRows + 1),
    classes: classes.map((c, i) => ({
      label: displayLabel(c.label),
      colour: styles[i]!.colour,
      fill: styles[i]!.fill,
      shape: styles[i]!.shape,
      keys: c.points.map((p) => p.key),
      // Column-wise: pcs[0] holds PC1 of every point, pcs[1] PC2, …
      pcs: Array.from({ length: dims }, (_, d) => c.points.map((p) => roundForPlot(p.pcs[d] ?? 0))),
    })),
  };

  const scatterCharts =
    dims >= 2
      ? [chartBox('scatter-pc1-pc2', 'PC1 × PC2', scatterHeight), ...(dims >= 3 ? [chartBox('scatter-pc1-pc3', 'PC1 × PC3', scatterHeight)] : [])]
      : [chartBox('scatter-pc1', 'PC1 by class (k = 1: a single component)', 160 + 28 * classes.length + LEGEND_ROW * legendRows)];

  return page(
    content,
    `${summarySection(content)}
<section id="variance">
  <h2>Explained variance</h2>
  <p class="note">Left: share of the variance explained by each of the first ${Math.min(SCREE_BARS, variance.ratio.length)} components${variance.k < Math.min(SCREE_BARS, variance.ratio.length) ? ' (the kept ones in blue, the others grey)' : ` (all kept: k = ${variance.k})`}.
  Right: cumulative share over ${variance.ratio.length} components, with the chosen k${variance.target !== undefined ? ' and the variance target' : ''} marked.
  ${variance.partial ? `The fit computes the leading components' shares only: the curve stops at component ${variance.partial.components}, ${(100 * variance.partial.explained).toFixed(1)} % of the variance.` : variance.available > variance.ratio.length ? `The first ${variance.ratio.length} of ${variance.available} components with non-zero variance are shown.` : ''}</p>
  <div class="charts">${chartBox('scree', 'Variance per component', 340)}
  ${chartBox('cumulative', 'Cumulative explained variance', 340)}</div>
</section>
<section id="scatter">
  <h2>Principal components</h2>
  <p class="note">${escapeHtml(samplingNote(content))} Hover a point to see its image key; click a class in the legend to hide it.</p>
  <div class="charts">${scatterCharts.join('\n')}</div>
</section>
${labelsSection({ quality: content.manifest.labelQuality, labels: classes.map((c) => c.label), styles, classThumbnails: content.thumbnails, suspiciousThumbnails: content.suspiciousThumbnails })}
${classesSection(content, styles)}
${errorsSection(content.errors)}`,
    ' Charts by Chart.js (MIT), inlined: this file needs no network.',
    `<script>${inlineScript(chartJs)}</script>
<script type="application/json" id="report-data">${inlineJson(payload)}</script>
<script>${CLIENT}</script>
`,
  );
}

/** A run without a PCA (fewer than 2 images processed): the summary and the failed images, no charts. */
function renderWithoutPca(content: ReportContent): string {
  return page(
    content,
    `${summarySection(content)}
<section id="no-pca">
  <h2>No PCA</h2>
  <p class="note">Fewer than 2 images could be processed, so there are no components to show. The failed images below say why.</p>
</section>
${errorsSection(content.errors)}`,
  );
}

/** The page around a report's sections: head, title, the run's status, footer and scripts. */
function page(content: ReportContent, main: string, footerNote = '', scripts = ''): string {
  const { manifest } = content;
  const title = `orchard run ${manifest.runId ?? ''}`.trim();
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} — report</title>
<style>${CSS}</style>
</head>
<body>
<header>
  <h1>${escapeHtml(title)}</h1>
  <p class="status ${manifest.status === 'succeeded' ? 'ok' : 'bad'}">${escapeHtml(statusText(manifest))}</p>
</header>
<main>
${main}
</main>
<footer>Generated by orchard ${escapeHtml(String(manifest.orchard ?? ''))} on ${escapeHtml(content.generatedAt.toISOString())}.${footerNote}</footer>
${scripts}</body>
</html>
`;
}

function chartBox(id: string, label: string, height: number): string {
  return `<figure class="chart"><figcaption>${escapeHtml(label)}</figcaption><div class="canvas-box" style="height:${height}px"><canvas id="${id}" role="img" aria-label="${escapeHtml(label)}"></canvas></div></figure>`;
}

function statusText(manifest: Manifest): string {
  if (manifest.status === 'succeeded') return 'succeeded';
  if (manifest.status === 'too_many_errors') return 'finished with too many errors (no _SUCCESS)';
  if (manifest.status === 'too_few_images') return 'finished with too few images for a PCA (no _SUCCESS)';
  return String(manifest.status ?? 'unknown');
}

function samplingNote({ classes, sampling }: ReportContent): string {
  const plotted = classes.reduce((sum, c) => sum + c.points.length, 0);
  const total = classes.reduce((sum, c) => sum + c.count, 0);
  if (plotted === total) return `All ${integer(total)} images are plotted.`;
  return (
    `${integer(plotted)} of ${integer(total)} images are plotted: a uniform random sample of at most ` +
    `${integer(sampling.perClass)} per class (and ${integer(sampling.total)} in all), so the page stays light.`
  );
}

function summarySection({ manifest, classes, variance }: ReportContent): string {
  const counts = manifest.counts;
  const timings = manifest.timings ?? {};
  const model = manifest.model;
  const spec = manifest.pca?.spec;
  const choice =
    spec?.kind === 'variance'
      ? `fewest components above ${percent(spec.fraction, 0)} of the variance`
      : spec?.kind === 'components'
        ? `fixed: -k ${spec.count}`
        : '';
  const rows: [string, string][] = [
    ['Images', counts ? `${integer(counts.processed)} processed, ${integer(counts.failed)} failed of ${integer(counts.listed)} listed (${percent(counts.errorRate)} errors)` : '–'],
    ['Classes', integer(classes.length)],
    [
      'PCA',
      variance
        ? `k = ${variance.k} component${variance.k === 1 ? ' explains' : 's explain'} ${percent(manifest.pca?.explainedVariance ?? variance.explained)} of the variance${choice ? ` (${choice})` : ''}`
        : 'none: fewer than 2 images could be processed',
    ],
    ['Model', model ? `${model.name} (${model.featureDim} features${model.featureLayer ? `, layer ${model.featureLayer}` : ''})` : '–'],
    ['Engine', manifest.engine ? describeEngine(manifest.engine) : '–'],
    ['Throughput', `${manifest.imagesPerSecond?.toFixed(1) ?? '–'} images/s, ${seconds(timings.total)} in all`],
    ['Run id', String(manifest.runId ?? '–')],
    ['Input', String(manifest.input ?? '–')],
    ['Output', String(manifest.output ?? '–')],
    ['Started', `${manifest.startedAt ?? '–'}, finished ${manifest.finishedAt ?? '–'}`],
  ];
  const stages = Object.entries(timings).filter(([stage]) => stage !== 'total');
  return `<section id="summary">
  <h2>Run summary</h2>
  <div class="summary">
  <dl>${rows.map(([term, value]) => `<dt>${escapeHtml(term)}</dt><dd>${escapeHtml(value)}</dd>`).join('')}</dl>
  <table class="timings"><caption>Time per stage</caption><thead><tr><th>stage</th><th class="num">time</th></tr></thead><tbody>
  ${stages.map(([stage, value]) => `<tr><td>${escapeHtml(stage.replace(/_/g, ' '))}${stage === 'predict' ? ' <span class="muted">(within extract)</span>' : ''}</td><td class="num">${seconds(value)}</td></tr>`).join('')}
  <tr class="total"><td>total</td><td class="num">${seconds(timings.total)}</td></tr>
  </tbody></table>
  </div>
</section>`;
}

function classesSection({ classes, thumbnails }: ReportContent, styles: readonly ClassStyle[]): string {
  const total = classes.reduce((sum, c) => sum + c.count, 0);
  const max = classes.reduce((m, c) => Math.max(m, c.count), 0);
  const rows = classes.map((c, i) => {
    const images = thumbnails.get(c.label) ?? [];
    const thumbs = images.map((t) => `<img src="${t.src}" alt="${escapeHtml(t.key)}" title="${escapeHtml(t.key)}" width="64" height="64">`).join('');
    return `<tr><td>${swatchSvg(styles[i]!)}${escapeHtml(displayLabel(c.label))}</td>
<td class="num">${integer(c.count)}</td><td class="num">${percent(total ? c.count / total : 0, 1)}</td>
<td class="bar"><span style="width:${max ? ((100 * c.count) / max).toFixed(1) : 0}%"></span></td>
<td class="thumbs">${thumbs}</td></tr>`;
  });
  return `<section id="classes">
  <h2>Classes</h2>
  <table class="classes"><thead><tr><th>class</th><th class="num">images</th><th class="num">share</th><th></th><th>first images</th></tr></thead>
  <tbody>${rows.join('\n')}</tbody></table>
</section>`;
}

function errorsSection(errors: ErrorList): string {
  if (errors.total === 0) return `<section id="errors"><h2>Errors</h2><p>No image failed.</p></section>`;
  const more = errors.total - errors.listed.length;
  return `<section id="errors">
  <h2>Errors <span class="count">${integer(errors.total)}</span></h2>
  <div class="scroll"><table class="errors"><thead><tr><th>key</th><th>reason</th></tr></thead><tbody>
  ${errors.listed.map((e) => `<tr><td class="key">${escapeHtml(e.key)}</td><td>${escapeHtml(e.reason)}</td></tr>`).join('\n')}
  </tbody></table></div>
  ${more > 0 ? `<p class="note">… and ${integer(more)} more: errors.csv lists them all.</p>` : ''}
</section>`;
}

const CSS = `
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; color: var(--ink); background: #fff; }
header, main, footer { max-width: 1280px; margin: 0 auto; padding: 0 24px; }
header { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap; border-bottom: 1px solid var(--line); }
h1 { font-size: 24px; margin: 20px 0 12px; }
h2 { font-size: 19px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.status { padding: 2px 10px; border-radius: 12px; font-weight: 600; }
.status.ok { background: #dafbe1; color: #1a7f37; }
.status.bad { background: #ffebe9; color: #cf222e; }
.summary { display: flex; gap: 32px; flex-wrap: wrap; align-items: flex-start; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; flex: 1 1 560px; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { background: var(--bg); font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); padding-bottom: 4px; }
.timings tr.total td { font-weight: 600; }
.muted, .note { color: var(--muted); }
.note { margin: 4px 0 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 24px; }
figure.chart { margin: 0 0 12px; }
figcaption { font-weight: 600; margin-bottom: 6px; }
.canvas-box { position: relative; width: 100%; }
table.classes { width: 100%; }
.swatch { display: inline-block; margin-right: 6px; vertical-align: -1px; flex: none; }
td.bar { width: 22%; }
td.bar span { display: block; height: 10px; background: #9fb3c8; border-radius: 2px; }
td.thumbs img { margin-right: 4px; border: 1px solid var(--line); border-radius: 3px; vertical-align: middle; }
.count { font-size: 14px; color: #cf222e; background: #ffebe9; padding: 1px 8px; border-radius: 10px; vertical-align: 2px; }
table.errors { width: 100%; }
/* A long error list scrolls in its own box instead of stretching the page. */
.scroll { max-height: 440px; overflow: auto; border-bottom: 1px solid var(--line); }
.scroll thead th { position: sticky; top: 0; }
td.key { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; overflow-wrap: anywhere; }
.headline { font-size: 16px; margin: 8px 0 4px; }
h3 { font-size: 16px; margin: 20px 0 6px; }
.labels-grid { display: flex; gap: 32px; flex-wrap: wrap; align-items: flex-start; }
.scroll.tall { max-height: 560px; flex: 0 1 460px; }
table.recall td.bar { width: 120px; }
table.recall td.bar span { background: #7f9cbf; }
td.low { color: #cf222e; font-weight: 600; }
figure.confusion { margin: 0; flex: 1 1 420px; overflow-x: auto; }
svg.heatmap { font-size: 11px; fill: #1f2328; }
svg.heatmap text.cell { font-size: 10px; fill: #fff; font-weight: 600; }
.suspicious { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px; font-size: 13px; }
.card .pair { display: flex; align-items: center; gap: 6px; margin-bottom: 4px; }
.card img, .nothumb { border: 1px solid var(--line); border-radius: 3px; width: 64px; height: 64px; display: inline-block; background: var(--bg); }
.card .arrow { color: var(--muted); font-size: 18px; }
.card .key { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; overflow-wrap: anywhere; }
footer { color: var(--muted); font-size: 13px; margin-top: 32px; padding-top: 12px; padding-bottom: 24px; border-top: 1px solid var(--line); }
`;

/**
 * The page's own script: reads the inline JSON and draws the charts with Chart.js. Plain ES5-style JavaScript
 * in a string (no template literals, no build step), so what is written here is exactly what the browser runs.
 */
const CLIENT = String.raw`
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('report-data').textContent);
  Chart.defaults.animation = false;
  Chart.defaults.color = '#1f2328';
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 13;
  var pct = function (value, digits) { return (value * 100).toFixed(digits === undefined ? 0 : digits) + '%'; };
  var axisTitle = function (text, color) { return { display: true, text: text, color: color, font: { weight: 'bold' } }; };
  var BAR = '#4e79a7', LINE = '#d62f3f';
  var charts = {};

  // Variance per component: bars for the first components only (past SCREE_BARS they would be slivers), kept
  // ones in blue.
  var v = data.variance;
  var bars = v.ratio.slice(0, data.bars);
  charts.scree = new Chart(document.getElementById('scree'), {
    type: 'bar',
    data: {
      labels: bars.map(function (_, i) { return String(i + 1); }),
      datasets: [{ label: 'explained variance per component', data: bars,
        backgroundColor: bars.map(function (_, i) { return i < v.k ? BAR : '#bcc8d6'; }) }]
    },
    options: {
      responsive: true, maintainAspectRatio: false,
      scales: {
        x: { title: axisTitle('principal component'), ticks: { autoSkip: true, maxRotation: 0 } },
        y: { beginAtZero: true, title: axisTitle('share of the variance'), ticks: { callback: function (value) { return pct(value, 0); } } }
      },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: {
          title: function (items) { return items.length ? 'PC' + items[0].label + (Number(items[0].label) <= v.k ? ' (kept)' : '') : ''; },
          label: function (item) { return pct(item.parsed.y, 2) + ' of the variance'; }
        } }
      }
    }
  });

  // Cumulative curve on its own chart and axis, zoomed to where it runs, so the target line cannot hide it: the
  // curve is drawn on top, the target thin and dashed, the chosen k a dashed vertical with a dot on the curve.
  var curve = v.cumulative.map(function (y, i) { return { x: i + 1, y: y }; });
  var low = Math.floor(Math.min(v.cumulative[0], v.target === null ? 1 : v.target) * 10) / 10;
  var lastX = curve.length;
  var lines = [
    { label: 'cumulative explained variance', data: curve, borderColor: LINE, backgroundColor: LINE, borderWidth: 2.5,
      pointRadius: curve.length > 60 ? 0 : 2.5, order: 0 },
    { label: 'chosen k = ' + v.k + ' (' + pct(v.explained, 2) + ')', marker: true,
      data: [{ x: v.k, y: low }, { x: v.k, y: v.explained }], borderColor: '#1f2328', backgroundColor: '#1f2328',
      borderWidth: 1.5, borderDash: [6, 4], pointRadius: [0, 5], clip: false, order: 1 }
  ];
  if (v.target !== null) {
    lines.push({ label: 'variance target ' + pct(v.target, v.target * 100 % 1 === 0 ? 0 : 1), marker: true,
      data: [{ x: 1, y: v.target }, { x: lastX, y: v.target }], borderColor: 'rgba(46, 125, 50, 0.8)',
      backgroundColor: 'rgba(46, 125, 50, 0.8)', borderWidth: 1, borderDash: [2, 3], pointRadius: 0, order: 2 });
  }
  charts.cumulative = new Chart(document.getElementById('cumulative'), {
    type: 'line',
    data: { datasets: lines },
    options: {
      responsive: true, maintainAspectRatio: false,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      scales: {
        x: { type: 'linear', min: 1, max: lastX, title: axisTitle('number of components'), ticks: { precision: 0 } },
        y: { min: low, max: 1, title: axisTitle('cumulative share', LINE), ticks: { color: LINE, callback: function (value) { return pct(value, 0); } } }
      },
      plugins: {
        legend: {
          position: 'bottom',
          labels: {
            usePointStyle: true, pointStyleWidth: 28,
            generateLabels: function (chart) {
              return Chart.defaults.plugins.legend.labels.generateLabels(chart).map(function (item) { item.pointStyle = 'line'; return item; });
            }
          }
        },
        tooltip: {
          filter: function (item) { return !item.dataset.marker; },
          callbacks: {
            title: function (items) { return items.length ? items[0].parsed.x + ' components' : ''; },
            label: function (item) { return pct(item.parsed.y, 2) + ' of the variance'; }
          }
        }
      }
    }
  });

  // Scatter plots: one dataset per class; each dataset carries its image keys for the tooltip.
  var ratioText = function (d) { return 'PC' + (d + 1) + (d < v.ratio.length ? ' (' + pct(v.ratio[d], 1) + ' of variance)' : ''); };
  var plotted = data.classes.reduce(function (sum, c) { return sum + c.keys.length; }, 0);
  var radius = plotted > 5000 ? 1.5 : plotted > 1500 ? 2.2 : 3; // dense clouds stay readable
  // Each class's own marker shape in the legend too (colour and shape tell 120 classes apart).
  var legend = { position: 'bottom', maxHeight: data.legendHeight, labels: { usePointStyle: true, boxWidth: 8, boxHeight: 8, padding: 14 } };
  // Line-only shapes (crosses, stars) need a thicker stroke and a little more size to show their colour.
  var stroke = function (c) { return c.shape === 'crossRot' || c.shape === 'star' ? 1.6 : 0.5; };
  var grow = function (c, r) { return c.shape === 'crossRot' || c.shape === 'star' ? r + 1.5 : r; };
  function scatter(id, xd, yd) {
    charts[id] = new Chart(document.getElementById(id), {
      type: 'scatter',
      data: {
        datasets: data.classes.map(function (c) {
          return {
            label: c.label, keys: c.keys, backgroundColor: c.fill, borderColor: c.colour, borderWidth: stroke(c),
            pointStyle: c.shape, pointRadius: grow(c, radius), pointHoverRadius: 6,
            data: c.keys.map(function (_, i) { return { x: c.pcs[xd][i], y: c.pcs[yd][i] }; })
          };
        })
      },
      options: {
        responsive: true, maintainAspectRatio: false,
        scales: { x: { title: axisTitle(ratioText(xd)) }, y: { title: axisTitle(ratioText(yd)) } },
        plugins: {
          legend: legend,
          tooltip: {
            callbacks: {
              label: function (item) { return item.dataset.label + ': ' + item.dataset.keys[item.dataIndex]; },
              afterLabel: function (item) { return 'PC' + (xd + 1) + ' = ' + item.parsed.x + ', PC' + (yd + 1) + ' = ' + item.parsed.y; }
            }
          }
        }
      }
    });
  }
  // With k = 1 there is no second component: PC1 along x, one row per class (with a little vertical jitter).
  function strip(id) {
    var names = data.classes.map(function (c) { return c.label; });
    charts[id] = new Chart(document.getElementById(id), {
      type: 'scatter',
      data: {
        datasets: data.classes.map(function (c, row) {
          return {
            label: c.label, keys: c.keys, backgroundColor: c.fill, borderColor: c.colour, borderWidth: stroke(c),
            pointStyle: c.shape, pointRadius: grow(c, radius),
            data: c.keys.map(function (_, i) { return { x: c.pcs[0][i], y: row + ((i * 0.6180339887) % 1 - 0.5) * 0.5 }; })
          };
        })
      },
      options: {
        responsive: true, maintainAspectRatio: false,
        scales: {
          x: { title: axisTitle(ratioText(0)) },
          y: {
            min: -0.5, max: names.length - 0.5, reverse: true,
            // One tick per class row, labelled with the class.
            afterBuildTicks: function (scale) { scale.ticks = names.map(function (_, i) { return { value: i }; }); },
            ticks: { autoSkip: false, callback: function (value) { return names[value]; } }
          }
        },
        plugins: {
          legend: legend,
          tooltip: { callbacks: {
            label: function (item) { return item.dataset.label + ': ' + item.dataset.keys[item.dataIndex]; },
            afterLabel: function (item) { return 'PC1 = ' + item.parsed.x; }
          } }
        }
      }
    });
  }
  if (data.dims >= 2) scatter('scatter-pc1-pc2', 0, 1);
  if (data.dims >= 3) scatter('scatter-pc1-pc3', 0, 2);
  if (data.dims === 1) strip('scatter-pc1');
  window.orchardCharts = charts;
})();
`;
