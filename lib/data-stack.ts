import { CfnOutput, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { STACK_OUTPUTS } from '../runtime/contracts/deployment';
import { DEFAULT_MODEL, PRESETS } from '../runtime/model/presets';
import { DataBucket } from './constructs/data-bucket';
import { ModelFetch } from './constructs/model-fetch';

export interface OrchardDataStackProps extends StackProps {
  /**
   * Delete the buckets and every object in them on `cdk destroy` (context `orchard:destroyData=true`).
   *
   * @default false - the buckets and their data are kept when the stack is destroyed
   */
  readonly destroyData?: boolean;
  /** A folder built by `buildModelFetchBundle()`: the function that brings the default model into models/. */
  readonly modelFetchDir: string;
}

/**
 * What outlives the compute: the data bucket (images, results, model cache) and its access logs. It is a stack of
 * its own so that `cdk destroy OrchardCompute` (or a failed compute deployment) never touches the data, and so that
 * the default `cdk destroy --all` can keep the bucket while removing everything that bills by the hour.
 */
export class OrchardDataStack extends Stack {
  readonly data: DataBucket;
  readonly model: ModelFetch;

  constructor(scope: Construct, id: string, props: OrchardDataStackProps) {
    super(scope, id, { description: 'orchard: data bucket (images in, results out, model cache) and its access logs', ...props });
    this.data = new DataBucket(this, 'Data', {
      removalPolicy: props.destroyData ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
    });
    // The default model, in models/ before the instance's bootstrap or any stage function needs it.
    const source = PRESETS[DEFAULT_MODEL]!.source;
    if (source.kind !== 'keras-h5') throw new Error(`the default model ${DEFAULT_MODEL} is not a single weights file the deployment can bring in`);
    this.model = new ModelFetch(this, 'Model', { data: this.data, url: source.uri, codeDir: props.modelFetchDir });
    new CfnOutput(this, STACK_OUTPUTS.bucketName, { value: this.data.bucket.bucketName, description: 'Data bucket: images/ in, results/ out, models/ cache' });
    new CfnOutput(this, STACK_OUTPUTS.modelSha256, { value: this.model.sha256, description: `SHA-256 of the default model (${source.uri}), pinned in s3://<bucket>/${this.model.key}.sha256` });
  }
}
