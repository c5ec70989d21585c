import { setMaxListeners } from 'node:events';
import { Writable } from 'node:stream';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { fraction, positiveInt, rate, runIdArg, shardList, wholeNumber, wholeNumberUpTo } from './cli-args';
import { OUTPUTS, type Manifest, type RunResult } from './contracts/results';
import { labelSummary } from './quality/labels';
import { ExitCode, OrchardError, describeError, invalidParameter } from './errors';
import { STOP_GRACE_MS, interruptible } from './interrupt';
import { createReporter, type Reporter } from './progress';
import { DEFAULTS, buildRunConfig, defaultThreads, type RunSettings } from './pipeline/config';
import { DEFAULT_MODEL, DEMO_MODEL, PRESETS, SIGNED_RANGE, UNIT_RANGE, type Normalization } from './model/presets';
import type { BackendPreference } from './model/backend';
import { describeEngine, type EnginePreference } from './model/feature-model';
import type { DoctorConfig } from './doctor';
import { InvalidJsonError, NotFoundError, S3RetryCounter, S3_ATTEMPTS, S3_TIMEOUT_SECONDS, noSpace, S3Storage, UnreadableObjectError, createS3Client, getJsonIfExists, openStorage, parseLocation, type S3Options } from './storage';

/**
 * 8 classes x 125 = 1,000 images: the demo's embedded S3 server (s3rver) cannot page a listing past 1,000 keys
 * under OpenSSL 3 (its continuation tokens use DES), so a bigger demo would fail half-way instead of up front.
 */
const DEMO_MAX_PER_CLASS = 125;
const demoPerClass = wholeNumberUpTo('--per-class', DEMO_MAX_PER_CLASS, 'the demo\'s embedded S3 server lists at most 1,000 images; use `orchard run` on a folder for more');

// The commands' modules are loaded when their command runs, not here: the pipeline, the report and the demo
// load sharp (a native module) at import, and `--help` and `doctor` must work where it cannot load. `require`
// rather than `import()`: the tsx loader of runtime/orchard.cjs and the esbuild bundle are CommonJS, and a literal
// `require` is what esbuild bundles as a module initialised on first use.

/** Options shared by every command that talks to S3 or reports progress. */
interface CommonOptions {
  endpoint?: string;
  region?: string;
  quiet?: boolean;
  jsonLogs?: boolean;
  s3Timeout?: number;
}

/** `run` and `plan` take every setting of a run; commander gives them under the settings' own names. */
type RunOptions = CommonOptions & Omit<RunSettings, 'normalize'> & { normalize?: Normalization };

/** What a stage task is given: where the run is, and its machine's own settings. */
interface StageOptions extends CommonOptions {
  output: string;
  runId: string;
  threads?: number;
  concurrency?: number;
}

/** The process environment the CLI may read; nothing below the CLI reads process.env. */
export interface CliEnvironment {
  readonly AWS_ENDPOINT_URL?: string;
  readonly AWS_REGION?: string;
  readonly AWS_DEFAULT_REGION?: string;
}

