import * as fs from 'node:fs';
import * as path from 'node:path';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { CONTEXT, createOrchardApp } from '../../bin/orchard';
import { OUTPUT, STACKS } from '../../bin/stack-outputs';
import { PREFIXES } from '../../lib/constructs/data-bucket';
import { INSTALL_DIR } from '../../lib/constructs/pipeline-host';
import { type SynthesizedOrchard, fakeBundle, flat, logicalId, resource, scratchDir, synthOrchard } from './app';

let orchard: SynthesizedOrchard;
let template: Template;
let instanceId: string;

beforeAll(() => {
  orchard = synthOrchard();
  template = orchard.computeTemplate;
  instanceId = logicalId(orchard.compute.host.instance);
});

const instance = () => resource(template, instanceId);
const userData = () => flat(instance().Properties.UserData['Fn::Base64']);
const cfnInit = () => instance().Metadata['AWS::CloudFormation::Init'].config;
const BUCKET_ARN = 'arn:<AWS::Partition>:s3:::OrchardData-BucketName';

/** A compute stack with a stand-in bundle and extra context: for facts that need another app. */
function computeWith(context: Record<string, unknown>, bundle = fakeBundle('compute')) {
  const app = createOrchardApp({ lambdaDir: fakeBundle('lambda'), modelFetchDir: fakeBundle('model-fetch'), context, runtimeDir: bundle, outdir: scratchDir('orchard-cdk-out-') });
  return { app, template: Template.fromStack(app.compute) };
}

describe('security group', () => {
  test('has no ingress rule', () => {
    const groups = Object.values(template.findResources('AWS::EC2::SecurityGroup'));
    expect(groups).toHaveLength(1);
    expect(groups[0].Properties.SecurityGroupIngress).toBeUndefined();
    template.resourceCountIs('AWS::EC2::SecurityGroupIngress', 0);
  });

  test('allows outbound TCP 443 only, and nothing else out', () => {
    const [group] = Object.values(template.findResources('AWS::EC2::SecurityGroup'));
    const rules = (group.Properties.SecurityGroupEgress as any[]).map(({ Description: _description, ...rule }) => rule);
    expect(rules).toEqual([{ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 443, ToPort: 443 }]);
    template.resourceCountIs('AWS::EC2::SecurityGroupEgress', 0);
  });

  test('is the only security group of the instance', () => {
    expect(instance().Properties.NetworkInterfaces[0].GroupSet).toEqual([
      { 'Fn::GetAtt': [logicalId(orchard.compute.host.securityGroup), 'GroupId'] },
    ]);
  });

  test('strips the rules of the VPC default security group', () => {
    template.resourceCountIs('Custom::VpcRestrictDefaultSG', 1);
  });
});

describe('network', () => {
  test('has public subnets only', () => {
    const vpc = orchard.compute.host.vpc;
    expect([vpc.publicSubnets.length, vpc.privateSubnets.length, vpc.isolatedSubnets.length]).toEqual([2, 0, 0]);
  });

  test('has no NAT gateway', () => {
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
  });

  test('gives no subnet automatic public IPs (only the instance asks for one)', () => {
    for (const subnet of Object.values(template.findResources('AWS::EC2::Subnet'))) {
      expect(subnet.Properties.MapPublicIpOnLaunch).toBe(false);
    }
  });

  test('routes S3 traffic through a gateway endpoint', () => {
    template.hasResourceProperties('AWS::EC2::VPCEndpoint', {
      VpcEndpointType: 'Gateway',
      ServiceName: { 'Fn::Join': ['', ['com.amazonaws.', { Ref: 'AWS::Region' }, '.s3']] },
    });
  });

  test('logs all VPC traffic to a log group kept three months', () => {
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'ALL', LogDestinationType: 'cloud-watch-logs' });
    const flowLogGroup = template.findResources('AWS::EC2::FlowLog');
    const groupId = Object.values(flowLogGroup)[0].Properties.LogGroupName.Ref as string;
    expect(resource(template, groupId).Properties.RetentionInDays).toBe(90);
  });
});

