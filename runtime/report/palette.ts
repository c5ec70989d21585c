/**
 * One look per class, the same in every chart and table of the report: a colour from a categorical palette of
 * PALETTE.length colours chosen to stay apart on white (after Sasha Trubetskoy's "20 distinct colours", with
 * the palest ones darkened so that small markers still show), and past that a marker shape as a second
 * channel: class i gets colour i mod 20 and shape ⌊i / 20⌋, so 120 classes never share both.
 */

/** Categorical colours, most distinct first (neighbouring classes, e.g. "Apple 10" and "Apple 11", differ most). */
export const PALETTE = [
  '#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#9a6324', '#808000', '#000075',
  '#469990', '#800000', '#a6d400', '#e6c300', '#ff8fb1', '#8c8c8c', '#b28dff', '#1f1f1f', '#f7a35c', '#2bd18c',
] as const;

/** Marker shapes (Chart.js point styles), in the order they are used; each has an SVG twin for the tables. */
export const SHAPES = ['circle', 'triangle', 'rect', 'rectRot', 'crossRot', 'star'] as const;
export type Shape = (typeof SHAPES)[number];

export interface ClassStyle {
  readonly colour: string;
  /** The colour at 70 % opacity, for filled markers that overlap. */
  readonly fill: string;
  readonly shape: Shape;
}

/** The style of each of `count` classes (in the report's class order). */
export function classStyles(count: number): ClassStyle[] {
  return Array.from({ length: count }, (_, i) => {
    const colour = PALETTE[i % PALETTE.length]!;
    return { colour, fill: `${colour}b3`, shape: SHAPES[Math.floor(i / PALETTE.length) % SHAPES.length]! };
  });
}

/** The class's marker as a small inline SVG, for legends and tables outside the charts. */
export function swatchSvg(style: ClassStyle, size = 12): string {
  const c = style.colour;
  const shapes: Record<Shape, string> = {
    circle: `<circle cx="6" cy="6" r="5" fill="${c}"/>`,
    triangle: `<path d="M6 1 11 11H1Z" fill="${c}"/>`,
    rect: `<rect x="1.5" y="1.5" width="9" height="9" fill="${c}"/>`,
    rectRot: `<path d="M6 0.5 11.5 6 6 11.5 0.5 6Z" fill="${c}"/>`,
    crossRot: `<path d="M2 2 10 10M10 2 2 10" stroke="${c}" stroke-width="2.2"/>`,
    star: `<path d="M6 0.8v10.4M1.5 3.4l9 5.2M10.5 3.4l-9 5.2" stroke="${c}" stroke-width="1.8"/>`,
  };
  return `<svg class="swatch" width="${size}" height="${size}" viewBox="0 0 12 12" aria-hidden="true">${shapes[style.shape]}</svg>`;
}
