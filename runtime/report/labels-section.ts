/**
 * The report's "Labels" section, drawn from the manifest's labelQuality: how well the features separate the
 * labels (accuracy, per-class recall, a confusion picture, the most confused pairs) and the suspicious labels as
 * thumbnails next to the class they look like. Plain HTML and inline SVG: readable without JavaScript.
 */
import type { LabelQuality, SuspiciousLabel } from '../quality/labels';
import { displayLabel, escapeHtml, integer, percent } from './format';
import { swatchSvg, type ClassStyle } from './palette';

/** Suspicious images shown as thumbnails (the manifest lists up to MAX_SUSPICIOUS). */
export const SHOWN_SUSPICIOUS = 48;
/** Classes in the confusion picture: all of them up to this many, else the ones most confused. */
export const HEATMAP_MAX_CLASSES = 24;
const CELL = 22;

interface Thumb {
  readonly key: string;
  readonly src: string;
}

export interface LabelsSectionInput {
  readonly quality?: LabelQuality;
  /** The report's classes, in its order (the order of `styles`). */
  readonly labels: readonly string[];
  readonly styles: readonly ClassStyle[];
  /** A few thumbnails per class, by label. */
  readonly classThumbnails: ReadonlyMap<string, readonly Thumb[]>;
  /** Thumbnails of the suspicious images, by key. */
  readonly suspiciousThumbnails?: ReadonlyMap<string, string>;
}

export function labelsSection(input: LabelsSectionInput): string {
  const quality = input.quality;
  if (!quality) return '';
  if (quality.status === 'absent') {
    return `<section id="labels">
  <h2>Labels</h2>
  <p>Labels are absent: ${escapeHtml(quality.reason)}. There is nothing to check: with labels (<code>--label-from parent</code>, the default)
  this section shows how well the features separate them and which images look mislabelled.</p>
</section>`;
  }
  const styleOf = new Map(input.labels.map((label, i) => [label, input.styles[i]!]));
  const swatch = (label: string) => {
    const style = styleOf.get(label);
    return style ? swatchSvg(style) : '';
  };
  const name = (label: string) => `${swatch(label)}${escapeHtml(displayLabel(label))}`;
  const { sample } = quality;
  const sampled =
    sample.rows < sample.of
      ? `a stratified random sample of ${integer(sample.rows)} of the ${integer(sample.of)} images (every class keeps some; the sample is bounded so that this costs about a second at any size)`
      : `all ${integer(sample.rows)} images`;

  const recallRows = quality.classes.map(
    (c) => `<tr><td>${name(c.label)}</td><td class="num">${integer(c.rows)}</td><td class="num${c.recall < quality.accuracy - 0.1 ? ' low' : ''}">${percent(c.recall, 0)}</td>
<td class="bar"><span style="width:${(100 * c.recall).toFixed(1)}%"></span></td></tr>`,
  );
  const pairs = quality.confusedPairs.map(
    (p) => `<tr><td>${name(p.a)}</td><td>${name(p.b)}</td><td class="num">${p.aAsB}</td><td class="num">${p.bAsA}</td></tr>`,
  );

  return `<section id="labels">
  <h2>Labels</h2>
  <p class="headline">A nearest-neighbour classifier on the ${sample.components} components gets <strong>${percent(quality.accuracy, 1)}</strong> of the labels right
  (${quality.folds}-fold cross-validation; always answering the largest class would get ${percent(quality.majorityShare, 1)}).</p>
  <p class="note">On ${escapeHtml(sampled)}. Recall: the share of a class's images whose nearest neighbour (in the other folds) has the same label.
  A class far below the accuracy is one the features mix up with another; the picture shows with which.</p>
  <div class="labels-grid">
  <div class="scroll tall"><table class="recall"><thead><tr><th>class</th><th class="num">sampled</th><th class="num">recall</th><th></th></tr></thead>
  <tbody>${recallRows.join('\n')}</tbody></table></div>
  <figure class="confusion">${confusionPicture(quality, styleOf)}</figure>
  </div>
  <h3>Most confused pairs</h3>
  ${
    pairs.length
      ? `<table class="pairs"><thead><tr><th>class A</th><th>class B</th><th class="num">A taken for B</th><th class="num">B taken for A</th></tr></thead><tbody>${pairs.join('\n')}</tbody></table>`
      : '<p>None: every sampled image\'s nearest neighbour has its own label.</p>'
  }
  ${suspiciousPart(quality, input, name)}
</section>`;
}

/**
 * The confusion matrix as a heat map: rows the true class, columns the class of the nearest neighbour, each cell
 * the share of the row's images (the diagonal in grey, mistakes in red, the count written in). With many classes,
 * only the classes involved in the most confusions.
 */