describe('instance', () => {
  test('runs the latest Amazon Linux 2023 for x86_64, resolved at deploy time (no lookup at synth)', () => {
    const parameterId = instance().Properties.ImageId.Ref as string;
    expect(template.toJSON().Parameters[parameterId]).toMatchObject({
      Type: 'AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>',
      Default: expect.stringMatching(/^\/aws\/service\/ami-amazon-linux-latest\/al2023-ami-kernel-[^/]+-x86_64$/),
    });
  });

  test('is a c7i.xlarge by default (cdk.json)', () => {
    expect(instance().Properties.InstanceType).toBe('c7i.xlarge');
  });

  test('takes its type from the orchard:instanceType context', () => {
    computeWith({ [CONTEXT.instanceType]: 'm7i.2xlarge' }).template.hasResourceProperties('AWS::EC2::Instance', { InstanceType: 'm7i.2xlarge' });
  });

  test('goes to the Availability Zone of orchard:availabilityZone, in the VPC\'s one subnet there', () => {
    const zoned = computeWith({ [CONTEXT.availabilityZone]: 'us-east-1d' }).template;
    const subnets = Object.values(zoned.findResources('AWS::EC2::Subnet'));
    expect(subnets.map((subnet) => subnet.Properties.AvailabilityZone)).toEqual(['us-east-1d']);
    const [zonedInstance] = Object.values(zoned.findResources('AWS::EC2::Instance'));
    expect(zonedInstance!.Properties.AvailabilityZone).toBe('us-east-1d');
  });

  test('says at synth, without orchard:availabilityZone, that the first zone may not offer the type and how to choose', () => {
    const { app } = computeWith({});
    const notes = Annotations.fromStack(app.compute).findInfo('*', Match.stringLikeRegexp('orchard:availabilityZone'));
    expect(notes).toHaveLength(1);
    expect(notes[0]!.entry.data).toContain('describe-instance-type-offerings --location-type availability-zone --filters Name=instance-type,Values=c7i.xlarge');
    expect(() => computeWith({ [CONTEXT.availabilityZone]: 'first one' })).toThrow('expected an Availability Zone name such as us-east-1b for the pipeline host but got "first one"');
  });

  test('runs a Graviton (arm64) instance type on the arm64 Amazon Linux 2023 image', () => {
    const arm = computeWith({ [CONTEXT.instanceType]: 'c7g.xlarge' }).template;
    const [armInstance] = Object.values(arm.findResources('AWS::EC2::Instance'));
    expect(armInstance!.Properties.InstanceType).toBe('c7g.xlarge');
    const parameterId = armInstance!.Properties.ImageId.Ref as string;
    expect(arm.toJSON().Parameters[parameterId].Default).toMatch(/^\/aws\/service\/ami-amazon-linux-latest\/al2023-ami-kernel-[^/]+-arm64$/);
  });

  test('requires IMDSv2 through its launch template', () => {
    const templates = template.findResources('AWS::EC2::LaunchTemplate');
    const [[templateId, launchTemplate]] = Object.entries(templates);
    expect(launchTemplate.Properties.LaunchTemplateData.MetadataOptions).toEqual({ HttpTokens: 'required' });
    expect(instance().Properties.LaunchTemplate).toEqual({
      LaunchTemplateName: launchTemplate.Properties.LaunchTemplateName,
      Version: { 'Fn::GetAtt': [templateId, 'LatestVersionNumber'] },
    });
  });

  test('has an encrypted 30 GiB gp3 root volume, deleted with the instance', () => {
    expect(instance().Properties.BlockDeviceMappings).toEqual([
      { DeviceName: '/dev/xvda', Ebs: { Encrypted: true, VolumeSize: 30, VolumeType: 'gp3', DeleteOnTermination: true } },
    ]);
  });

  test('has a public IPv4 address (outbound only: no NAT gateway) in a public subnet', () => {
    const [nic] = instance().Properties.NetworkInterfaces;
    expect(nic.AssociatePublicIpAddress).toBe(true);
    const publicSubnetIds = orchard.compute.host.vpc.publicSubnets.map((subnet) => logicalId(subnet));
    expect(publicSubnetIds).toContain(nic.SubnetId.Ref);
  });

  test('has no SSH key pair', () => {
    expect(instance().Properties.KeyName).toBeUndefined();
  });

  test('stops, rather than terminates, when its OS shuts down', () => {
    expect(instance().Properties.InstanceInitiatedShutdownBehavior).toBe('stop');
  });

  test('waits for one success signal from the bootstrap, for at most 30 minutes', () => {
    expect(instance().CreationPolicy).toEqual({ ResourceSignal: { Count: 1, Timeout: 'PT30M' } });
  });

  test('is created after its role policy, so that the bootstrap has its permissions', () => {
    expect(instance().DependsOn).toContain(logicalId(orchard.compute.host.role.node.findChild('DefaultPolicy')));
  });

  test('is replaced when the runtime bundle changes, so that the new runtime is installed', () => {
    const first = computeWith({}, fakeBundle('runtime v1'));
    const second = computeWith({}, fakeBundle('runtime v2'));
    expect(logicalId(first.app.compute.host.instance)).not.toEqual(logicalId(second.app.compute.host.instance));
  });

  test('keeps its logical ID when the runtime bundle is rebuilt unchanged', () => {
    const first = computeWith({}, fakeBundle('same runtime'));
    const second = computeWith({}, fakeBundle('same runtime'));
    expect(logicalId(first.app.compute.host.instance)).toEqual(logicalId(second.app.compute.host.instance));
  });
});

