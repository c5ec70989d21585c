import { Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/**
 * Acknowledges cdk-nag's AwsSolutions-IAM5 finding for one wildcard resource ARN, and only that one: the
 * finding id is computed from the ARN the way cdk-nag prints it (`Ref` → `<Name>`, `Fn::GetAtt` → `<Name.Attr>`,
 * `Fn::ImportValue` → the export name, joins concatenated), so a statement added later with another wildcard
 * resource is still reported. `scope` is the role (or policy) whose policy holds the statement.
 */
export function acknowledgeWildcardResource(scope: IConstruct, arn: string, reason: string): void {
  const finding = flattenReference(Stack.of(scope).resolve(arn));
  Validations.of(scope).acknowledge({ id: `AwsSolutions-IAM5[Resource::${finding}]`, reason });
}

/** Mirrors cdk-nag 3's flattenCfnReference (lib/utils/flatten-cfn-reference), which the package does not export. */
function flattenReference(node: unknown): string {
  if (node === undefined) return '';
  if (typeof node === 'string') return node.replace(/\${/g, '<').replace(/}/g, '>');
  const value = node as Record<string, unknown>;
  if (value['Fn::Join']) {
    const [delimiter, items] = value['Fn::Join'] as [string, unknown[]];
    return items.map(flattenReference).join(delimiter);
  }
  if (value['Fn::Sub']) return flattenReference(value['Fn::Sub']);
  if (value['Fn::GetAtt']) {
    const [resource, attribute] = value['Fn::GetAtt'] as [unknown, unknown];
    return `<${flattenReference(resource)}.${flattenReference(attribute)}>`;
  }
  if (value['Fn::ImportValue']) return flattenReference(value['Fn::ImportValue']);
  if (value.Ref) return `<${flattenReference(value.Ref)}>`;
  return JSON.stringify(node);
}
