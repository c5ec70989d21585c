import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { Command, CommanderError } from 'commander';
import { main as orchard, type CliIo } from '../runtime/cli';
import { ExitCode, OrchardError, describeError } from '../runtime/errors';
import { OUTPUT, PREFIXES, STACKS, readStack, regionOf, requireOutput, type StackOutputs } from './stack-outputs';

/**
 * `npm run upload -- <dir> [s3-uri]`: `orchard upload`, with the destination defaulting to the deployed bucket's
 * images prefix (`s3://<BucketName>/images/`, BucketName read from the data stack's outputs, else the compute
 * stack's). The upload itself, its progress, summary and exit status are `orchard upload`'s (runtime/cli.ts).
 */

export interface UploadDeps {
  /** A CloudFormation client for a region (undefined: the SDK's default region chain). */
  cloudFormation(region: string | undefined): CloudFormationClient;
  readonly io: CliIo;
  readonly env: { readonly AWS_REGION?: string; readonly AWS_DEFAULT_REGION?: string };
}

interface UploadOptions {
  concurrency?: string;
  endpoint?: string;
  region?: string;
  quiet?: boolean;
  jsonLogs?: boolean;
  dataStack: string;
  stack: string;
}

function buildProgram(io: CliIo): Command {
  return new Command('upload')
    .description(
      'Upload a local image tree (Fruits-360 layout) to S3, skipping files already there unchanged. ' +
        `Without <s3-uri>, uploads to s3://<bucket>/${PREFIXES.images} of the deployed stacks (npx cdk deploy --all).`,
    )
    .usage('<dir> [s3-uri] [options]   (npm run upload -- <dir> [s3-uri] [options])')
    .argument('<dir>', 'local folder, e.g. ./fruits-360/Test')
    .argument('[s3-uri]', `destination (default: s3://<${OUTPUT.bucketName} output>/${PREFIXES.images})`)
    .option('--concurrency <n>', 'files uploaded at once (default 16)')
    .option('--endpoint <url>', 'S3-compatible endpoint (e.g. a local S3 server)')
    .option('--region <region>', "region of the stacks and the bucket (default: $AWS_REGION, else the profile's)")
    .option('--data-stack <name>', 'stack whose BucketName output names the bucket', STACKS.data)
    .option('--stack <name>', 'compute stack, asked when the data stack does not exist', STACKS.compute)
    .option('-q, --quiet', 'print warnings and the result only')
    .option('--json-logs', 'log one JSON object per line (no progress bar)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: (text) => io.out(text), writeErr: (text) => io.err(text) });
}

/** Parses argv (`node upload …`), resolves the destination and runs `orchard upload`; returns the exit status. */
export async function main(argv: string[], deps: UploadDeps = defaultDeps()): Promise<number> {
  const { io } = deps;
  const program = buildProgram(io);
  try {
    program.parse(argv);
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
    throw error;
  }
  const [dir, givenUri] = program.processedArgs as [string, string | undefined];
  const options = program.opts<UploadOptions>();
  let uri = givenUri;
  let region = options.region;
  if (uri === undefined) {
    try {
      const cfn = deps.cloudFormation(options.region ?? deps.env.AWS_REGION ?? deps.env.AWS_DEFAULT_REGION);
      const stack = await bucketStack(cfn, options.dataStack, options.stack);
      uri = `s3://${requireOutput(stack, OUTPUT.bucketName)}/${PREFIXES.images}`;
      if (stack.region !== '?') region ??= stack.region;
      if (!options.quiet) io.err(`destination ${uri} (output ${OUTPUT.bucketName} of stack ${stack.stackName} in ${stack.region})\n`);
    } catch (error) {
      io.err(`upload: ${error instanceof OrchardError ? error.message : `unexpected error: ${describeError(error)}`}\n`);
      return error instanceof OrchardError ? error.exitCode : ExitCode.Fatal;
    }
  }

  const forwarded = [
    ...(options.concurrency !== undefined ? ['--concurrency', options.concurrency] : []),
    ...(options.endpoint !== undefined ? ['--endpoint', options.endpoint] : []),
    ...(region !== undefined ? ['--region', region] : []),
    ...(options.quiet ? ['--quiet'] : []),
    ...(options.jsonLogs ? ['--json-logs'] : []),
  ];
  let code: number | undefined;
  await orchard(['node', 'orchard', 'upload', dir, uri, ...forwarded], {
    out: (text) => io.out(text),
    err: (text) => io.err(text),
    exit: (status) => {
      code ??= status;
    },
    isTty: io.isTty,
  });
  return code ?? ExitCode.Ok;
}

/** The data stack; the compute stack when the data stack does not exist (it exports the same BucketName). */
async function bucketStack(cfn: CloudFormationClient, dataStack: string, computeStack: string): Promise<StackOutputs> {
  try {
    return await readStack(cfn, dataStack);
  } catch (error) {
    if (!(error instanceof OrchardError && error.code === 'ERR_STACK_NOT_FOUND')) throw error;
    try {
      return await readStack(cfn, computeStack);
    } catch (computeError) {
      if (computeError instanceof OrchardError && computeError.code === 'ERR_STACK_NOT_FOUND') {
        throw new OrchardError(
          `Stacks ${dataStack} and ${computeStack} not found in ${await regionOf(cfn)}: run \`npx cdk deploy --all\` first, ` +
            'pass the region it was deployed to with --region, or give the destination as an s3:// URI',
          'ERR_STACK_NOT_FOUND',
          ExitCode.Fatal,
        );
      }
      throw computeError;
    }
  }
}

function defaultDeps(): UploadDeps {
  return {
    cloudFormation: (region) => new CloudFormationClient({ region }),
    io: {
      out: (text) => process.stdout.write(text),
      err: (text) => process.stderr.write(text),
      exit: (code) => {
        process.exitCode = code;
      },
      isTty: Boolean(process.stderr.isTTY),
    },
    env: process.env,
  };
}

if (require.main === module) {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  void main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