describe('bootstrap (cfn-init)', () => {
  test('unpacks the runtime bundle asset, and only it, into /opt/orchard', () => {
    const assetKey = orchard.compute.resolve(orchard.compute.host.runtimeAsset.s3ObjectKey) as string;
    expect(Object.keys(cfnInit().sources)).toEqual([INSTALL_DIR]);
    expect(flat(cfnInit().sources[INSTALL_DIR])).toBe(
      `https://s3.<AWS::Region>.<AWS::URLSuffix>/cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/${assetKey}`,
    );
  });

  test('ships as that asset the bundle, its package.json and the instance scripts', () => {
    const staged = path.join(orchard.outdir, `asset.${orchard.compute.host.runtimeAsset.assetHash}`);
    expect(fs.readdirSync(staged)).toEqual(expect.arrayContaining(['orchard.cjs', 'package.json', 'bootstrap.sh', 'run-pipeline.sh']));
  });

  test('then runs bootstrap.sh with the bucket name and the region, without a shell', () => {
    expect(Object.keys(cfnInit().commands)).toEqual(['10-bootstrap']);
    const command = cfnInit().commands['10-bootstrap'];
    expect(command.command.map(flat)).toEqual(['/bin/bash', `${INSTALL_DIR}/bootstrap.sh`, 'OrchardData-BucketName', '<AWS::Region>']);
    expect(command.cwd).toBe(INSTALL_DIR);
  });

  test('leaves the environment of bootstrap.sh alone (a cfn-init env would replace PATH too)', () => {
    expect(cfnInit().commands['10-bootstrap'].env).toBeUndefined();
  });

  test('downloads the bundle with the instance role, from the CDK assets bucket only', () => {
    expect(instance().Metadata['AWS::CloudFormation::Authentication']).toEqual({
      S3AccessCreds: {
        type: 'S3',
        roleName: { Ref: logicalId(orchard.compute.host.role) },
        buckets: [{ 'Fn::Sub': 'cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}' }],
      },
    });
  });
});

describe('user data', () => {
  test('installs aws-cfn-bootstrap before it runs cfn-init', () => {
    const text = userData();
    const install = text.indexOf('dnf install -y aws-cfn-bootstrap');
    expect(install).toBeGreaterThan(-1);
    expect(install).toBeLessThan(text.indexOf('/opt/aws/bin/cfn-init'));
  });

  test('runs cfn-init on this instance and signals its exit status to CloudFormation', () => {
    const lines = userData().split('\n').map((line) => line.trim());
    const init = lines.findIndex((line) => line.startsWith('/opt/aws/bin/cfn-init'));
    expect(lines[init]).toBe(`/opt/aws/bin/cfn-init -v --region <AWS::Region> --stack <AWS::StackName> --resource ${instanceId} -c default`);
    expect(lines[init + 1]).toBe(`/opt/aws/bin/cfn-signal -e $? --region <AWS::Region> --stack <AWS::StackName> --resource ${instanceId}`);
  });

  test('stays far under the 16 KB limit of EC2 user data', () => {
    // Pseudo parameters expand at deploy time (a stack name has at most 128 characters): keep a wide margin.
    expect(Buffer.byteLength(userData())).toBeLessThan(16 * 1024 / 8);
  });
});

