import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CfnElement, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { type OrchardApp, createOrchardApp } from '../../bin/orchard';
import { buildLambdaBundle, type LambdaArch } from '../../lib/lambda-bundle';
import { buildRuntimeBundle } from '../../lib/runtime-bundle';

export interface SynthesizedOrchard extends OrchardApp {
  readonly runtimeDir: string;
  readonly outdir: string;
  readonly dataTemplate: Template;
  readonly computeTemplate: Template;
  readonly scaleTemplate: Template;
}

const folders: string[] = [];
afterAll(() => {
  for (const folder of folders.splice(0)) fs.rmSync(folder, { recursive: true, force: true });
});

/** A temporary folder, removed after the test file. */
export function scratchDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  folders.push(dir);
  return dir;
}

/** The real runtime bundle, built into a folder of this test file (jest workers must not share dist/runtime). */
export function buildBundle(): string {
  return buildRuntimeBundle(scratchDir('orchard-bundle-'));
}

/** The real Lambda bundle for `arch`, built into a folder of this test file. */
export function buildLambda(arch: LambdaArch = 'x64'): string {
  return buildLambdaBundle({ arch, outDir: path.join(scratchDir('orchard-lambda-'), `lambda-${arch}`) });
}

/** A stand-in for the bundle where only its identity matters (asset hash): one file with the given content. */
export function fakeBundle(content: string): string {
  const dir = scratchDir('orchard-fake-bundle-');
  fs.writeFileSync(path.join(dir, 'orchard.cjs'), content);
  return dir;
}

/** The app as `cdk synth` builds it (cdk.json's context, plus `context`), synthesized into a temporary folder. */
export function synthOrchard(options: { context?: Record<string, unknown>; runtimeDir?: string; lambdaDir?: string } = {}): SynthesizedOrchard {
  const runtimeDir = options.runtimeDir ?? buildBundle();
  const outdir = scratchDir('orchard-cdk-out-');
  // The Lambda code is a stand-in unless a test asks for the real one (the scale stack's tests do).
  const lambdaDir = options.lambdaDir ?? fakeBundle('lambda');
  // The model-fetch function's code is tested on its own (test/fetch-model.test.ts): a stand-in here.
  const orchard = createOrchardApp({ context: options.context, runtimeDir, lambdaDir, modelFetchDir: fakeBundle('model-fetch'), outdir });
  orchard.app.synth();
  return {
    ...orchard,
    runtimeDir,
    outdir,
    dataTemplate: Template.fromStack(orchard.data),
    computeTemplate: Template.fromStack(orchard.compute),
    scaleTemplate: Template.fromStack(orchard.scale),
  };
}

/** The logical ID of a construct's CloudFormation resource (an L2's default child, or the element itself). */
export function logicalId(construct: IConstruct): string {
  const element = CfnElement.isCfnElement(construct) ? construct : construct.node.defaultChild;
  if (!element || !CfnElement.isCfnElement(element)) throw new Error(`${construct.node.path} has no CloudFormation resource`);
  return Stack.of(construct).resolve((element as CfnElement).logicalId) as string;
}

/**
 * A template value as readable text: `{Ref: X}` → `<X>`, `Fn::GetAtt` → `<X.Attr>`, `Fn::ImportValue` → its
 * name, `${X}` in `Fn::Sub` → `<X>`, joins concatenated (as cdk-nag names findings, without its brace mangling).
 */
export function flat(value: unknown): string {
  if (typeof value === 'string') return value;
  const node = value as Record<string, any>;
  if (node['Fn::Join']) return (node['Fn::Join'][1] as unknown[]).map(flat).join(node['Fn::Join'][0]);
  if (node['Fn::Sub']) return (node['Fn::Sub'] as string).replace(/\$\{([^}]+)\}/g, '<$1>');
  if (node['Fn::GetAtt']) return `<${node['Fn::GetAtt'][0]}.${node['Fn::GetAtt'][1]}>`;
  if (node['Fn::ImportValue']) return flat(node['Fn::ImportValue']);
  if (node['Fn::Select']) {
    const [index, list] = node['Fn::Select'] as [number, Record<string, any>];
    if (list['Fn::Split']) return `select(${index}, split("${list['Fn::Split'][0]}", ${flat(list['Fn::Split'][1])}))`;
  }
  if (node.Ref) return `<${node.Ref}>`;
  throw new Error(`cannot flatten ${JSON.stringify(value)}`);
}

/** One resource of a template by logical ID. */
export function resource(template: Template, id: string): { Type: string; Properties?: any; [key: string]: any } {
  const found = template.toJSON().Resources?.[id];
  if (!found) throw new Error(`no resource ${id} in the template`);
  return found;
}
