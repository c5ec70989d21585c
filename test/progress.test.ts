import { PassThrough } from 'node:stream';
import { createReporter } from '../runtime/progress';

/** The lines a plain (non-terminal) reporter writes while `work` runs. */
function linesOf(work: (reporter: ReturnType<typeof createReporter>) => void): string[] {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  work(createReporter({ stream: stream as unknown as NodeJS.WritableStream, intervalSeconds: 0 }));
  return text.split('\n').filter(Boolean);
}

describe('progress lines', () => {
  test('name done, total, rate, an estimate of the time left once there is a rate, and failures', () => {
    const lines = linesOf((reporter) => {
      const task = reporter.task('extract', 10);
      task.update(0, 0);
      task.update(4, 1);
      task.stop();
    });
    expect(lines[0]).toMatch(/^extract: 0\/10 images imagesPerSecond=0 failed=0$/);
    expect(lines.at(-1)).toMatch(/^extract: 4\/10 images imagesPerSecond=[\d.]+ etaSeconds=\d+ failed=1$/);
    expect(lines.join('\n')).not.toContain('undefined');
  });

  test('say nothing for a stage with nothing left to do (a resumed run whose shards were all done)', () => {
    expect(linesOf((reporter) => reporter.task('extract', 0).stop())).toEqual([]);
  });
});