describe('instance role', () => {
  const roleId = () => logicalId(orchard.compute.host.role);
  /** The statements of the role's policies, as readable text (actions sorted, resources flattened). */
  function statements() {
    const policies = template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: roleId() }] } });
    return Object.values(policies)
      .flatMap((policy) => policy.Properties.PolicyDocument.Statement as any[])
      .map((statement) => ({
        actions: ([] as string[]).concat(statement.Action).sort(),
        resources: ([] as unknown[]).concat(statement.Resource).map(flat).sort(),
        ...(statement.Condition ? { condition: statement.Condition } : {}),
        effect: statement.Effect,
      }));
  }

  test('has exactly the statements the pipeline host needs', () => {
    const assetKey = orchard.compute.resolve(orchard.compute.host.runtimeAsset.s3ObjectKey) as string;
    const outputLogs = logicalId(orchard.compute.runDocument.logGroup);
    const allow = (actions: string[], resources: string[], condition?: object) => ({
      actions: actions.sort(),
      resources,
      ...(condition ? { condition } : {}),
      effect: 'Allow',
    });
    const listUnder = (prefix: string) => allow(['s3:ListBucket'], [BUCKET_ARN], { StringLike: { 's3:prefix': [`${prefix}*`] } });
    expect(statements()).toEqual([
      allow(['ssm:UpdateInstanceInformation'], ['arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*']),
      allow(
        [
          'ec2messages:AcknowledgeMessage',
          'ec2messages:DeleteMessage',
          'ec2messages:FailMessage',
          'ec2messages:GetEndpoint',
          'ec2messages:GetMessages',
          'ec2messages:SendReply',
          'ssmmessages:CreateControlChannel',
          'ssmmessages:OpenControlChannel',
        ],
        ['*'],
      ),
      allow(['s3:GetObject'], [`arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/${assetKey}`]),
      allow(['cloudformation:DescribeStackResource', 'cloudformation:SignalResource'], ['<AWS::StackId>']),
      listUnder(PREFIXES.images),
      allow(['s3:GetObject'], [`${BUCKET_ARN}/images/*`]),
      listUnder(PREFIXES.results),
      allow(['s3:AbortMultipartUpload', 's3:DeleteObject', 's3:GetObject', 's3:PutObject', 's3:PutObjectTagging'], [`${BUCKET_ARN}/results/*`]),
      listUnder(PREFIXES.models),
      allow(['s3:AbortMultipartUpload', 's3:GetObject', 's3:PutObject'], [`${BUCKET_ARN}/models/*`]),
      allow(['logs:CreateLogStream', 'logs:DescribeLogStreams', 'logs:PutLogEvents'], [`<${outputLogs}.Arn>`]),
      allow(['logs:DescribeLogGroups'], ['arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:*']),
    ]);
  });

  test('allows no s3:* and no S3 action on every resource', () => {
    for (const statement of statements()) {
      expect(statement.actions.filter((action) => /^s3:\*|^\*$/.test(action))).toEqual([]);
      if (statement.actions.some((action) => action.startsWith('s3:'))) expect(statement.resources).not.toContain('*');
    }
  });

  test('puts every S3 object action on one prefix of the data bucket, or on the one bundle object', () => {
    const objectResources = statements()
      .filter((statement) => statement.actions.some((action) => action.startsWith('s3:') && action !== 's3:ListBucket'))
      .flatMap((statement) => statement.resources);
    for (const arn of objectResources) {
      expect(arn).toMatch(/^arn:<AWS::Partition>:s3:::(OrchardData-BucketName\/(images|results|models)\/\*|cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>\/[0-9a-f]{64}\.zip)$/);
    }
  });

  test('may list the data bucket only under its three prefixes', () => {
    const listings = statements().filter((statement) => statement.actions.includes('s3:ListBucket'));
    expect(listings.map((statement) => statement.condition)).toEqual(
      [PREFIXES.images, PREFIXES.results, PREFIXES.models].map((prefix) => ({ StringLike: { 's3:prefix': [`${prefix}*`] } })),
    );
  });

  test('has no managed policy', () => {
    expect(resource(template, roleId()).Properties.ManagedPolicyArns).toBeUndefined();
  });

  test('can be assumed by EC2 only', () => {
    expect(resource(template, roleId()).Properties.AssumeRolePolicyDocument.Statement).toEqual([
      { Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' } },
    ]);
  });
});

