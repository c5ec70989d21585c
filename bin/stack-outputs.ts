import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { ExitCode, OrchardError, describeError } from '../runtime/errors';

import { BUCKET_PREFIXES, STACK_NAMES, STACK_OUTPUTS } from '../runtime/contracts/deployment';

/** CloudFormation stack names of the app; `--stack` / `--data-stack` override them. */
export const STACKS = STACK_NAMES;
/** Output keys the stacks declare (CfnOutput ids): the contract between the stacks and the scripts in bin/. */
export const OUTPUT = STACK_OUTPUTS;
/** Bucket prefixes the stacks grant and the SSM document defaults to. */
export const PREFIXES = BUCKET_PREFIXES;

/** A deployed stack's outputs by key, with what is needed to explain a missing one. */
export interface StackOutputs {
  readonly stackName: string;
  readonly region: string;
  /** E.g. CREATE_COMPLETE, UPDATE_ROLLBACK_COMPLETE. */
  readonly status: string;
  readonly outputs: Readonly<Record<string, string>>;
}

/**
 * Reads the outputs of a deployed stack (DescribeStacks). A stack that does not exist, or exists in no usable
 * state, is an OrchardError that says to deploy first, naming the stack and the region asked.
 */
export async function readStack(cfn: CloudFormationClient, stackName: string): Promise<StackOutputs> {
  const region = await regionOf(cfn);
  let stack;
  try {
    const result = await cfn.send(new DescribeStacksCommand({ StackName: stackName }));
    stack = result.Stacks?.[0];
  } catch (error) {
    if (isMissingStack(error)) throw stackNotFound(stackName, region);
    throw new OrchardError(
      `Cannot read stack ${stackName}${region === '?' ? '' : ` in ${region}`}: ${describeError(error)}${setupHint(error)}`,
      'ERR_STACK_UNREADABLE',
      ExitCode.Fatal,
      { cause: error },
    );
  }
  // DescribeStacks by name never returns deleted stacks, but be explicit about it.
  if (!stack || stack.StackStatus === 'DELETE_COMPLETE') throw stackNotFound(stackName, region);
  const outputs: Record<string, string> = {};
  for (const output of stack.Outputs ?? []) {
    if (output.OutputKey && output.OutputValue !== undefined) outputs[output.OutputKey] = output.OutputValue;
  }
  return { stackName, region, status: stack.StackStatus ?? 'UNKNOWN', outputs };
}

/** The outputs of a deployed stack by key (see readStack). */
export async function readStackOutputs(cfn: CloudFormationClient, stackName: string): Promise<Record<string, string>> {
  return { ...(await readStack(cfn, stackName)).outputs };
}

/** One output of a stack; its absence is an OrchardError naming the stack, its status and the output key. */
export function requireOutput(stack: StackOutputs, key: string): string {
  const value = stack.outputs[key];
  if (value !== undefined && value !== '') return value;
  const settled = /_COMPLETE$/.test(stack.status) && !/ROLLBACK|DELETE/.test(stack.status);
  throw new OrchardError(
    `Stack ${stack.stackName} in ${stack.region} has no output ${key} (stack status ${stack.status}): ` +
      (settled
        ? 'it was deployed from another version of this app; run `npx cdk deploy --all` again'
        : 'wait for the stack to settle, or run `npx cdk deploy --all` again'),
    'ERR_STACK_OUTPUT_MISSING',
    ExitCode.Fatal,
  );
}

function stackNotFound(stackName: string, region: string): OrchardError {
  return new OrchardError(
    `Stack ${stackName} not found in ${region}: run \`npx cdk deploy --all\` first (or pass the region it was deployed to with --region)`,
    'ERR_STACK_NOT_FOUND',
    ExitCode.Fatal,
  );
}

/** What to do about the errors of a machine not set up for AWS yet. */
function setupHint(error: unknown): string {
  const { name, message } = (error ?? {}) as { name?: unknown; message?: unknown };
  if (name === 'CredentialsProviderError') return ' (set AWS_PROFILE, or run `aws configure` / `aws sso login`)';
  if (typeof message === 'string' && /region is missing/i.test(message)) return ' (pass --region or set AWS_REGION)';
  return '';
}

/** CloudFormation answers a missing stack with a ValidationError "Stack with id X does not exist". */
function isMissingStack(error: unknown): boolean {
  const { name, message } = (error ?? {}) as { name?: unknown; message?: unknown };
  return name === 'ValidationError' && typeof message === 'string' && /does not exist/i.test(message);
}

/** The region a client talks to, for messages (`?` when it cannot be resolved, e.g. none configured). */
export async function regionOf(client: { config: { region: unknown } }): Promise<string> {
  try {
    const region = client.config.region;
    const value = typeof region === 'function' ? await (region as () => Promise<string>)() : region;
    return typeof value === 'string' && value !== '' ? value : '?';
  } catch {
    return '?';
  }
}
