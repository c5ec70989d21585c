import * as fs from 'node:fs';
import * as path from 'node:path';

/** Where a pipeline run's CPU goes, besides the model. */
export const PARTS = ['decode', 'resize', 'storage', 'statistics', 'writing', 'other'] as const;
export type Part = (typeof PARTS)[number];

/**
 * Which part a stack frame's code belongs to; the first frame from the leaf up that matches decides, so that
 * sharp called from the enlargement's caller still counts as decoding and the SDK's XML parser as storage.
 */
const RULES: readonly { readonly part: Exclude<Part, 'other'>; readonly test: RegExp }[] = [
  { part: 'resize', test: /runtime\/images\/upscale\.ts/ },
  { part: 'decode', test: /runtime\/images\/(preprocess|fast-jpeg)\.ts|@jsquash|mozjpeg_dec|\/sharp\/|^wasm:/ },
  { part: 'storage', test: /runtime\/storage\/|@aws-sdk|@smithy|@aws-crypto|fast-xml-parser|node:(_http|http|https|net|tls|dns|fs|internal\/fs|internal\/streams|stream)/ },
  { part: 'statistics', test: /runtime\/(stats|pca)\// },
  { part: 'writing', test: /runtime\/output\/|runtime\/pipeline\/(publish|project)\.ts|hyparquet|csv-stringify|compress/ },
];

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Milliseconds of the main thread's samples per part (idle excluded), from one V8 .cpuprofile. */
export function attribute(profile: CpuProfile): Record<Part, number> {
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const partOf = new Map<number, Part | 'idle'>();
  const classify = (id: number): Part | 'idle' => {
    const known = partOf.get(id);
    if (known) return known;
    const { functionName, url } = byId.get(id)!.callFrame;
    let part: Part | 'idle' | undefined;
    if (functionName === '(idle)') part = 'idle';
    else part = RULES.find((rule) => rule.test.test(url))?.part;
    if (!part) {
      const up = parent.get(id);
      part = up === undefined ? 'other' : classify(up);
    }
    partOf.set(id, part);
    return part;
  };
  const ms = Object.fromEntries(PARTS.map((part) => [part, 0])) as Record<Part, number>;
  profile.samples.forEach((id, i) => {
    const part = classify(id);
    if (part !== 'idle') ms[part] += (profile.timeDeltas[i] ?? 0) / 1000;
  });
  return ms;
}

/** The main thread's profile among those `node --cpu-prof` wrote to dir (thread 0 of the process). */
export function mainThreadProfile(dir: string): CpuProfile {
  const files = fs.readdirSync(dir).filter((name) => name.endsWith('.cpuprofile'));
  const main = files.find((name) => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(name)) ?? files[0];
  if (!main) throw new Error(`no .cpuprofile in ${dir}`);
  return JSON.parse(fs.readFileSync(path.join(dir, main), 'utf8')) as CpuProfile;
}

export interface CpuBreakdown {
  /** The whole orchard process's CPU (user + system, every thread) per image, in ms. */
  readonly totalMs: number;
  /** The model's share: its CPU per image when it runs alone (threads / model images per second). */
  readonly modelMs: number;
  /** Per part, CPU-ms per image: the process's CPU beyond the model's, shared out by the profile's proportions. */
  readonly parts: Record<Part, number>;
}

/**
 * The process's CPU per image, split into the model (the bare-model measure's CPU per image) and the rest,
 * which is shared out among the parts in proportion to the main thread's profile samples. The enlargement the
 * onnx engine does in its worker (`enlargeCpuS`, the run's `timings.enlarge`: that thread's CPU around the
 * enlargement graph's runs) is preprocessing the main thread's profile cannot see: it goes to `resize` as measured,
 * and only the remainder is shared out. Samples measure
 * time on the thread, not CPU: on a loaded machine they include time the thread waited for a core, so only
 * their proportions are used. `other` is the samples no part claims (the garbage collector, the pipeline's own
 * code, the model's messaging) and, with them, the work of threads the profile does not see.
 */
export function cpuBreakdown(profile: CpuProfile, processCpuS: number, images: number, modelMsPerImage: number, enlargeCpuS = 0): CpuBreakdown {
  const ms = attribute(profile);
  const totalMs = (processCpuS * 1000) / images;
  const enlargeMs = (enlargeCpuS * 1000) / images;
  const overhead = Math.max(0, totalMs - modelMsPerImage - enlargeMs);
  const sampled = PARTS.reduce((sum, part) => sum + ms[part], 0);
  const parts = Object.fromEntries(PARTS.map((part) => [part, sampled > 0 ? (overhead * ms[part]) / sampled : 0])) as Record<Part, number>;
  parts.resize += enlargeMs;
  return { totalMs, modelMs: modelMsPerImage, parts };
}
