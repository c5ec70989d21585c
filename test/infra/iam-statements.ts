import type { Template } from 'aws-cdk-lib/assertions';
import { flat } from './app';

/** Template values as the docs show them: logical ids without their hash suffix, asset hashes elided. */
function readable(value: unknown): string {
  return flat(value)
    .replace(/\b([A-Za-z0-9]+?)[0-9A-F]{8}\b/g, '$1')
    .replace(/[0-9a-f]{64}(\.zip)?/g, '<asset hash>$1')
    .replace(/select\(6, split\(":", <(\w+)>\)\)/g, '<$1.Name>');
}

function statementLine(statement: Record<string, any>): string {
  const actions = ([statement.Action].flat() as string[]).sort().join(', ');
  const resources = [statement.Resource].flat().map(readable).join(', ');
  const condition = statement.Condition ? ` if \`${JSON.stringify(statement.Condition)}\`` : '';
  return `- ${statement.Effect === 'Deny' ? 'DENY ' : ''}\`${actions}\` on \`${resources}\`${condition}`;
}

/**
 * Every IAM role of the synthesized stacks with every statement it is given (inline policies, attached policies,
 * managed policies), as the Markdown list docs/aws.md holds: the docs' Security section is generated from the
 * templates, and test/infra/iam-doc.test.ts fails when they differ.
 */
export function iamStatementsMarkdown(stacks: readonly { name: string; template: Template }[]): string {
  const out: string[] = [];
  for (const { name, template } of stacks) {
    const json = template.toJSON() as { Resources: Record<string, any> };
    const roles = Object.entries(json.Resources).filter(([, r]) => r.Type === 'AWS::IAM::Role');
    for (const [id, role] of roles) {
      const path = (role.Metadata?.['aws:cdk:path'] as string | undefined)?.replace(/\/Resource$/, '') ?? `${name}/${readable(id)}`;
      const services = (role.Properties.AssumeRolePolicyDocument.Statement as any[]).flatMap((s) => [s.Principal?.Service].flat()).filter(Boolean);
      out.push(`**${path}** (assumed by ${services.join(', ')})`, '');
      const managed = (role.Properties.ManagedPolicyArns ?? []) as unknown[];
      for (const arn of managed) out.push(`- managed policy \`${readable(arn)}\``);
      const inline = ((role.Properties.Policies ?? []) as any[]).flatMap((p) => p.PolicyDocument.Statement as any[]);
      const attached = Object.values(json.Resources)
        .filter((r) => r.Type === 'AWS::IAM::Policy' && (r.Properties.Roles as unknown[]).some((ref) => flat(ref) === `<${id}>`))
        .flatMap((p) => p.Properties.PolicyDocument.Statement as any[]);
      for (const statement of [...inline, ...attached]) out.push(statementLine(statement));
      out.push('');
    }
  }
  return out.join('\n').trim();
}
