import { InvalidArgumentError } from 'commander';
import { RUN_ID_PATTERN_SOURCE } from './contracts/deployment';

/**
 * Command-line value parsers shared by `orchard` and `npm run trigger`, so that a value the instance would refuse
 * is refused on the user's machine with the same words. Each names its option and what it expected.
 */
export function positiveInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a whole number ≥ 1 for ${name}`);
    return n;
  };
}

export function wholeNumber(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a whole number ≥ 0 for ${name}`);
    return n;
  };
}

/**
 * `--shards`: shard numbers and ranges, e.g. `0-9,12`, sorted without repeats; or `all`. A task of a split run
 * is given its shards this way.
 */
export function shardList(value: string): number[] | 'all' {
  if (value.trim() === 'all') return 'all';
  const shards = new Set<number>();
  for (const part of value.split(',')) {
    const match = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    const from = match ? Number(match[1]) : Number.NaN;
    const to = match?.[2] !== undefined ? Number(match[2]) : from;
    if (!match || !Number.isSafeInteger(from) || !Number.isSafeInteger(to) || to < from || to - from > 10_000_000) {
      throw new InvalidArgumentError(`expected shard numbers and ranges such as 0-9,12 (or all) for --shards but got ${JSON.stringify(value)}`);
    }
    for (let shard = from; shard <= to; shard++) shards.add(shard);
  }
  return [...shards].sort((a, b) => a - b);
}

export function wholeNumberUpTo(name: string, max: number, why: string) {
  const parse = positiveInt(name);
  return (value: string) => {
    const n = parse(value);
    if (n > max) throw new InvalidArgumentError(`at most ${max} for ${name}: ${why}`);
    return n;
  };
}

export function fraction(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!(n > 0 && n < 1)) throw new InvalidArgumentError(`expected a number between 0 and 1 (exclusive) for ${name}`);
    return n;
  };
}

export function rate(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !(n >= 0 && n <= 1)) throw new InvalidArgumentError(`expected a number from 0 to 1 for ${name}`);
    return n;
  };
}

/** Run ids become S3 key segments and file names: a safe character set, as in the SSM document's pattern. */
export const RUN_ID_PATTERN = new RegExp(`^${RUN_ID_PATTERN_SOURCE}$`);

export function runIdArg(value: string): string {
  if (!RUN_ID_PATTERN.test(value)) {
    throw new InvalidArgumentError('expected letters, digits, ".", "_" or "-" (at most 128) for --run-id');
  }
  return value;
}
