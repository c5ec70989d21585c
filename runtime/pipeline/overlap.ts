import * as fs from 'node:fs';
import * as path from 'node:path';
import { ExitCode, OrchardError } from '../errors';
import { formatLocation, type Location } from '../storage';

/**
 * A run folder (`<output>/<run-id>/`) may not be the input, lie inside it, or hold it: orchard would read its own
 * results as images, list its own `_work/` as failed images, and, after a successful run, delete `_work/` from
 * what is also the input. Refused before anything is written, on local folders (compared by real path, so that
 * a symbolic link is no way round) and on S3 prefixes alike.
 */
export function refuseOverlap(input: Location, runFolder: Location): void {
  const relation = overlap(input, runFolder);
  if (!relation) return;
  const what = relation === 'same' ? 'is the --input' : relation === 'inside' ? 'lies inside the --input' : 'holds the --input';
  throw new OrchardError(
    `The run folder ${formatLocation(runFolder)} ${what} ${formatLocation(input)}: orchard would read its own results as images. ` +
      `Give an --output outside the input, e.g. ${outsideOf(input)}`,
    'ERR_INVALID_PARAMETER',
    ExitCode.Usage,
  );
}

function overlap(input: Location, runFolder: Location): 'same' | 'inside' | 'holds' | undefined {
  let a: string;
  let b: string;
  if (input.kind === 's3' && runFolder.kind === 's3') {
    if (input.bucket !== runFolder.bucket) return undefined;
    [a, b] = [`/${input.prefix}`, `/${runFolder.prefix}`];
  } else if (input.kind === 'local' && runFolder.kind === 'local') {
    [a, b] = [`${realPath(input.dir)}/`, `${realPath(runFolder.dir)}/`].map((dir) => dir.replace(/\/+$/, '/')) as [string, string];
  } else {
    return undefined;
  }
  if (a === b) return 'same';
  if (b.startsWith(a)) return 'inside';
  if (a.startsWith(b)) return 'holds';
  return undefined;
}

/** The real path of a folder, or of its nearest existing parent followed by the rest (a run folder not made yet). */
function realPath(dir: string): string {
  const rest: string[] = [];
  let at = path.resolve(dir);
  for (;;) {
    try {
      return path.join(fs.realpathSync(at), ...rest.reverse());
    } catch {
      const parent = path.dirname(at);
      if (parent === at) return path.resolve(dir);
      rest.push(path.basename(at));
      at = parent;
    }
  }
}

/** An output next to the input rather than in it: `<input>-results`. */
function outsideOf(input: Location): string {
  if (input.kind === 'local') return `${input.dir.replace(/\/+$/, '')}-results`;
  return input.prefix === '' ? `s3://<another bucket>/results/` : `s3://${input.bucket}/${input.prefix.replace(/\/+$/, '')}-results/`;
}