function confusionPicture(quality: Extract<LabelQuality, { status: 'assessed' }>, styleOf: ReadonlyMap<string, ClassStyle>): string {
  let shown = quality.classes.map((c) => c.label);
  let caption = 'Confusion picture: row = label, column = the label of its nearest neighbour; red = mistakes (share of the row).';
  if (shown.length > HEATMAP_MAX_CLASSES) {
    const involved: string[] = [];
    for (const c of quality.confusions) {
      for (const label of [c.label, c.predicted]) if (!involved.includes(label) && involved.length < HEATMAP_MAX_CLASSES) involved.push(label);
      if (involved.length >= HEATMAP_MAX_CLASSES) break;
    }
    const order = new Map(shown.map((label, i) => [label, i]));
    shown = involved.sort((a, b) => order.get(a)! - order.get(b)!);
    caption = `Confusion picture of the ${shown.length} classes most often confused (of ${quality.classes.length}): row = label, column = the label of its nearest neighbour; red = mistakes.`;
  }
  if (shown.length === 0) return `<figcaption>No confusions: every sampled image's nearest neighbour has its own label.</figcaption>`;
  const index = new Map(shown.map((label, i) => [label, i]));
  const rows = new Map(quality.classes.map((c) => [c.label, c]));
  const cells = new Map<string, number>();
  for (const c of quality.confusions) if (index.has(c.label) && index.has(c.predicted)) cells.set(`${index.get(c.label)},${index.get(c.predicted)}`, c.count);
  const longest = Math.max(...shown.map((label) => label.length));
  const margin = Math.min(200, 16 + 6.6 * longest);
  const size = margin + CELL * shown.length;
  // The column labels lean right: room for the last ones past the grid.
  const width = size + margin / 2;
  const parts: string[] = [];
  shown.forEach((label, r) => {
    const row = rows.get(label)!;
    const y = margin + r * CELL;
    parts.push(`<text x="${margin - 6}" y="${y + CELL / 2 + 4}" text-anchor="end">${escapeHtml(shorten(displayLabel(label)))}</text>`);
    parts.push(`<text transform="translate(${margin + r * CELL + CELL / 2 + 4},${margin - 6}) rotate(-60)">${escapeHtml(shorten(displayLabel(label)))}</text>`);
    const style = styleOf.get(label);
    if (style) parts.push(`<rect x="${margin - 4}" y="${y + 2}" width="3" height="${CELL - 4}" fill="${style.colour}"/>`);
    shown.forEach((_, c) => {
      const x = margin + c * CELL;
      const count = r === c ? row.correct : (cells.get(`${r},${c}`) ?? 0);
      const share = row.rows ? count / row.rows : 0;
      const fill = r === c ? `rgba(89, 99, 110, ${(0.08 + 0.35 * share).toFixed(3)})` : count ? `rgba(207, 34, 46, ${(0.15 + 0.85 * Math.min(1, share * 3)).toFixed(3)})` : '#ffffff';
      parts.push(`<rect x="${x}" y="${y}" width="${CELL}" height="${CELL}" fill="${fill}" stroke="#e3e8ee"><title>${escapeHtml(`${displayLabel(label)} → ${displayLabel(shown[c]!)}: ${count} of ${row.rows}`)}</title></rect>`);
      if (count && r !== c) parts.push(`<text x="${x + CELL / 2}" y="${y + CELL / 2 + 4}" text-anchor="middle" class="cell">${count}</text>`);
    });
  });
  return `<svg class="heatmap" width="${width}" height="${size}" viewBox="0 0 ${width} ${size}" role="img" aria-label="confusion picture">${parts.join('')}</svg>
<figcaption class="note">${escapeHtml(caption)}</figcaption>`;
}

function shorten(label: string): string {
  return label.length > 28 ? `${label.slice(0, 27)}…` : label;
}

function suspiciousPart(
  quality: Extract<LabelQuality, { status: 'assessed' }>,
  input: LabelsSectionInput,
  name: (label: string) => string,
): string {
  const limits = `<p class="note">What this cannot see: a whole folder that is consistently wrong. Its images are each other's nearest neighbours,
  so from the features alone it looks like a class of its own (its recall stays high). Look at the class thumbnails below for that.
  The check only sees the sampled images${quality.sample.rows < quality.sample.of ? ` (${integer(quality.sample.rows)} of ${integer(quality.sample.of)})` : ''}.</p>`;
  if (quality.suspicious.length === 0) {
    return `<h3>Suspicious labels</h3><p>None: no image has most of its ${quality.neighbours} nearest neighbours in another class, and none lies unusually far from its own class.</p>${limits}`;
  }
  const shown = quality.suspicious.slice(0, SHOWN_SUSPICIOUS);
  const more = quality.suspiciousCount - shown.length;
  const cards = shown.map((s) => card(s, quality.neighbours, input, name));
  return `<h3>Suspicious labels <span class="count">${integer(quality.suspiciousCount)}</span></h3>
  <p class="note">Images most of whose ${quality.neighbours} nearest neighbours carry another label, then images unusually far from their own class
  (more than 4 robust standard deviations), each next to an image of the class it looks like. Check these before training; the manifest
  (<code>labelQuality.suspicious</code>) lists the keys with that class.${more > 0 ? ` ${integer(more)} more are not shown${quality.suspiciousCount > quality.suspicious.length ? `; the manifest lists the first ${integer(quality.suspicious.length)}` : ' here; the manifest lists them all'}.` : ''}</p>
  <div class="suspicious">${cards.join('\n')}</div>
  ${limits}`;
}

function card(s: SuspiciousLabel, neighbours: number, input: LabelsSectionInput, name: (label: string) => string): string {
  const own = input.suspiciousThumbnails?.get(s.key);
  const like = input.classThumbnails.get(s.looksLike)?.[0];
  const img = (src: string | undefined, alt: string) => (src ? `<img src="${src}" alt="${escapeHtml(alt)}" title="${escapeHtml(alt)}" width="64" height="64">` : '<span class="nothumb"></span>');
  const why = s.reason === 'neighbours' ? `${s.score} of ${neighbours} neighbours are ${escapeHtml(displayLabel(s.looksLike))}` : `far from its class (z = ${s.score.toFixed(1)}); nearest class ${escapeHtml(displayLabel(s.looksLike))}`;
  return `<div class="card"><div class="pair">${img(own, s.key)}<span class="arrow">→</span>${img(like?.src, like ? `${s.looksLike}: ${like.key}` : s.looksLike)}</div>
<div class="key">${escapeHtml(s.key)}</div><div>labelled ${name(s.label)}</div><div>looks like ${name(s.looksLike)}</div><div class="muted">${why}</div></div>`;
}
