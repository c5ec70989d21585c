import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { invalidParameter } from '../errors';
import { hash32, mulberry32 } from '../random';

/**
 * Sample images in the Fruits-360 look (a 100x100 JPEG, one fruit on white) for the demo and the tests, so that
 * neither needs the real dataset. Each class has its own shape, colour and texture, so that CNN features + PCA
 * separate them; jitter in position, size, rotation, colour and lighting keeps images of a class from being
 * copies of each other. Everything derives from a seed: the same seed gives byte-identical files.
 */

/** Named like Fruits-360 folders, spaces and a non-ASCII name included on purpose (keys must survive them). */
export const SAMPLE_CLASSES: readonly string[] = Object.freeze([
  'Apple Braeburn',
  'Banana',
  'Lemon',
  'Orange',
  'Strawberry',
  'Grape Blue',
  'Kiwi',
  'Pêche de vigne',
]);

const IMAGE_SIZE = 100;
/** Enough to keep libvips' threads busy without queueing hundreds of renders at once. */
const WRITE_CONCURRENCY = 8;

interface Random {
  /** Uniform in [min, max). */
  range(min: number, max: number): number;
  int(min: number, maxInclusive: number): number;
}

function random(seed: number): Random {
  const next = mulberry32(seed);
  return {
    range: (min, max) => min + (max - min) * next(),
    int: (min, maxInclusive) => min + Math.floor((maxInclusive - min + 1) * next()),
  };
}

/** Fixed decimals keep the SVG text (hence the rendered bytes) identical across platforms and Node versions. */
const n = (value: number) => value.toFixed(2);

