import { SingleBar } from 'cli-progress';

export type Fields = Record<string, unknown>;

/** Where the runtime reports what it does. Everything goes to stderr: stdout is kept for results. */
export interface Reporter {
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  /** Progress of a long stage over `total` items. */
  task(stage: string, total: number): ProgressTask;
}

export interface ProgressTask {
  /** Absolute counts so far. */
  update(done: number, failed: number): void;
  stop(): void;
}

export interface ReporterOptions {
  /** Only warnings. */
  readonly quiet?: boolean;
  /** One JSON object per line (for CloudWatch Logs Insights), never a progress bar. */
  readonly json?: boolean;
  /** A progress bar when true; periodic plain lines otherwise (SSM Run Command has no TTY). */
  readonly tty?: boolean;
  /** Seconds between plain progress lines. @default 15 */
  readonly intervalSeconds?: number;
  readonly stream?: NodeJS.WritableStream;
  /** Fields of every JSON line (the run id, so that a shared log group can be filtered by run). */
  readonly fields?: Fields;
}

export function createReporter(options: ReporterOptions = {}): Reporter {
  const stream = options.stream ?? process.stderr;
  const interval = (options.intervalSeconds ?? 15) * 1000;
  const emit = (level: 'info' | 'warn', message: string, fields: Fields = {}) => {
    if (level === 'info' && options.quiet) return;
    if (options.json) {
      stream.write(`${JSON.stringify({ time: new Date().toISOString(), level, message, ...options.fields, ...fields })}\n`);
    } else {
      const extra = Object.entries(fields).map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
      stream.write(`${level === 'warn' ? 'warning: ' : ''}${[message, ...extra].join(' ')}\n`);
    }
  };

  return {
    info: (message, fields) => emit('info', message, fields),
    warn: (message, fields) => emit('warn', message, fields),
    task(stage, total) {
      const started = Date.now();
      if (options.quiet) return { update() {}, stop() {} };
      if (options.tty && !options.json) {
        const bar = new SingleBar({
          format: `${stage} [{bar}] {value}/{total} | {rate} img/s | ETA {eta_formatted} | {failed} failed`,
          etaBuffer: 200,
          stream: stream as NodeJS.WriteStream,
          hideCursor: true,
        });
        bar.start(total, 0, { rate: '0.0', failed: 0 });
        return {
          update(done, failed) {
            bar.update(done, { rate: rate(done, started), failed });
          },
          stop: () => bar.stop(),
        };
      }
      let last = started;
      let state = { done: 0, failed: 0 };
      const line = () => {
        // Nothing to do here (every shard done before, by this run or another process): nothing to report.
        if (total === 0) return;
        const perSecond = state.done / Math.max((Date.now() - started) / 1000, 1e-3);
        // No estimate before the first image is done (a task waiting for a shard another process holds).
        const eta = perSecond > 0 ? { etaSeconds: Math.round((total - state.done) / perSecond) } : {};
        emit('info', `${stage}: ${state.done}/${total} images`, { imagesPerSecond: Number(perSecond.toFixed(1)), ...eta, failed: state.failed });
      };
      return {
        update(done, failed) {
          state = { done, failed };
          if (Date.now() - last >= interval) {
            last = Date.now();
            line();
          }
        },
        stop: line,
      };
    },
  };
}

function rate(done: number, started: number): string {
  return (done / Math.max((Date.now() - started) / 1000, 1e-3)).toFixed(1);
}

/** A reporter that records messages, for tests and library callers that want silence. */
export function silentReporter(): Reporter {
  return { info() {}, warn() {}, task: () => ({ update() {}, stop() {} }) };
}
