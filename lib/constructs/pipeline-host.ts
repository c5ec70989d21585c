import { Annotations, Aws, Duration, Size, Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import { Construct } from 'constructs';
import { acknowledgeWildcardResource } from '../nag';
import { operationalLogGroup } from './log-group';

/** Where cfn-init unpacks the runtime bundle on the instance; the SSM document and the scripts assume it. */
export const INSTALL_DIR = '/opt/orchard';

/**
 * 4 vCPUs (Sapphire Rapids, AVX-512) for the tfjs-node (libtensorflow) and sharp (libvips) thread pools, 8 GiB
 * for the model, a batch of decoded images and one shard of features at a time (memory stays flat whatever the
 * number of images), at about USD 0.18 an hour on demand, billed only while a run is running.
 */
export const DEFAULT_INSTANCE_TYPE = new ec2.InstanceType('c7i.xlarge');
/** AL2023 (~2 GiB) + Node 22 + the native modules and libtensorflow (~1 GiB) + model and scratch space. */
const DEFAULT_ROOT_VOLUME_SIZE = Size.gibibytes(30);
/** dnf, npm install of the native modules (tfjs-node downloads libtensorflow), `orchard doctor`, model caching. */
const DEFAULT_BOOTSTRAP_TIMEOUT = Duration.minutes(30);
/** AL2023's root device. */
const ROOT_DEVICE = '/dev/xvda';
const HTTPS = 443;
/** The Amazon Linux 2023 image for each architecture the bundle's native modules have builds for. */
const AMI_CPU: Partial<Record<ec2.InstanceArchitecture, ec2.AmazonLinuxCpuType>> = {
  [ec2.InstanceArchitecture.X86_64]: ec2.AmazonLinuxCpuType.X86_64,
  [ec2.InstanceArchitecture.ARM_64]: ec2.AmazonLinuxCpuType.ARM_64,
};

export interface PipelineHostProps {
  /** A folder built by `buildRuntimeBundle()`: the bundle, its package.json and the instance scripts. */
  readonly runtimeDir: string;
  /** The data bucket, passed to `bootstrap.sh` (it checks S3 access and caches the default model under `models/`). */
  readonly bucketName: string;
  /**
   * x86_64 or arm64 (Graviton): the bootstrap installs the native modules for the instance's own CPU (sharp and
   * onnxruntime-node have both builds; @tensorflow/tfjs-node, optional, installs on x86_64 only), and the AMI
   * follows the instance type's architecture.
   *
   * @default c7i.xlarge (see DEFAULT_INSTANCE_TYPE)
   */
  readonly instanceType?: ec2.InstanceType;
  /**
   * Availability Zone of the instance (and of the VPC's one subnet), e.g. `us-east-1b`: one that offers the instance
   * type (`aws ec2 describe-instance-type-offerings --location-type availability-zone --filters
   * Name=instance-type,Values=<type>`). The stacks are synthesized without an account, so orchard cannot look it up.
   *
   * @default the region's first Availability Zone, with a note at synth saying so
   */
  readonly availabilityZone?: string;
  /** @default 30 GiB */
  readonly rootVolumeSize?: Size;
  /**
   * How long CloudFormation waits for the bootstrap's signal before it fails the deployment (and rolls back).
   *
   * @default 30 minutes
   */
  readonly bootstrapTimeout?: Duration;
  /** @default RetentionDays.THREE_MONTHS */
  readonly flowLogRetention?: logs.RetentionDays;
}

/**
 * The EC2 instance that runs the pipeline, with its network, role and bootstrap.
 *
 * Network: a VPC with public subnets only (no NAT gateway to pay for), an S3 gateway endpoint (S3 traffic stays
 * in AWS and costs nothing), flow logs to CloudWatch. The instance has a public IPv4 address only so that it can
 * reach SSM, the package mirrors and the npm registry without a NAT gateway; its security group has **no inbound
 * rule** and allows outbound HTTPS only. There is no SSH key and no open port: commands arrive through SSM Run
 * Command, which the agent polls over HTTPS.
 *
 * Bootstrap: the runtime bundle is one asset, unpacked to /opt/orchard by cfn-init, which then runs
 * `bootstrap.sh <bucket> <region>` (Node 22, native modules, the `orchard` user, `orchard doctor`, model cache).
 * cfn-signal reports its exit status: a failed bootstrap fails `cdk deploy` instead of leaving a broken instance.
 * A changed bundle changes the user data (cfn-init fingerprint), which replaces the instance on the next deploy,
 * so the new runtime is installed from scratch (there is no cfn-hup: cfn-init runs once, on the first boot).
 * After a successful bootstrap the instance stops itself (`bootstrap.sh` schedules a shutdown a couple of minutes
 * after cfn-signal; a guest shutdown means *stop*, not terminate); the trigger starts it for a run.
 *
 * Security considerations: IMDSv2 only; encrypted gp3 root volume; the role may do only this:
 * - register with SSM and exchange Run Command messages (`ssm:UpdateInstanceInformation`, `ec2messages:*`
 *   message actions and the `ssmmessages` control channel; no Session Manager data channel, so no interactive
 *   shell);
 * - read the one S3 object that holds its runtime bundle;
 * - signal its own CloudFormation stack (cfn-init, cfn-signal);
 * - what the data bucket and the run document grant it (prefixes of one bucket, one log group).
 */
export class PipelineHost extends Construct {
  readonly vpc: ec2.Vpc;
  readonly securityGroup: ec2.SecurityGroup;
  readonly role: iam.Role;
  readonly instance: ec2.Instance;
  readonly runtimeAsset: s3assets.Asset;

  constructor(scope: Construct, id: string, props: PipelineHostProps) {
    super(scope, id);
    const instanceType = props.instanceType ?? DEFAULT_INSTANCE_TYPE;
    const cpuType = AMI_CPU[instanceType.architecture];
    if (!cpuType) {
      throw new Error(`expected an x86_64 or arm64 instance type for the pipeline host but got ${instanceType} (${instanceType.architecture})`);
    }

    const zone = props.availabilityZone;
    if (zone !== undefined && !/^[a-z]{2}-[a-z0-9-]+[a-z]$/.test(zone)) {
      throw new Error(`expected an Availability Zone name such as us-east-1b for the pipeline host but got ${JSON.stringify(zone)}`);
    }
    if (zone === undefined) {
      Annotations.of(this).addInfo(
        `The pipeline host (${instanceType}) goes to the region's first Availability Zone, which may not offer that type (the ` +
          'deployment then fails with "Unsupported"). To choose one that does: aws ec2 describe-instance-type-offerings ' +
          `--location-type availability-zone --filters Name=instance-type,Values=${instanceType}, then -c orchard:availabilityZone=<zone>`,
      );
    }
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      natGateways: 0,
      ...(zone === undefined ? { maxAzs: 2 } : { availabilityZones: [zone] }),
      subnetConfiguration: [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24, mapPublicIpOnLaunch: false }],
      gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
    });
    const flowLogs = operationalLogGroup(this, 'FlowLogs', props.flowLogRetention);
    this.vpc.addFlowLog('FlowLog', { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs) });

    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: this.vpc,
      description: 'orchard pipeline host: no inbound rule; outbound HTTPS only (SSM, S3, package mirrors, npm, model download)',
      allowAllOutbound: false,
    });
    this.securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(HTTPS), 'HTTPS to AWS APIs, package mirrors and the npm registry');

    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: 'orchard pipeline host: SSM agent, its runtime bundle, its own stack signal, the data bucket prefixes, its log group',
    });
    this.grantSsmAgent();

    this.runtimeAsset = new s3assets.Asset(this, 'RuntimeBundle', { path: props.runtimeDir });
    // Only the bundle's object, not the whole CDK assets bucket (which InitSource.fromAsset would grant).
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ReadRuntimeBundle',
        actions: ['s3:GetObject'],
        resources: [this.runtimeAsset.bucket.arnForObjects(this.runtimeAsset.s3ObjectKey)],
      }),
    );

    const userData = ec2.UserData.forLinux();
    // cfn-init and cfn-signal come from aws-cfn-bootstrap, which not every AL2023 image carries: install it before
    // the lines CDK appends for `init` below. Without it there is no signal and the deployment times out.
    userData.addCommands('for _ in 1 2 3; do dnf install -y aws-cfn-bootstrap && break; sleep 15; done');

    this.instance = new ec2.Instance(this, 'Instance', {
      vpc: this.vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC, ...(zone === undefined ? {} : { availabilityZones: [zone] }) },
      associatePublicIpAddress: true,
      securityGroup: this.securityGroup,
      role: this.role,
      instanceType,
      machineImage: ec2.MachineImage.latestAmazonLinux2023({ cpuType }),
      blockDevices: [
        {
          deviceName: ROOT_DEVICE,
          volume: ec2.BlockDeviceVolume.ebs((props.rootVolumeSize ?? DEFAULT_ROOT_VOLUME_SIZE).toGibibytes(), {
            volumeType: ec2.EbsDeviceVolumeType.GP3,
            encrypted: true,
            deleteOnTermination: true,
          }),
        },
      ],
      requireImdsv2: true,
      ssmSessionPermissions: false,
      instanceInitiatedShutdownBehavior: ec2.InstanceInitiatedShutdownBehavior.STOP,
      userData,
      userDataCausesReplacement: true,
      init: ec2.CloudFormationInit.fromElements(
        ec2.InitSource.fromUrl(INSTALL_DIR, this.runtimeAsset.httpUrl),
        // No `env`: cfn-init would replace the whole environment (PATH included) with it. bootstrap.sh sets HOME.
        ec2.InitCommand.argvCommand(['/bin/bash', `${INSTALL_DIR}/bootstrap.sh`, props.bucketName, Aws.REGION], {
          key: '10-bootstrap',
          cwd: INSTALL_DIR,
        }),
      ),
      initOptions: { timeout: props.bootstrapTimeout ?? DEFAULT_BOOTSTRAP_TIMEOUT },
    });
    // cfn-init downloads the bundle from S3 with the instance role's credentials.
    this.instance.instance.addMetadata('AWS::CloudFormation::Authentication', {
      S3AccessCreds: { type: 'S3', roleName: this.role.roleName, buckets: [this.runtimeAsset.s3BucketName] },
    });

    Validations.of(this.instance).acknowledge(
      {
        id: 'AwsSolutions-EC28',
        reason:
          'Detailed (1-minute) monitoring is an operational choice, not a control: the instance runs batch jobs and ' +
          'stops between them; run progress and failures are in the Run Command log group.',
      },
      {
        id: 'AwsSolutions-EC29',
        reason:
          'The instance is disposable by design: it holds no data (everything is in S3), it is replaced on every ' +
          'runtime change and `cdk destroy` must remove it. Termination protection would block both.',
      },
    );
  }

  /**
   * What the SSM agent needs for Run Command (the relevant part of AmazonSSMManagedInstanceCore, without
   * Parameter Store reads, inventory, associations or Session Manager data channels).
   */
  private grantSsmAgent(): void {
    const stack = Stack.of(this);
    const instances = stack.formatArn({ service: 'ec2', resource: 'instance', resourceName: '*' });
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'SsmAgentRegistration', actions: ['ssm:UpdateInstanceInformation'], resources: [instances] }),
    );
    acknowledgeWildcardResource(
      this.role,
      instances,
      'ssm:UpdateInstanceInformation on the instances of this account and region: the instance cannot name its own ID ' +
        'in its role policy (the instance depends on the role), and SSM records the information of the calling ' +
        'instance, whose identity comes from the instance role session.',
    );
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'SsmAgentMessages',
        actions: [
          'ec2messages:AcknowledgeMessage',
          'ec2messages:DeleteMessage',
          'ec2messages:FailMessage',
          'ec2messages:GetEndpoint',
          'ec2messages:GetMessages',
          'ec2messages:SendReply',
          'ssmmessages:CreateControlChannel',
          'ssmmessages:OpenControlChannel',
        ],
        resources: ['*'],
      }),
    );
    acknowledgeWildcardResource(
      this.role,
      '*',
      'Only the SSM agent message actions (ec2messages:AcknowledgeMessage, DeleteMessage, FailMessage, GetEndpoint, ' +
        'GetMessages, SendReply; ssmmessages:CreateControlChannel, OpenControlChannel) have Resource "*": IAM defines ' +
        'no resource type for them, so they cannot be scoped further; the service binds them to the calling instance.',
    );
  }
}