function hsl(hue: number, saturation: number, lightness: number): string {
  const s = Math.min(1, Math.max(0, saturation / 100));
  const l = Math.min(1, Math.max(0, lightness / 100));
  const h = ((hue % 360) + 360) % 360;
  const k = (i: number) => (i + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (i: number) => l - a * Math.max(-1, Math.min(k(i) - 3, 9 - k(i), 1));
  const hex = (v: number) => Math.round(v * 255).toString(16).padStart(2, '0');
  return `#${hex(f(0))}${hex(f(8))}${hex(f(4))}`;
}

/** A class's skin colour, jittered, plus the highlight and shadow of its lighting gradient. */
interface Palette {
  readonly base: string;
  readonly light: string;
  readonly dark: string;
}

function palette(rng: Random, hue: number, saturation: number, lightness: number): Palette {
  const h = hue + rng.range(-6, 6);
  const s = saturation + rng.range(-8, 8);
  const l = lightness + rng.range(-5, 5);
  return { base: hsl(h, s, l), light: hsl(h + 4, s - 10, Math.min(92, l + 25)), dark: hsl(h - 4, s, l - 18) };
}

/** Draws one fruit centred on the origin, about 80 units across, filled with `url(#skin)` where it is lit. */
type Drawer = (rng: Random) => { palette: Palette; body: string };

const DRAWERS: Record<string, Drawer> = {
  'Apple Braeburn': (rng) => {
    const p = palette(rng, 6, 78, 42);
    const streaks = Array.from({ length: 6 }, () => {
      const x = rng.range(-26, 26);
      return `<path d="M${n(x)},-22 Q${n(x + rng.range(-6, 6))},4 ${n(x * 0.7)},28" stroke="${hsl(45, 80, 55)}" stroke-width="${n(rng.range(2, 4))}" stroke-opacity="0.35" fill="none"/>`;
    }).join('');
    return {
      palette: p,
      body:
        '<path d="M0,-26 C12,-40 40,-34 38,-6 C36,20 20,38 0,34 C-20,38 -36,20 -38,-6 C-40,-34 -12,-40 0,-26 Z" fill="url(#skin)"/>' +
        streaks +
        '<path d="M0,-26 Q1,-36 5,-42" stroke="#5a3a1a" stroke-width="3" fill="none" stroke-linecap="round"/>' +
        `<path d="M4,-36 Q16,-46 24,-38 Q14,-32 4,-36 Z" fill="${hsl(105, 55, 35)}"/>`,
    };
  },
  Banana: (rng) => {
    const p = palette(rng, 50, 92, 55);
    return {
      palette: p,
      body:
        '<path d="M-42,-12 Q-4,46 42,-18 L38,-24 Q-2,22 -36,-20 Z" fill="url(#skin)"/>' +
        `<path d="M-34,-8 Q-2,30 36,-14" stroke="${hsl(45, 70, 40)}" stroke-width="1.5" stroke-opacity="0.5" fill="none"/>` +
        '<circle cx="-40" cy="-16" r="3.5" fill="#4a3418"/><circle cx="40" cy="-21" r="3" fill="#4a3418"/>',
    };
  },
  Lemon: (rng) => {
    const p = palette(rng, 56, 95, 60);
    const pores = Array.from({ length: 30 }, () => {
      return `<circle cx="${n(rng.range(-26, 26))}" cy="${n(rng.range(-18, 18))}" r="0.9" fill="${hsl(50, 80, 45)}" fill-opacity="0.35"/>`;
    }).join('');
    return {
      palette: p,
      body:
        '<path d="M-42,0 Q-38,-6 -31,-10 C-20,-31 20,-31 31,-10 Q38,-6 42,0 Q38,6 31,10 C20,31 -20,31 -31,10 Q-38,6 -42,0 Z" fill="url(#skin)"/>' +
        pores,
    };
  },
  Orange: (rng) => {
    const p = palette(rng, 28, 95, 50);
    const dimples = Array.from({ length: 45 }, () => {
      const angle = rng.range(0, 2 * Math.PI);
      const radius = 34 * Math.sqrt(rng.range(0, 1));
      return `<circle cx="${n(radius * Math.cos(angle))}" cy="${n(radius * Math.sin(angle))}" r="1.1" fill="${hsl(22, 90, 38)}" fill-opacity="0.4"/>`;
    }).join('');
    return {
      palette: p,
      body: '<circle r="37" fill="url(#skin)"/>' + dimples + `<circle cx="2" cy="-2" r="2.5" fill="${hsl(60, 40, 35)}"/>`,
    };
  },
  Strawberry: (rng) => {
    const p = palette(rng, 354, 82, 45);
    const seeds: string[] = [];
    for (let row = 0; row < 6; row++) {
      const y = -18 + row * 9;
      const half = 28 - row * 4.5;
      for (let x = -half; x <= half; x += 8) {
        seeds.push(
          `<ellipse cx="${n(x + rng.range(-1.5, 1.5))}" cy="${n(y + rng.range(-1.5, 1.5))}" rx="1.2" ry="2" fill="${hsl(52, 90, 70)}"/>`,
        );
      }
    }
    const leaves = Array.from({ length: 6 }, (_, i) => {
      const angle = -180 + (i * 180) / 5 + rng.range(-8, 8);
      return `<path d="M0,0 Q6,-3 16,0 Q6,3 0,0 Z" transform="translate(0,-26) rotate(${n(angle)})" fill="${hsl(110, 60, 32)}"/>`;
    }).join('');
    return {
      palette: p,
      body:
        '<path d="M0,40 C-22,30 -38,0 -34,-18 C-30,-32 30,-32 34,-18 C38,0 22,30 0,40 Z" fill="url(#skin)"/>' +
        seeds.join('') +
        leaves,
    };
  },
  'Grape Blue': (rng) => {
    const p = palette(rng, 262, 45, 30);
    const berries: string[] = [];
    const rows = [4, 4, 3, 3, 2, 1];
    rows.forEach((count, row) => {
      for (let i = 0; i < count; i++) {
        const x = (i - (count - 1) / 2) * 17 + rng.range(-2, 2);
        const y = -28 + row * 13 + rng.range(-2, 2);
        berries.push(`<circle cx="${n(x)}" cy="${n(y)}" r="${n(rng.range(8, 10))}" fill="url(#skin)" stroke="${p.dark}" stroke-width="0.8"/>`);
      }
    });
    return {
      palette: p,
      body: '<path d="M0,-36 Q2,-42 6,-46" stroke="#5f5a2a" stroke-width="2.5" fill="none"/>' + berries.join(''),
    };
  },
  Kiwi: (rng) => {
    // A halved kiwi: brown rim, green flesh, a ring of black seeds around a pale core.
    const p = palette(rng, 82, 70, 42);
    const seeds = Array.from({ length: 28 }, (_, i) => {
      const angle = (i * 360) / 28 + rng.range(-5, 5);
      const radius = rng.range(13, 18);
      return `<ellipse cx="${n(radius)}" cy="0" rx="2.6" ry="1.1" transform="rotate(${n(angle)})" fill="#1a1410"/>`;
    }).join('');
    return {
      palette: p,
      body:
        `<ellipse rx="39" ry="35" fill="${hsl(30, 45, 28)}"/>` +
        '<ellipse rx="35" ry="31" fill="url(#skin)"/>' +
        `<ellipse rx="${n(rng.range(7, 9))}" ry="6" fill="${hsl(60, 55, 85)}"/>` +
        seeds,
    };
  },
  'Pêche de vigne': (rng) => {
    // Vine peach: dark purple-red, velvety, with its crease and a paler blush on one side.
    const p = palette(rng, 338, 48, 32);
    return {
      palette: p,
      body:
        '<path d="M0,-34 C22,-38 40,-18 37,4 C34,26 18,38 0,36 C-18,38 -34,26 -37,4 C-40,-18 -22,-38 0,-34 Z" fill="url(#skin)"/>' +
        `<ellipse cx="${n(rng.range(-20, -12))}" cy="${n(rng.range(4, 14))}" rx="12" ry="15" fill="${hsl(20, 60, 60)}" fill-opacity="0.35"/>` +
        `<path d="M0,-34 Q${n(rng.range(-9, -4))},0 0,35" stroke="${p.dark}" stroke-width="2.5" fill="none" stroke-opacity="0.8"/>`,
    };
  },
};

/** Renders one 100x100 JPEG of `className`; the same (className, seed) always gives the same bytes. */
export async function renderFruit(className: string, seed: number): Promise<Buffer> {
  const draw = DRAWERS[className];
  if (!draw) throw invalidParameter('className', `one of ${SAMPLE_CLASSES.join(', ')}`, className);
  if (!Number.isInteger(seed)) throw invalidParameter('seed', 'an integer', seed);
  const rng = random(seed);
  const { palette: p, body } = draw(rng);
  const cx = 50 + rng.range(-6, 6);
  const cy = 50 + rng.range(-6, 6);
  const scale = rng.range(0.88, 1.08);
  const angle = rng.range(-25, 25);
  // The highlight's focal point wanders to imitate light coming from different directions.
  const fx = rng.range(0.25, 0.5);
  const fy = rng.range(0.2, 0.45);
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${IMAGE_SIZE}" height="${IMAGE_SIZE}" viewBox="0 0 ${IMAGE_SIZE} ${IMAGE_SIZE}">` +
    `<defs><radialGradient id="skin" cx="0.5" cy="0.5" r="0.65" fx="${n(fx)}" fy="${n(fy)}">` +
    `<stop offset="0" stop-color="${p.light}"/><stop offset="0.5" stop-color="${p.base}"/><stop offset="1" stop-color="${p.dark}"/>` +
    `</radialGradient></defs>` +
    `<rect width="${IMAGE_SIZE}" height="${IMAGE_SIZE}" fill="#ffffff"/>` +
    `<g transform="translate(${n(cx)} ${n(cy)}) rotate(${n(angle)}) scale(${n(scale)})">${body}</g>` +
    `</svg>`;
  return sharp(Buffer.from(svg)).flatten({ background: '#ffffff' }).jpeg({ quality: 90 }).toBuffer();
}

export interface GenerateOptions {
  /** Images per class, written as 0_100.jpg .. (perClass-1)_100.jpg. */
  readonly perClass: number;
  /** Run seed; default 0. */
  readonly seed?: number;
  /** Classes to draw, a subset of SAMPLE_CLASSES; default all of them. */
  readonly classes?: readonly string[];
}

/**
 * Writes `<dir>/<Class>/<n>_100.jpg` for n = 0..perClass-1 for each class (the Fruits-360 layout) and returns
 * the keys written, relative to `dir` with `/` separators, class by class in order.
 */
export async function generateSampleImages(dir: string, options: GenerateOptions): Promise<string[]> {
  const { perClass, seed = 0, classes = SAMPLE_CLASSES } = options;
  if (!Number.isInteger(perClass) || perClass < 1) throw invalidParameter('perClass', 'a positive integer', perClass);
  if (!Number.isInteger(seed)) throw invalidParameter('seed', 'an integer', seed);
  for (const className of classes) {
    if (!DRAWERS[className]) throw invalidParameter('classes', `names from ${SAMPLE_CLASSES.join(', ')}`, className);
  }

  const jobs = classes.flatMap((className) =>
    Array.from({ length: perClass }, (_, index) => ({ className, index, key: `${className}/${index}_100.jpg` })),
  );
  for (const className of new Set(classes)) await fs.promises.mkdir(path.join(dir, className), { recursive: true });

  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      const image = await renderFruit(job.className, hash32(`${seed}/${job.className}/${job.index}`));
      await fs.promises.writeFile(path.join(dir, job.key), image);
    }
  };
  await Promise.all(Array.from({ length: Math.min(WRITE_CONCURRENCY, jobs.length) }, worker));
  return jobs.map((job) => job.key);
}