describe('cdk destroy', () => {
  test('deletes every resource of the compute stack (nothing retained, no snapshot)', () => {
    const kept = Object.entries(template.toJSON().Resources as Record<string, any>)
      .filter(([, r]) => ['Retain', 'RetainExceptOnCreate', 'Snapshot'].includes(r.DeletionPolicy))
      .map(([id]) => id);
    expect(kept).toEqual([]);
  });

  test('deletes the log groups with the stack', () => {
    for (const group of Object.values(template.findResources('AWS::Logs::LogGroup'))) {
      expect(group).toMatchObject({ DeletionPolicy: 'Delete', UpdateReplacePolicy: 'Delete' });
    }
  });
});

describe('outputs', () => {
  test.each(['BucketName', 'InstanceId', 'DocumentName', 'LogGroupName', 'SendCommand'])('declares %s', (key) => {
    expect(template.toJSON().Outputs[key]).toBeDefined();
  });

  test('names the data bucket, the instance, the document and the log group', () => {
    const outputs = template.toJSON().Outputs;
    expect({
      BucketName: flat(outputs.BucketName.Value),
      InstanceId: flat(outputs.InstanceId.Value),
      DocumentName: flat(outputs.DocumentName.Value),
      LogGroupName: flat(outputs.LogGroupName.Value),
    }).toEqual({
      BucketName: 'OrchardData-BucketName',
      InstanceId: `<${instanceId}>`,
      DocumentName: `<${logicalId(orchard.compute.runDocument.document)}>`,
      LogGroupName: `<${logicalId(orchard.compute.runDocument.logGroup)}>`,
    });
  });

  test('gives a ready-to-paste send-command with CloudWatch output', () => {
    expect(flat(template.toJSON().Outputs.SendCommand.Value)).toBe(
      [
        'aws ssm send-command --region <AWS::Region>',
        `--document-name <${logicalId(orchard.compute.runDocument.document)}>`,
        `--instance-ids <${instanceId}>`,
        `--parameters '{"input":["s3://OrchardData-BucketName/images/"],"output":["s3://OrchardData-BucketName/results/"]}'`,
        `--cloud-watch-output-config CloudWatchOutputEnabled=true,CloudWatchLogGroupName=<${logicalId(orchard.compute.runDocument.logGroup)}>`,
        '--comment "orchard run"',
      ].join(' '),
    );
  });
});

test('an app built outside the CLI starts from the context of cdk.json, as cdk synth does', () => {
  const { app } = createOrchardApp({ lambdaDir: fakeBundle('lambda'), modelFetchDir: fakeBundle('model-fetch'), runtimeDir: fakeBundle('no context'), outdir: scratchDir('orchard-cdk-out-') });
  expect(app.node.tryGetContext('@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy')).toBe(true);
  expect(app.node.tryGetContext(CONTEXT.instanceType)).toBe('c7i.xlarge');
});

describe('contract with bin/ (trigger, upload)', () => {
  test('the stack names are the ones the trigger looks up', () => {
    expect([orchard.data.stackName, orchard.compute.stackName]).toEqual([STACKS.data, STACKS.compute]);
  });

  test('the output keys are the ones the trigger reads', () => {
    const otherStacks: string[] = [OUTPUT.stateMachineArn, OUTPUT.functionLogGroupName, OUTPUT.modelSha256];
    expect(Object.keys(template.toJSON().Outputs).sort()).toEqual(Object.values(OUTPUT).filter((key) => !otherStacks.includes(key)).sort());
    expect(Object.keys(orchard.dataTemplate.toJSON().Outputs)).toEqual(expect.arrayContaining([OUTPUT.bucketName, OUTPUT.modelSha256]));
  });

  test('the compute stack deploys after the data stack', () => {
    expect(orchard.compute.dependencies).toContain(orchard.data);
  });
});
