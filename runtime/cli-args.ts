import { InvalidArgumentError } from 'commander';

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
export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function runIdArg(value: string): string {
  if (!RUN_ID_PATTERN.test(value)) {
    throw new InvalidArgumentError('expected letters, digits, ".", "_" or "-" (at most 128) for --run-id');
  }
  return value;
}