export function buildProgram(env: CliEnvironment = process.env, io: CliIo = defaultIo()): Command {
  const program = new Command('orchard')
    .description('Fruit photos → MobileNetV2 features → PCA, from S3 or a folder, to CSV/Parquet/model/manifest.')
    .version(require('../package.json').version as string)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  program.configureOutput({ writeOut: (text) => io.out(text), writeErr: (text) => io.err(text) });

  const withCommon = (command: Command) =>
    command
      .addOption(new Option('--endpoint <url>', 'S3-compatible endpoint (e.g. a local S3 server)').env('AWS_ENDPOINT_URL').argParser(endpointUrl))
      .addOption(new Option('--region <region>', 'AWS region of the buckets').default(env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1'))
      .option('-q, --quiet', 'print warnings and the result only')
      .option('--json-logs', 'log one JSON object per line (no progress bar)')
      .option('--s3-timeout <seconds>', `seconds an S3 request waits for a connection, then for each answer, before it is retried (${S3_ATTEMPTS} attempts)`, positiveInt('--s3-timeout'), S3_TIMEOUT_SECONDS)
      .option('--debug', 'print the stack trace of an unexpected error');

  withCommon(withRunSettings(program.command('run').description('Run the pipeline: list → extract features → fit PCA → project → write the outputs under <output>/<run-id>/')))
    .addHelpText('after', EXIT_CODES)
    .action(async (options: RunOptions) => {
      const reporter = reporterFor(options, io);
      const config = buildRunConfig(toRunSettings(options), s3Options(options, reporter));
      const { runPipeline } = require('./pipeline/run') as typeof import('./pipeline/run');
      const result = await withInterrupt((signal) => runPipeline(config, { reporter, signal }), config.runId, io);
      printResult(result, options, io);
      io.exit(result.exitCode);
    });

  withCommon(withRunSettings(program.command('plan').description('First stage of a run split into tasks: check everything, list the input into shards, store the settings, fill the model cache, write the extract work items')))
    .addHelpText('after', STAGE_HELP)
    .action(async (options: RunOptions) => {
      const reporter = reporterFor(options, io);
      const config = buildRunConfig(toRunSettings(options), s3Options(options, reporter));
      const { planCommand } = require('./pipeline/stages') as typeof import('./pipeline/stages');
      const { openRun } = require('./pipeline/context') as typeof import('./pipeline/context');
      const run = openRun(config);
      const planned = await withInterrupt((signal) => planCommand(run, { reporter, signal }), config.runId, io);
      const summary = { runId: config.runId, runUri: run.folder.uri(), images: planned.plan.images, shards: planned.plan.shards, pending: planned.pending.length, items: run.folder.uri(planned.itemsKey) };
      io.out(options.jsonLogs ? `${JSON.stringify(summary)}\n` : `planned ${summary.images} images in ${summary.shards} shard(s), ${summary.pending} to extract: ${summary.items}\n`);
      io.exit(ExitCode.Ok);
    });

  withCommon(withStageTask(program.command('extract').description('Extract the features and statistics of some shards of a planned run'), true))
    .requiredOption('--shards <list>', 'shards to extract: e.g. 0-9,12, or all', shardList)
    .action(async (options: StageOptions & { shards: number[] | 'all' }) => {
      const stages = require('./pipeline/stages') as typeof import('./pipeline/stages');
      const reporter = reporterFor(options, io);
      if (await alreadyPublished('extract', options, reporter, io)) return;
      const run = await stages.openPlannedRun(options.output, options.runId, machineSettings(options), s3Options(options, reporter));
      const done = await withInterrupt((signal) => stages.extractCommand(run, options.shards, { reporter, signal }), options.runId, io);
      io.out(options.jsonLogs ? `${JSON.stringify(done)}\n` : `extracted ${done.shards} shard(s) (${done.resumed} already done): ${done.images} images, ${done.failed} failed\n`);
      io.exit(ExitCode.Ok);
    });

  withCommon(withStageTask(program.command('fit').description('Merge every shard\'s statistics and fit the PCA of a planned, extracted run')))
    .action(async (options: StageOptions) => {
      const stages = require('./pipeline/stages') as typeof import('./pipeline/stages');
      const reporter = reporterFor(options, io);
      if (await alreadyPublished('fit', options, reporter, io)) return;
      const run = await stages.openPlannedRun(options.output, options.runId, machineSettings(options), s3Options(options, reporter));
      const fitted = await withInterrupt((signal) => stages.fitCommand(run, { reporter, signal }), options.runId, io);
      if ('published' in fitted) {
        printResult(fitted.published, options, io);
        io.exit(fitted.published.exitCode);
        return;
      }
      const summary = { k: fitted.model.nComponents, seconds: fitted.seconds, reused: fitted.reused, pending: fitted.pending.length, items: run.folder.uri(fitted.itemsKey) };
      io.out(options.jsonLogs ? `${JSON.stringify(summary)}\n` : `fitted k=${summary.k}${fitted.reused ? ' (already fitted)' : ''}; ${summary.pending} shard(s) to project: ${summary.items}\n`);
      io.exit(ExitCode.Ok);
    });

  withCommon(withStageTask(program.command('project').description('Project some shards of a fitted run onto its components (one Parquet part per shard)'), true))
    .requiredOption('--shards <list>', 'shards to project: e.g. 0-9,12, or all', shardList)
    .action(async (options: StageOptions & { shards: number[] | 'all' }) => {
      const stages = require('./pipeline/stages') as typeof import('./pipeline/stages');
      const reporter = reporterFor(options, io);
      if (await alreadyPublished('project', options, reporter, io)) return;
      const run = await stages.openPlannedRun(options.output, options.runId, machineSettings(options), s3Options(options, reporter));
      const done = await withInterrupt((signal) => stages.projectCommand(run, options.shards, { reporter, signal }), options.runId, io);
      io.out(options.jsonLogs ? `${JSON.stringify(done)}\n` : `projected ${done.shards} shard(s) (${done.resumed} already done): ${done.rows} rows\n`);
      io.exit(ExitCode.Ok);
    });

  withCommon(withStageTask(program.command('publish').description('Write the outputs of a projected run: tables, model, errors, report, manifest, _SUCCESS last')))
    .addHelpText('after', EXIT_CODES)
    .action(async (options: StageOptions) => {
      const stages = require('./pipeline/stages') as typeof import('./pipeline/stages');
      const reporter = reporterFor(options, io);
      if (await alreadyPublished('publish', options, reporter, io)) return;
      const run = await stages.openPlannedRun(options.output, options.runId, machineSettings(options), s3Options(options, reporter));
      const result = await withInterrupt((signal) => stages.publishCommand(run, { reporter, signal }), options.runId, io);
      printResult(result, options, io);
      io.exit(result.exitCode);
    });

  withCommon(
    program
      .command('demo')
      .description('Run the whole pipeline on generated fruit images, through an embedded S3 server on loopback')
      .option('-o, --output <dir>', 'local folder for the results', 'demo-output')
      .option('--per-class <n>', `images generated per class (at most ${DEMO_MAX_PER_CLASS})`, demoPerClass, 30)
      .option('--batch-size <n>', 'images per model call', positiveInt('--batch-size'), DEFAULTS.batchSize)
      .option('-m, --model <name|uri>', 'model preset or tfjs model URL / folder', DEMO_MODEL)
      .option('--keep-images <dir>', 'generate the images into <dir> and keep them (to try orchard run on a folder next)')
      .addOption(ENGINE_OPTION()),
  ).action(async (options: CommonOptions & { output: string; perClass: number; batchSize: number; model: string; engine: EnginePreference; keepImages?: string }) => {
    const reporter = reporterFor(options, io);
    const { runDemo } = require('./demo') as typeof import('./demo');
    const result = await runDemo(
      { outputDir: options.output, perClass: options.perClass, batchSize: options.batchSize, model: options.model, engine: options.engine, keepImages: options.keepImages },
      reporter,
    );
    io.out(`${result.summary}\n`);
    io.exit(result.run.exitCode);
  });

  withCommon(
    program
      .command('report')
      .description('Write report.html (variance curves, PC scatter plots, classes, errors) for a finished run, replacing any earlier one')
      .argument('<run-uri>', 'the run folder: s3://bucket/results/<run-id>/ or a local folder')
      .option('-i, --input <uri>', 'where the images are, for thumbnails (default: the input recorded in the manifest)'),
  ).action(async (runUri: string, options: CommonOptions & { input?: string }) => {
    const reporter = reporterFor(options, io);
    const s3 = s3Options(options, reporter);
    const run = openStorage(parseLocation(runUri, '<run-uri>'), s3);
    await run.check();
    const manifest = await getJsonIfExists<Manifest>(run, OUTPUTS.manifest);
    if (!manifest) {
      throw new OrchardError(`${run.uri()} holds no ${OUTPUTS.manifest}: not the folder of a finished run`, 'ERR_NOT_A_RUN', ExitCode.Usage);
    }
    const input = openStorage(parseLocation(options.input ?? manifest.input, '--input'), s3);
    const { buildReport } = require('./report/build') as typeof import('./report/build');
    const uri = await buildReport(run, { input, manifest, reporter });
    io.out(options.jsonLogs ? `${JSON.stringify({ report: uri })}\n` : `report  ${uri}  (open in a browser)\n`);
    io.exit(ExitCode.Ok);
  });

  withCommon(
    program
      .command('upload')
      .description('Upload a local image tree (Fruits-360 layout) to S3, skipping files already there unchanged')
      .argument('<dir>', 'local folder, e.g. ./fruits-360/Test')
      .argument('<s3-uri>', 'destination, e.g. s3://my-bucket/images/')
      .option('--concurrency <n>', 'files uploaded at once', positiveInt('--concurrency'), 16),
  ).action(async (dir: string, uri: string, options: CommonOptions & { concurrency: number }) => {
    const location = parseLocation(uri, '<s3-uri>');
    if (location.kind !== 's3') throw new OrchardError(`Expected an s3:// URI for <s3-uri> but got ${JSON.stringify(uri)}`, 'ERR_INVALID_PARAMETER', ExitCode.Usage);
    const reporter = reporterFor(options, io);
    const target = new S3Storage(createS3Client(s3Options(options, reporter)), location.bucket, location.prefix);
    let task: ReturnType<Reporter['task']> | undefined;
    const { uploadTree } = require('./upload') as typeof import('./upload');
    const summary = await withInterrupt(
      (signal) =>
        uploadTree({
          sourceDir: dir,
          target,
          concurrency: options.concurrency,
          signal,
          onProgress: (p) => {
            task ??= reporter.task('upload', p.total);
            task.update(p.done, p.failed);
          },
        }),
      undefined,
      io,
    );
    task?.stop();
    io.out(`uploaded ${summary.uploaded}, skipped ${summary.skipped} unchanged, failed ${summary.failed.length} of ${summary.total} files (${(summary.bytes / 1e6).toFixed(1)} MB in ${summary.seconds.toFixed(1)} s) to ${target.uri()}\n`);
    for (const failure of summary.failed) io.err(`failed: ${failure.key}: ${failure.reason}\n`);
    io.exit(summary.failed.length > 0 ? ExitCode.Fatal : ExitCode.Ok);
  });

  withCommon(
    program
      .command('doctor')
      .description('Check that this machine can run orchard: Node.js, sharp, TensorFlow.js backend, S3 access, model load')
      .option('-m, --model <name|uri>', `model to load, as for run (${Object.keys(PRESETS).join(', ')}, a URL / s3:// URI / folder, or a .h5)`, DEFAULT_MODEL)
      .option('--feature-layer <name>', 'layer (layers model) or node (graph model) giving the features')
      .option('--input-size <n>', 'square model input size in pixels', positiveInt('--input-size'))
      .addOption(new Option('--normalize <range>', 'input range the model expects: 0,1 or -1,1').argParser(normalization))
      .option('--model-cache <uri>', 'where a downloaded model is cached (default: s3://<bucket>/models/ of the first --bucket, none without)')
      .option('--bucket <s3-uri>', 'S3 location to check: the bucket exists and keys under it can be listed (repeatable)', (value: string, previous: string[]) => [...previous, value], [] as string[])
      .addOption(ENGINE_OPTION())
      .addOption(new Option('--backend <name>', 'TensorFlow.js backend').choices(['auto', 'tensorflow', 'wasm']).default('auto'))
      .addHelpText('after', DOCTOR_HELP),
  ).action(async (options: DoctorOptions) => {
    const config = toDoctorConfig(options);
    const { runDoctor, formatCheck, formatSummary } = require('./doctor') as typeof import('./doctor');
    const report = await runDoctor(config, {
      onCheck: (check) => {
        if (options.jsonLogs) io.out(`${JSON.stringify({ check: check.name, status: check.status, detail: check.detail, seconds: check.seconds })}\n`);
        else if (!options.quiet || check.status !== 'ok') io.out(`${formatCheck(check)}\n`);
      },
    });
    if (options.jsonLogs) {
      const failed = report.checks.filter((check) => check.status === 'FAIL').map((check) => check.name);
      io.out(`${JSON.stringify({ doctor: report.passed ? 'passed' : 'failed', failed })}\n`);
    } else {
      io.out(`${formatSummary(report)}\n`);
    }
    io.exit(report.exitCode);
  });

  for (const command of program.commands) strictArguments(command);
  return program;
}

/**
 * Unknown flags and stray arguments are refused by name. Commander checks required options before unknown ones,
 * so `run --inptu X` would answer "required option '-i, --input' not specified": required options are checked in
 * a preAction hook instead, which runs after commander's own checks of unknown options and excess arguments.
 */
function strictArguments(command: Command): void {
  command.allowUnknownOption(false).allowExcessArguments(false);
  const required = command.options.filter((option) => option.mandatory);
  for (const option of required) option.mandatory = false;
  command.hook('preAction', (_command, action) => {
    for (const option of required) {
      if (action.getOptionValue(option.attributeName()) === undefined) {
        action.error(`error: required option '${option.flags}' not specified`, { code: 'commander.missingMandatoryOptionValue' });
      }
    }
  });
}

interface DoctorOptions extends CommonOptions {
  model: string;
  featureLayer?: string;
  inputSize?: number;
  normalize?: Normalization;
  modelCache?: string;
  bucket: string[];
  engine: EnginePreference;
  backend: BackendPreference;
}

const DOCTOR_HELP = `
Each check prints one line, "ok|warn|FAIL <check>: <detail>": node (version), sharp (decodes generated
images), onnx (onnxruntime-node loads), backend (TensorFlow.js initialises), s3 (per --bucket: lists a key
under it), model (loads as a run loads it, on the engine a run would use, and predicts once; with --bucket or
--model-cache a downloaded model and its compiled ONNX graph are cached there).

Exit status:
  0    every check passed (warnings allowed)
  1    a check failed; its line names the cause
  2    invalid command line`;

/** Turns the doctor's flags into its configuration. */
export function toDoctorConfig(options: DoctorOptions): DoctorConfig {
  const buckets = options.bucket.map((uri) => {
    const location = parseLocation(uri, '--bucket');
    if (location.kind !== 's3') throw invalidParameter('--bucket', 'an s3:// URI', uri);
    return location;
  });
  return {
    model: { ref: options.model, featureLayer: options.featureLayer, inputSize: options.inputSize, normalization: options.normalize },
    modelCache: options.modelCache ? parseLocation(options.modelCache, '--model-cache') : undefined,
    buckets,
    engine: options.engine,
    backend: options.backend,
    s3: s3Options(options),
  };
}

const EXIT_CODES = `
Exit status:
  0    finished; failed images within --max-error-rate
  1    fatal error (storage unreachable or not answering within --s3-timeout, permissions, a full
       disk, model, damaged run state, run held by another process); the message names the cause;
       rerun with the same --run-id once it is fixed
  2    invalid command line or configuration (e.g. a run folder that is, holds or lies inside the
       input), or the run id is already complete
  3    finished, but too many images failed (outputs without _SUCCESS) or too few images were
       readable for PCA (errors.csv, manifest and report only)
  130  interrupted (within 5 s of the signal, the lease released); rerun with the same --run-id to resume`;

/** Every setting of a run as a flag (`run`, `plan`). */
function withRunSettings(command: Command): Command {
  return command
    .requiredOption('-i, --input <uri>', 'images: s3://bucket/prefix/ or a local folder (Class/image.jpg layout)')
    .requiredOption('-o, --output <uri>', 'where results go: s3://bucket/prefix/ or a local folder')
    .addOption(new Option('-k, --components <n>', 'number of principal components').argParser(positiveInt('--components')).conflicts('variance'))
    .addOption(new Option('--variance <fraction>', `keep the fewest components explaining more than this share of variance (default ${DEFAULTS.variance})`).argParser(fraction('--variance')))
    .option('-m, --model <name|uri>', `model preset (${Object.keys(PRESETS).join(', ')}), a tfjs model URL / s3:// URI / folder, or a Keras MobileNetV2 .h5 by path / s3:// URI / URL`, DEFAULT_MODEL)
    .option('--run-id <id>', 'name of this run; rerun with the same id to resume (default: a timestamp)', runIdArg)
    .option('--batch-size <n>', 'images per model call', positiveInt('--batch-size'), DEFAULTS.batchSize)
    .option('--concurrency <n>', 'images read and decoded ahead of the model', positiveInt('--concurrency'), DEFAULTS.concurrency)
    .option('--shard-size <n>', 'images per shard (the unit of resume and of a task)', positiveInt('--shard-size'), DEFAULTS.shardSize)
    .option('--max-error-rate <fraction>', 'share of failed images still counted a success', rate('--max-error-rate'), DEFAULTS.maxErrorRate)
    .addOption(new Option('--label-from <mode>', 'label of an image: its parent folder name, or none').choices(['parent', 'none']).default('parent'))
    .option('--keep-features', 'keep the intermediate files (_work/: feature shards, statistics) after a successful run')
    .addOption(ENGINE_OPTION())
    .addOption(new Option('--precision <name>', 'fp32, or int8: an 8-bit graph calibrated on the run\'s images (ONNX Runtime; about 2x faster, mean cosine 0.998 to fp32)').choices(['fp32', 'int8']).default('fp32'))
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend, when TensorFlow.js runs the model').choices(['auto', 'tensorflow', 'wasm']).default('auto'))
    .option('--threads <n>', 'threads ONNX Runtime computes on', positiveInt('--threads'), defaultThreads())
    .option('--feature-layer <name>', 'layer (layers model) or node (graph model) giving the features')
    .option('--input-size <n>', 'square model input size in pixels', positiveInt('--input-size'))
    .addOption(new Option('--normalize <range>', 'input range the model expects: 0,1 or -1,1').argParser(normalization))
    .option('--max-pixels <n>', 'largest width×height decoded (decompression-bomb guard)', positiveInt('--max-pixels'), DEFAULTS.maxPixels)
    .option('--single-file-max-rows <n>', 'write pca.csv and pca.parquet when at most this many images are processed (0: never)', wholeNumber('--single-file-max-rows'), DEFAULTS.singleFileMaxRows)
    .option('--model-cache <uri>', 'where downloaded models and compiled graphs are cached (default: s3://<output bucket>/models/ or ~/.cache/orchard/models)');
}

/**
 * What a stage task is given: the run's output and id (the rest was stored by plan), and for the stages that read
 * images or run a model (extract, project), its machine's settings.
 */
function withStageTask(command: Command, machine = false): Command {
  command
    .requiredOption('-o, --output <uri>', 'the output the run was planned with: s3://bucket/prefix/ or a local folder')
    .requiredOption('--run-id <id>', 'the planned run', runIdArg);
  if (!machine) return command;
  return command
    .option('--threads <n>', 'threads ONNX Runtime computes on (default: this machine\'s cores)', positiveInt('--threads'))
    .option('--concurrency <n>', 'images read and decoded ahead of the model', positiveInt('--concurrency'));
}

/**
 * A stage retried after its run was published (a task whose answer was lost, a second `orchard publish`) has no
 * work left: it says so, prints the run's result and succeeds, as the stage function does for Publish.
 */
async function alreadyPublished(stage: string, options: StageOptions, reporter: Reporter, io: CliIo): Promise<boolean> {
  const { publishedRun } = require('./pipeline/stages') as typeof import('./pipeline/stages');
  const result = await publishedRun(options.output, options.runId, s3Options(options, reporter));
  if (!result) return false;
  const note = `${stage}: run ${options.runId} is already published at ${result.runUri}; nothing to do`;
  io.out(options.jsonLogs ? `${JSON.stringify({ stage, alreadyPublished: true, runUri: result.runUri })}\n` : `${note}\n`);
  printResult(result, options, io);
  io.exit(ExitCode.Ok);
  return true;
}

function machineSettings(options: StageOptions): { threads?: number; concurrency?: number } {
  return { threads: options.threads ?? defaultThreads(), concurrency: options.concurrency };
}

/** Turns parsed flags into run settings; `buildRunConfig` validates them. */
export function toRunSettings(options: RunOptions): RunSettings {
  const { endpoint: _endpoint, region: _region, quiet: _quiet, jsonLogs: _jsonLogs, s3Timeout: _s3Timeout, normalize, ...settings } = options;
  return { ...settings, normalize: normalize === undefined ? undefined : normalize === SIGNED_RANGE ? '-1,1' : '0,1' };
}

const STAGE_HELP = `
A run split into tasks: plan once, then extract any shards in any number of processes (each needs only
--output, --run-id and its --shards), fit once, project shards likewise, publish once. Every stage is
idempotent: complete shards are skipped, so a task can be retried. \`orchard run\` does all of it in one process.

  orchard plan -i s3://b/images/ -o s3://b/results/ --run-id r1
  orchard extract -o s3://b/results/ --run-id r1 --shards 0-9,12
  orchard fit -o s3://b/results/ --run-id r1
  orchard project -o s3://b/results/ --run-id r1 --shards all
  orchard publish -o s3://b/results/ --run-id r1`;

const ENGINE_OPTION = () =>
  new Option('--engine <name>', 'inference engine: onnx (ONNX Runtime), tfjs (TensorFlow.js), or auto: onnx unless it cannot run the model')
    .choices(['auto', 'onnx', 'tfjs'])
    .default('auto');

/**
 * S3 options of a command: where, and a count of the requests the SDK retried, reported as warnings (a line per
 * command at the 1st, 10th, 100th… retry) so that throttling or a flaky network is never silent.
 */
function s3Options(options: CommonOptions, reporter?: Reporter): S3Options {
  const retries = new S3RetryCounter((event) =>
    reporter?.warn(
      `s3: a ${event.command} request ${event.failed ? 'failed after' : 'needed'} ${event.retries} retr${event.retries === 1 ? 'y' : 'ies'} ` +
        `(${event.total} ${event.command} retries so far; throttling, server errors or reset connections)`,
      { command: event.command, retries: event.total },
    ),
  );
  return { endpoint: options.endpoint, region: options.region, retries, timeoutSeconds: options.s3Timeout };
}

/** `--endpoint`: an http(s) URL, named in the error when it is not one. */
function endpointUrl(value: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new InvalidArgumentError(`expected an http:// or https:// URL for --endpoint but got ${JSON.stringify(value)}`);
  }
  return value;
}

function reporterFor(options: CommonOptions, io: CliIo): Reporter {
  // Log lines go through io.err like every other message; only a progress bar needs the real (TTY) stderr.
  const stream = io.isTty ? undefined : new Writable({ write: (chunk: Buffer, _encoding, done) => (io.err(chunk.toString('utf8')), done()) });
  return createReporter({ quiet: options.quiet, json: options.jsonLogs, tty: io.isTty, stream });
}

/** The first word(s) of the result line, which the trigger reads from the command's output. */
export const RESULT_WORDS: Readonly<Record<RunResult['status'], string>> = {
  succeeded: 'done',
  too_many_errors: 'finished with too many errors',
  too_few_images: 'finished with too few images',
};

/**
 * The one-line result a run ends with (`done: 240 images, 0 failed, k=21 (95.07% of variance), 6.7 s, 35.8
 * images/s on …`): what the trigger finds on the instance's stdout, and prints itself for the scale path.
 */
export function summaryLine(result: {
  readonly status: RunResult['status'];
  readonly counts: { readonly processed: number; readonly failed: number };
  readonly components?: number;
  readonly explainedVariance?: number;
  readonly seconds: number;
  readonly imagesPerSecond: number;
  readonly where: string;
}): string {
  const pca = result.components !== undefined ? `k=${result.components} (${((result.explainedVariance ?? 0) * 100).toFixed(2)}% of variance)` : 'no PCA';
  return (
    `${RESULT_WORDS[result.status]}: ${result.counts.processed} images, ${result.counts.failed} failed, ${pca}, ` +
    `${result.seconds.toFixed(1)} s, ${result.imagesPerSecond.toFixed(1)} images/s on ${result.where}`
  );
}

function printResult(result: RunResult, options: CommonOptions, io: CliIo): void {
  const { manifest } = result;
  if (options.jsonLogs) {
    io.out(`${JSON.stringify({ status: result.status, runUri: result.runUri, counts: manifest.counts, pca: manifest.pca, outputs: result.outputs })}\n`);
    return;
  }
  io.out(
    [
      summaryLine({
        status: result.status,
        counts: manifest.counts,
        ...(manifest.pca ? { components: manifest.pca.components, explainedVariance: manifest.pca.explainedVariance } : {}),
        seconds: manifest.timings.total,
        imagesPerSecond: manifest.imagesPerSecond,
        where: `the ${describeEngine(manifest.engine)}`,
      }),
      ...(manifest.labelQuality ? [`labels   ${labelSummary(manifest.labelQuality)}`] : []),
      ...Object.entries(result.outputs).map(([name, uri]) => `  ${name.padEnd(8)} ${uri}`),
      '',
    ].join('\n'),
  );
}

/**
 * SIGINT/SIGTERM stop the run after the current batch (completed shards are kept); a second one exits at once.
 * Work that does not stop by itself (a request that never ends) is abandoned a few seconds after the signal.
 */
async function withInterrupt<T>(work: (signal: AbortSignal) => Promise<T>, runId: string | undefined, io: CliIo): Promise<T> {
  const controller = new AbortController();
  // Every in-flight S3 request (16 uploads, 8 shard writes…) listens on this one signal: not a leak.
  setMaxListeners(0, controller.signal);
  const onSignal = (name: string) => {
    if (controller.signal.aborted) io.exit(ExitCode.Interrupted);
    io.err(`\norchard: ${name} received, stopping after the current batch${runId ? `; resume with --run-id ${runId}` : ''}\n`);
    controller.abort();
  };
  const handlers = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM') };
  process.on('SIGINT', handlers.SIGINT).on('SIGTERM', handlers.SIGTERM);
  try {
    return await interruptible(work(controller.signal), controller.signal, 2 * STOP_GRACE_MS + 500);
  } finally {
    process.off('SIGINT', handlers.SIGINT).off('SIGTERM', handlers.SIGTERM);
  }
}

function normalization(value: string): Normalization {
  if (value === '0,1') return UNIT_RANGE;
  if (value === '-1,1') return SIGNED_RANGE;
  throw new InvalidArgumentError('expected 0,1 or -1,1 for --normalize');
}

/** Where the CLI writes and how it exits: swapped in tests. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  exit(code: number): void;
  readonly isTty: boolean;
}

function defaultIo(): CliIo {
  return {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    exit: (code) => {
      process.exitCode = code;
      // Once a command has ended nothing else may keep the process (a request abandoned on an interrupt, or left
      // in flight by a fatal error): it ends now if idle, else in half a second.
      setTimeout(() => process.exit(code), 500).unref();
    },
    isTty: Boolean(process.stderr.isTTY),
  };
}

/** Entry point: parses argv, runs the command, maps every failure to a one-line message and an exit status. */
export async function main(argv: string[], io: CliIo = defaultIo()): Promise<void> {
  const program = buildProgram(process.env, io);
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end here too, with exit code 0.
      io.exit(error.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage);
      return;
    }
    // A full disk anywhere (a scratch file, sharp's cache) is the environment's, as in LocalStorage's writes.
    const errno = (error as NodeJS.ErrnoException | undefined)?.code;
    if (errno === 'ENOSPC' || errno === 'EDQUOT') error = noSpace((error as NodeJS.ErrnoException).path ?? 'a temporary file', error);
    // Errors that name their object and reason (a damaged JSON file, one that cannot be read) need no stack either.
    if (error instanceof OrchardError || error instanceof InvalidJsonError || error instanceof UnreadableObjectError || error instanceof NotFoundError) {
      io.err(`orchard: ${error.message}\n`);
      io.exit(error instanceof OrchardError ? error.exitCode : ExitCode.Fatal);
      return;
    }
    io.err(`orchard: unexpected error: ${describeError(error)}\n`);
    if (argv.includes('--debug') && error instanceof Error && error.stack) io.err(`${error.stack}\n`);
    else io.err('orchard: rerun with --debug for the stack trace, and please report it if the message does not say what to fix\n');
    io.exit(ExitCode.Fatal);
  }
}
