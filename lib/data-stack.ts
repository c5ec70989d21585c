import { CfnOutput, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { STACK_OUTPUTS } from '../runtime/contracts/deployment';
import { DataBucket } from './constructs/data-bucket';

export interface OrchardDataStackProps extends StackProps {
  /**
   * Delete the buckets and every object in them on `cdk destroy` (context `orchard:destroyData=true`).
   *
   * @default false - the buckets and their data are kept when the stack is destroyed
   */
  readonly destroyData?: boolean;
}

/**
 * What outlives the compute: the data bucket (images, results, model cache) and its access logs. It is a stack of
 * its own so that `cdk destroy OrchardCompute` (or a failed compute deployment) never touches the data, and so that
 * the default `cdk destroy --all` can keep the bucket while removing everything that bills by the hour.
 */
export class OrchardDataStack extends Stack {
  readonly data: DataBucket;

  constructor(scope: Construct, id: string, props: OrchardDataStackProps = {}) {
    super(scope, id, { description: 'orchard: data bucket (images in, results out, model cache) and its access logs', ...props });
    this.data = new DataBucket(this, 'Data', {
      removalPolicy: props.destroyData ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
    });
    new CfnOutput(this, STACK_OUTPUTS.bucketName, { value: this.data.bucket.bucketName, description: 'Data bucket: images/ in, results/ out, models/ cache' });
  }
}
