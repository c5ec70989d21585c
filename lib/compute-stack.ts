import { Aws, CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type { Construct } from 'constructs';
import { STACK_OUTPUTS } from '../runtime/contracts/deployment';
import { type DataBucket, PREFIXES } from './constructs/data-bucket';
import { PipelineHost } from './constructs/pipeline-host';
import { RunDocument } from './constructs/run-document';

export interface OrchardComputeStackProps extends StackProps {
  /** The data bucket of the data stack. */
  readonly data: DataBucket;
  /** A folder built by `buildRuntimeBundle()`, shipped to the instance as one asset. */
  readonly runtimeDir: string;
  /** @default c7i.xlarge (see DEFAULT_INSTANCE_TYPE in constructs/pipeline-host.ts) */
  readonly instanceType?: ec2.InstanceType;
  /** Availability Zone of the instance, one that offers its type. @default the region's first (see PipelineHostProps) */
  readonly availabilityZone?: string;
}

/**
 * Everything that bills while it exists or runs: network, instance, run document, log groups. Nothing here holds
 * data (results are in the data stack's bucket, logs are operational), so the whole stack is deleted by
 * `cdk destroy` and can be replaced at will; it only reads the data stack's bucket name.
 */
export class OrchardComputeStack extends Stack {
  readonly host: PipelineHost;
  readonly runDocument: RunDocument;

  constructor(scope: Construct, id: string, props: OrchardComputeStackProps) {
    super(scope, id, { description: 'orchard: pipeline host (EC2, VPC, role), SSM run document and log groups', ...props });
    const bucketName = props.data.bucketNameFor(this);

    this.host = new PipelineHost(this, 'Host', { runtimeDir: props.runtimeDir, bucketName, instanceType: props.instanceType, availabilityZone: props.availabilityZone });
    props.data.grantReadInput(this.host.role);
    props.data.grantWriteResults(this.host.role);
    props.data.grantModelCache(this.host.role);

    this.runDocument = new RunDocument(this, 'Run', {
      defaultInput: props.data.uriFor(this, PREFIXES.images),
      defaultOutput: props.data.uriFor(this, PREFIXES.results),
    });
    this.runDocument.grantOutputLogs(this.host.role);

    const documentName = this.runDocument.document.ref;
    const logGroupName = this.runDocument.logGroup.logGroupName;
    new CfnOutput(this, STACK_OUTPUTS.bucketName, { value: bucketName, description: 'Data bucket: images/ in, results/ out, models/ cache' });
    new CfnOutput(this, STACK_OUTPUTS.instanceId, { value: this.host.instance.instanceId, description: 'Pipeline host (stopped between runs)' });
    new CfnOutput(this, STACK_OUTPUTS.documentName, { value: documentName, description: 'SSM Command document that runs the pipeline' });
    new CfnOutput(this, STACK_OUTPUTS.logGroupName, { value: logGroupName, description: 'CloudWatch log group of the Run Command output' });
    new CfnOutput(this, STACK_OUTPUTS.sendCommand, {
      description: 'Starts a run with the default parameters (start the instance first, or use npm run trigger)',
      value: [
        'aws ssm send-command',
        `--region ${Aws.REGION}`,
        `--document-name ${documentName}`,
        `--instance-ids ${this.host.instance.instanceId}`,
        `--parameters '{"input":["${props.data.uriFor(this, PREFIXES.images)}"],"output":["${props.data.uriFor(this, PREFIXES.results)}"]}'`,
        `--cloud-watch-output-config CloudWatchOutputEnabled=true,CloudWatchLogGroupName=${logGroupName}`,
        '--comment "orchard run"',
      ].join(' '),
    });
  }
}
