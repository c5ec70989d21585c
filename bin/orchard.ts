import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Size, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { OrchardComputeStack } from '../lib/compute-stack';
import { OrchardDataStack } from '../lib/data-stack';
import { buildLambdaBundle, buildModelFetchBundle, type LambdaArch } from '../lib/lambda-bundle';
import { buildRuntimeBundle } from '../lib/runtime-bundle';
import { OrchardScaleStack } from '../lib/scale-stack';
import { STACK_NAMES } from '../runtime/contracts/deployment';

/** CloudFormation stack names: the trigger and upload commands find the outputs by these names. */
export { STACK_NAMES };

/** Context keys the app reads (cdk.json holds the defaults; `-c key=value` overrides them). */
export const CONTEXT = {
  /** EC2 instance type of the pipeline host, x86_64 or arm64 (default in cdk.json: c7i.xlarge, see pipeline-host.ts). */
  instanceType: 'orchard:instanceType',
  /**
   * Availability Zone of the pipeline host, one that offers its instance type (e.g. us-east-1b). Unset: the region's
   * first zone, with a note at synth (orchard synthesizes without an account, so it cannot look the offerings up).
   */
  availabilityZone: 'orchard:availabilityZone',
  /** `true`: `cdk destroy` deletes the data bucket with its objects. Default false: the bucket is kept. */
  destroyData: 'orchard:destroyData',
  /** CPU of the scale path's Lambda functions: x86_64 (default in cdk.json) or arm64. */
  lambdaArchitecture: 'orchard:lambdaArchitecture',
  /** Distributed map concurrency of the scale path when an execution does not set it (default in cdk.json: 8). */
  scaleConcurrency: 'orchard:scaleConcurrency',
  /** Memory of the scale path's Lambda functions in MB, 128 to 10240 (default in cdk.json: 3008, what every account accepts). */
  lambdaMemory: 'orchard:lambdaMemory',
} as const;

/** The Lambda architectures, and the CPU name of their native binaries. */
const LAMBDA_ARCHITECTURES: Readonly<Record<string, { architecture: lambda.Architecture; arch: LambdaArch }>> = {
  x86_64: { architecture: lambda.Architecture.X86_64, arch: 'x64' },
  arm64: { architecture: lambda.Architecture.ARM_64, arch: 'arm64' },
};

const CDK_JSON = path.resolve(__dirname, '..', 'cdk.json');

/**
 * The context of cdk.json: the orchard defaults and the CDK feature flags the stacks are written for (e.g.
 * server access logs delivered through a bucket policy). The CLI passes it to the app; an app built elsewhere (a
 * test) starts from it too, so that it is the app `cdk synth` builds.
 */
export function cdkJsonContext(): Record<string, unknown> {
  return (JSON.parse(fs.readFileSync(CDK_JSON, 'utf8')) as { context?: Record<string, unknown> }).context ?? {};
}

export interface OrchardAppOptions {
  /** Context values on top of cdk.json's, as `-c key=value` would give them (tests pass them here). */
  readonly context?: Record<string, unknown>;
  /** Cloud assembly folder. @default cdk.out when run by the CDK CLI, a temporary folder otherwise */
  readonly outdir?: string;
  /** A runtime bundle already built. @default built now into dist/runtime */
  readonly runtimeDir?: string;
  /** A Lambda bundle already built for the architecture in the context. @default built now into dist/lambda-<arch> */
  readonly lambdaDir?: string;
  /** The model-fetch function's bundle. @default built now into dist/model-fetch */
  readonly modelFetchDir?: string;
}

export interface OrchardApp {
  readonly app: App;
  readonly data: OrchardDataStack;
  readonly compute: OrchardComputeStack;
  readonly scale: OrchardScaleStack;
}

/**
 * The CDK app: the data stack, the compute stack (the instance) and the scale stack (Lambda + Step Functions), checked by cdk-nag's AwsSolutions pack at synthesis. The
 * stacks are environment-agnostic (no account or region at synth time, no lookups): `cdk synth` needs no
 * credentials, and `cdk deploy` deploys to the account and region of the caller's profile.
 */
export function createOrchardApp(options: OrchardAppOptions = {}): OrchardApp {
  // Under the CLI, its context (cdk.json and -c) takes precedence over these values anyway.
  const app = new App({ context: { ...cdkJsonContext(), ...options.context }, outdir: options.outdir });
  const instanceType = app.node.tryGetContext(CONTEXT.instanceType) as unknown;
  const zone = app.node.tryGetContext(CONTEXT.availabilityZone) as unknown;
  const destroyData = parseBoolean(app.node.tryGetContext(CONTEXT.destroyData), CONTEXT.destroyData);
  const runtimeDir = options.runtimeDir ?? buildRuntimeBundle();
  const lambdaChoice = LAMBDA_ARCHITECTURES[parseString(app.node.tryGetContext(CONTEXT.lambdaArchitecture) ?? 'x86_64', CONTEXT.lambdaArchitecture, 'x86_64 or arm64')];
  if (!lambdaChoice) throw new Error(`expected x86_64 or arm64 for context ${CONTEXT.lambdaArchitecture} but got ${JSON.stringify(app.node.tryGetContext(CONTEXT.lambdaArchitecture))}`);
  const scaleConcurrency = parsePositiveInt(app.node.tryGetContext(CONTEXT.scaleConcurrency), CONTEXT.scaleConcurrency);
  const lambdaMemory = parsePositiveInt(app.node.tryGetContext(CONTEXT.lambdaMemory), CONTEXT.lambdaMemory, 128, 10_240);

  const data = new OrchardDataStack(app, STACK_NAMES.data, { destroyData, modelFetchDir: options.modelFetchDir ?? buildModelFetchBundle() });
  const compute = new OrchardComputeStack(app, STACK_NAMES.compute, {
    data: data.data,
    runtimeDir,
    instanceType: instanceType === undefined ? undefined : new ec2.InstanceType(parseString(instanceType, CONTEXT.instanceType)),
    availabilityZone: zone === undefined ? undefined : parseString(zone, CONTEXT.availabilityZone, 'an Availability Zone such as us-east-1b'),
  });
  const scale = new OrchardScaleStack(app, STACK_NAMES.scale, {
    data: data.data,
    lambdaCodeDir: options.lambdaDir ?? buildLambdaBundle({ arch: lambdaChoice.arch }),
    architecture: lambdaChoice.architecture,
    maxConcurrency: scaleConcurrency,
    lambdaMemory: lambdaMemory === undefined ? undefined : Size.mebibytes(lambdaMemory),
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, data, compute, scale };
}

function parseBoolean(value: unknown, key: string): boolean {
  if (value === undefined || value === false || value === 'false') return false;
  if (value === true || value === 'true') return true;
  throw new Error(`expected true or false for context ${key} but got ${JSON.stringify(value)}`);
}

function parseString(value: unknown, key: string, expected = 'an instance type such as c7i.xlarge'): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new Error(`expected ${expected} for context ${key} but got ${JSON.stringify(value)}`);
  }
  return value.trim();
}

function parsePositiveInt(value: unknown, key: string, min = 1, max = 10_000): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new Error(`expected a whole number from ${min} to ${max} for context ${key} but got ${JSON.stringify(value)}`);
  }
  return n;
}

if (require.main === module) {
  createOrchardApp().app.synth();
}
