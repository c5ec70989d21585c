import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Size } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import { STACK_OUTPUTS } from '../runtime/contracts/deployment';
import type { DataBucket } from './constructs/data-bucket';
import { ScaleWorkflow } from './constructs/scale-workflow';
import { StageFunction } from './constructs/stage-function';

export interface OrchardScaleStackProps extends StackProps {
  /** The data bucket of the data stack. */
  readonly data: DataBucket;
  /** A folder built by `buildLambdaBundle()` for `architecture`. */
  readonly lambdaCodeDir: string;
  readonly architecture: lambda.Architecture;
  /** Distributed map concurrency when an execution does not set it. */
  readonly maxConcurrency?: number;
  /** Memory of the stage function. @default 3008 MiB (DEFAULT_LAMBDA_MEMORY) */
  readonly lambdaMemory?: Size;
}

/**
 * The scale path: the stage function and the state machine that fans a run's shards out to it. Nothing here bills
 * while idle (Lambda and Step Functions charge per use; the log groups per GB stored), and nothing holds data.
 */
export class OrchardScaleStack extends Stack {
  readonly stages: StageFunction;
  readonly workflow: ScaleWorkflow;

  constructor(scope: Construct, id: string, props: OrchardScaleStackProps) {
    super(scope, id, { description: 'orchard: a run on AWS Lambda, shards fanned out by a Step Functions Distributed Map', ...props });
    this.stages = new StageFunction(this, 'Stages', { codeDir: props.lambdaCodeDir, architecture: props.architecture, data: props.data, memorySize: props.lambdaMemory });
    this.workflow = new ScaleWorkflow(this, 'Workflow', { stageFunction: this.stages.function, data: props.data, maxConcurrency: props.maxConcurrency });
    new CfnOutput(this, STACK_OUTPUTS.stateMachineArn, { value: this.workflow.stateMachine.stateMachineArn, description: 'State machine of the scale path (npm run trigger -- --scale)' });
    new CfnOutput(this, STACK_OUTPUTS.functionLogGroupName, { value: this.stages.logGroup.logGroupName, description: 'Log group of the stage function: the runs\' progress lines' });
    new CfnOutput(this, STACK_OUTPUTS.bucketName, { value: props.data.bucketNameFor(this), description: 'Data bucket: images/ in, results/ out, models/ cache' });
  }
}
