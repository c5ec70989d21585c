import * as fs from 'node:fs';
import * as os from 'node:os';

/**
 * Which weight range an 8-bit graph may use on this CPU. ONNX Runtime's x86 integer kernels multiply uint8
 * activations by int8 weights; without VNNI they do it with AVX2's `vpmaddubsw`, whose int16 pair sums saturate
 * when two products of full-range weights add up past 32767. Weights kept to 7 bits ([-63, 63]) cannot
 * saturate. VNNI (AVX-512 VNNI, AVX-VNNI), AMX and arm64's dot-product instructions accumulate into int32 and
 * take the full 8 bits.
 */
export interface Int8Support {
  /** Bits of the weights of the full and 1×1 convolutions: 7 where an 8-bit product could saturate. */
  readonly weightBits: 7 | 8;
  /** The features that decided it (e.g. `avx512_vnni`, `asimddp`), or why none was found. */
  readonly reason: string;
}

/** Linux /proc/cpuinfo flags naming an int8 dot product that accumulates without saturating. */
const X86_DOT_PRODUCT = ['avx512_vnni', 'avx_vnni', 'amx_int8'];
const ARM_DOT_PRODUCT = ['asimddp'];

/** The weight range for this machine, from the CPU's flags (Linux's /proc/cpuinfo; null where there is none) or its architecture. */
export function detectInt8Support(arch: string = os.arch(), cpuinfo: string | null = readCpuinfo()): Int8Support {
  const flags = new Set(
    (cpuinfo ?? '')
      .split('\n')
      .filter((line) => /^(flags|Features)\s*:/.test(line))
      .flatMap((line) => line.slice(line.indexOf(':') + 1).trim().split(/\s+/)),
  );
  if (arch === 'arm64') {
    const found = ARM_DOT_PRODUCT.filter((flag) => flags.has(flag));
    // Without /proc/cpuinfo (macOS): every Apple arm64 CPU and every Graviton has the dot product.
    if (cpuinfo === null) return { weightBits: 8, reason: 'arm64 (dot product assumed)' };
    return found.length > 0 ? { weightBits: 8, reason: found.join(' ') } : { weightBits: 7, reason: 'arm64 without asimddp' };
  }
  const found = X86_DOT_PRODUCT.filter((flag) => flags.has(flag));
  if (found.length > 0) return { weightBits: 8, reason: found.join(' ') };
  return { weightBits: 7, reason: cpuinfo === null ? `${arch}, CPU flags unknown` : `${arch} without VNNI` };
}

function readCpuinfo(): string | null {
  try {
    return fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
}
