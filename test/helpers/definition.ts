import type { Template } from 'aws-cdk-lib/assertions';
import { flat } from '../infra/app';

/**
 * The state machine definition of a synthesized template, parsed: its DefinitionString is a Fn::Join of JSON
 * text and references, which are read as `<LogicalId.Attr>` placeholders (inside JSON strings, so it parses).
 */
export function definitionOf(template: Template): Record<string, any> {
  return JSON.parse(definitionText(template)) as Record<string, any>;
}

/**
 * The same with the references replaced by ARNs of the shape the service would see (partition `aws`, a
 * function's ARN for `<Function.Arn>`): what an ASL validator checks.
 */
export function deployedDefinitionOf(template: Template): Record<string, any> {
  const text = definitionText(template)
    .replace(/<AWS::Partition>/g, 'aws')
    .replace(/<([A-Za-z0-9]+)\.Arn>/g, (_match, id: string) => `arn:aws:lambda:eu-west-1:123456789012:function:${id}`);
  return JSON.parse(text) as Record<string, any>;
}

function definitionText(template: Template): string {
  const machines = Object.values(template.findResources('AWS::StepFunctions::StateMachine'));
  if (machines.length !== 1) throw new Error(`expected one state machine in the template, found ${machines.length}`);
  return flat(machines[0]!.Properties.DefinitionString);
}
