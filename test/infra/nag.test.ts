import * as fs from 'node:fs';
import * as path from 'node:path';
import { type PolicyViolation, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { type SynthesizedOrchard, buildBundle, synthOrchard } from './app';

let orchard: SynthesizedOrchard;
let destroyable: SynthesizedOrchard;

beforeAll(() => {
  const bundle = buildBundle();
  orchard = synthOrchard({ runtimeDir: bundle });
  destroyable = synthOrchard({ runtimeDir: bundle, context: { 'orchard:destroyData': true } });
});

/** cdk-nag 3's own report for the whole app, as `cdk synth` runs it (Validations plugin). */
function findings(app: IConstruct): string[] {
  return listed(new AwsSolutionsChecks().validateScope(app).violations);
}

/** What the pack would report if nothing were acknowledged: the findings each acknowledgment silences. */
function findingsWithoutAcknowledgments(app: IConstruct): PolicyViolation[] {
  const checks = new AwsSolutionsChecks();
  // Test-only: cdk-nag's private acknowledgment lookup, switched off to see every raw finding.
  (checks as unknown as { isAcknowledged: () => boolean }).isAcknowledged = () => false;
  return checks.validateScope(app).violations;
}

function listed(violations: readonly PolicyViolation[]): string[] {
  return violations.flatMap((violation) =>
    violation.violatingResources.map((where) => `${violation.ruleName} at ${where.constructPath ?? where.resourceLogicalId}`),
  );
}

interface Acknowledgment {
  readonly path: string;
  readonly id: string;
  readonly reason: string;
}

/** The AwsSolutions acknowledgments recorded anywhere in the app (Validations.of(x).acknowledge). */
function acknowledgments(app: IConstruct): Acknowledgment[] {
  return app.node.findAll().flatMap((construct) =>
    construct.node.metadata
      .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((entry) => Object.entries(entry.data as Record<string, string>))
      .map(([id, reason]) => ({ path: construct.node.path, id: id.replace(/^annotation::/i, ''), reason }))
      .filter((ack) => ack.id.startsWith('AwsSolutions-')),
  );
}

test('AwsSolutions reports no unacknowledged finding in any of the three stacks', () => {
  expect(findings(orchard.app)).toEqual([]);
});

test('AwsSolutions reports no unacknowledged finding with orchard:destroyData=true either', () => {
  expect(findings(destroyable.app)).toEqual([]);
});

test('cdk synth writes a validation report without any violation', () => {
  const report = JSON.parse(fs.readFileSync(path.join(orchard.outdir, 'validation-report.json'), 'utf8')) as {
    pluginReports: { violations?: unknown[] }[];
  };
  expect(report.pluginReports.flatMap((plugin) => plugin.violations ?? [])).toEqual([]);
});

test('acknowledges exactly these findings, each on the construct it concerns', () => {
  expect(acknowledgments(orchard.app).map(({ path: where, id }) => `${id} at ${where}`)).toEqual([
    'AwsSolutions-L1 at OrchardData/Model/Function',
    'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*] at OrchardCompute/Host/Role',
    'AwsSolutions-IAM5[Resource::*] at OrchardCompute/Host/Role',
    'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::OrchardData-BucketName/images/*] at OrchardCompute/Host/Role',
    'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::OrchardData-BucketName/results/*] at OrchardCompute/Host/Role',
    'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::OrchardData-BucketName/models/*] at OrchardCompute/Host/Role',
    'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:*] at OrchardCompute/Host/Role',
    'AwsSolutions-EC28 at OrchardCompute/Host/Instance',
    'AwsSolutions-EC29 at OrchardCompute/Host/Instance',
    'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::OrchardData-BucketName/images/*] at OrchardScale/Stages/Role',
    'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::OrchardData-BucketName/results/*] at OrchardScale/Stages/Role',
    'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::OrchardData-BucketName/models/*] at OrchardScale/Stages/Role',
    'AwsSolutions-L1 at OrchardScale/Stages/Function',
    'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::OrchardData-BucketName/results/*] at OrchardScale/Workflow/StateMachine/Role',
    'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::OrchardData-BucketName/map-results/*] at OrchardScale/Workflow/StateMachine/Role',
    'AwsSolutions-IAM5[Resource::<StagesFunction4C0CA900.Arn>:*] at OrchardScale/Workflow/StateMachine/Role',
    'AwsSolutions-IAM5[Resource::*] at OrchardScale/Workflow/StateMachine/Role',
    ...['', '/Extract', '/Project'].map(
      (label) =>
        `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"WorkflowStateMachine8F1B1C15"}]}]}${label}:*] at OrchardScale/Workflow/StateMachine/DistributedMapPolicy`,
    ),
  ]);
});

test('every acknowledgment silences a finding the pack really reports (none is stale or broader than it)', () => {
  const raw = findingsWithoutAcknowledgments(orchard.app);
  for (const ack of acknowledgments(orchard.app)) {
    const silenced = raw
      .filter((violation) => violation.ruleName === ack.id)
      .flatMap((violation) => violation.violatingResources)
      .filter((where) => where.constructPath === ack.path || where.constructPath?.startsWith(`${ack.path}/`));
    expect({ ack: ack.id, silenced: silenced.length > 0 }).toEqual({ ack: ack.id, silenced: true });
  }
});

test('acknowledges wildcard permissions one resource at a time, never a whole rule', () => {
  const iam5 = acknowledgments(orchard.app).filter((ack) => ack.id.startsWith('AwsSolutions-IAM5'));
  expect(iam5.filter((ack) => !/^AwsSolutions-IAM5\[Resource::.+\]$/.test(ack.id))).toEqual([]);
});

test('acknowledges no wildcard action', () => {
  expect(acknowledgments(orchard.app).filter((ack) => ack.id.includes('[Action::'))).toEqual([]);
});

test('gives every acknowledgment a reason a reviewer can check (a full sentence or more)', () => {
  const short = acknowledgments(orchard.app).filter((ack) => ack.reason.length < 100 || !/[.:]/.test(ack.reason));
  expect(short).toEqual([]);
});
