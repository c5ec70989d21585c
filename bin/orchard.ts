import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AwsSolutionsChecks } from 'cdk-nag';
import { OrchardComputeStack } from '../lib/compute-stack';
import { OrchardDataStack } from '../lib/data-stack';
import { buildRuntimeBundle } from '../lib/runtime-bundle';
import { STACK_NAMES } from '../runtime/contracts/deployment';

/** CloudFormation stack names: the trigger and upload commands find the outputs by these names. */
export { STACK_NAMES };

/** Context keys the app reads (cdk.json holds the defaults; `-c key=value` overrides them). */
export const CONTEXT = {
  /** EC2 instance type of the pipeline host, x86_64 or arm64 (default in cdk.json: c7i.xlarge, see pipeline-host.ts). */
  instanceType: 'orchard:instanceType',
  /** `true`: `cdk destroy` deletes the data bucket with its objects. Default false: the bucket is kept. */
  destroyData: 'orchard:destroyData',
} as const;

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
}

export interface OrchardApp {
  readonly app: App;
  readonly data: OrchardDataStack;
  readonly compute: OrchardComputeStack;
}

/**
 * The CDK app: the data stack and the compute stack, checked by cdk-nag's AwsSolutions pack at synthesis. The
 * stacks are environment-agnostic (no account or region at synth time, no lookups): `cdk synth` needs no
 * credentials, and `cdk deploy` deploys to the account and region of the caller's profile.
 */
export function createOrchardApp(options: OrchardAppOptions = {}): OrchardApp {
  // Under the CLI, its context (cdk.json and -c) takes precedence over these values anyway.
  const app = new App({ context: { ...cdkJsonContext(), ...options.context }, outdir: options.outdir });
  const instanceType = app.node.tryGetContext(CONTEXT.instanceType) as unknown;
  const destroyData = parseBoolean(app.node.tryGetContext(CONTEXT.destroyData), CONTEXT.destroyData);
  const runtimeDir = options.runtimeDir ?? buildRuntimeBundle();

  const data = new OrchardDataStack(app, STACK_NAMES.data, { destroyData });
  const compute = new OrchardComputeStack(app, STACK_NAMES.compute, {
    data: data.data,
    runtimeDir,
    instanceType: instanceType === undefined ? undefined : new ec2.InstanceType(parseString(instanceType, CONTEXT.instanceType)),
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, data, compute };
}

function parseBoolean(value: unknown, key: string): boolean {
  if (value === undefined || value === false || value === 'false') return false;
  if (value === true || value === 'true') return true;
  throw new Error(`expected true or false for context ${key} but got ${JSON.stringify(value)}`);
}

function parseString(value: unknown, key: string): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new Error(`expected an instance type such as c7i.xlarge for context ${key} but got ${JSON.stringify(value)}`);
  }
  return value.trim();
}

if (require.main === module) {
  createOrchardApp().app.synth();
}
