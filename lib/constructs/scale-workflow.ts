import { Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { SCALE_DEFAULTS } from '../../runtime/contracts/scale';
import { acknowledgeWildcardResource } from '../nag';
import { PREFIXES, type DataBucket } from './data-bucket';
import { operationalLogGroup } from './log-group';

/** Lambda's transient failures (throttling, service errors): retried with backoff and jitter, as AWS advises. */
const LAMBDA_TRANSIENT_ERRORS = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
  'Lambda.ClientExecutionTimeoutException',
];
/**
 * A stage's own failures that another attempt can get past: S3 failing beyond the SDK's retries (throttling at the
 * start of a large run, a network fault), and a timeout (the next attempt skips the shards the last one committed).
 */
const STAGE_TRANSIENT_ERRORS = ['ERR_STORAGE', 'ERR_STORAGE_UNREACHABLE', 'Sandbox.Timedout'];
/**
 * The run or a shard is held by another process: an earlier attempt of this very task that Step Functions gave up
 * on while it still ran, or one killed holding its lease, which expires after LEASE_TTL_MS (120 s).
 */
const LEASE_ERRORS = ['ERR_RUN_LOCKED', 'ERR_LEASE_LOST'];

/**
 * CDK's S3 item reader and result writer, without the statements they add when the bucket is chosen at run time
 * (`bucketNamePath`): those grant s3:GetObject, s3:PutObject and the multipart actions on every resource ("*").
 * The workflow grants them itself, on the results/ and map-results/ prefixes of the data bucket (`grantMapItems`).
 */
class RunItemReader extends sfn.S3JsonItemReader {
  override providePolicyStatements(): iam.PolicyStatement[] {
    return [];
  }
}
class RunResultWriter extends sfn.ResultWriterV2 {
  override providePolicyStatements(): iam.PolicyStatement[] {
    return [];
  }
}

type Invoke = (stateId: string, payload: sfn.TaskInput | undefined, resultPath: string | undefined, comment: string) => tasks.LambdaInvoke;

/**
 * Inline maps (the fit's merge groups) run at most this many iterations at once: within the Lambda concurrency of
 * 10 that new accounts start with.
 */
export const INLINE_MAP_CONCURRENCY = 8;

export interface ScaleWorkflowProps {
  /** The function that runs every stage (StageFunction). */
  readonly stageFunction: lambda.IFunction;
  readonly data: DataBucket;
  /** Distributed map concurrency when the execution input gives none. @default SCALE_DEFAULTS.maxConcurrency */
  readonly maxConcurrency?: number;
  /** @default RetentionDays.THREE_MONTHS */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * The scale path: a Standard state machine that runs a run's stages on Lambda, the per-shard ones fanned out by
 * Distributed Maps over the work-item files the stages write (`_work/items/*.json`):
 *
 *   Options → Plan → Extract (distributed map) → MergeGroups (map, when the shards are many) → Fit
 *     → Fitted? → Project (distributed map) → Publish → Finished
 *               ↘ (no PCA: too few images) ──────────────────────→ Finished
 *
 * Every stage is idempotent and commits shard by shard in the run folder, so a new execution with the same run id
 * (or `orchard run` on the instance) does only the unfinished work. No state
 * carries more than a few hundred bytes: the maps read their items from S3 and write their results there.
 *
 * The execution input is `{ "run": { "input": …, "output": …, "runId": …, …settings }, "maxConcurrency"?, "shardsPerTask"? }`
 * (runtime/contracts/scale.ts); the output is the run's result (status, outputs, counts).
 */
export class ScaleWorkflow extends Construct {
  readonly stateMachine: sfn.StateMachine;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: ScaleWorkflowProps) {
    super(scope, id);
    const fn = props.stageFunction;
    const run = { output: sfn.JsonPath.stringAt('$.plan.output'), runId: sfn.JsonPath.stringAt('$.plan.runId') };
    const failed = new sfn.Fail(this, 'RunFailed', {
      comment: 'The run folder keeps every committed shard: a new execution (or orchard run) with the same run id does only what is left',
      errorPath: '$.error.Error',
      causePath: '$.error.Cause',
    });
    const invoke: Invoke = (stateId, payload, resultPath, comment) => {
      const task = new tasks.LambdaInvoke(this, stateId, {
        comment,
        lambdaFunction: fn,
        payload,
        payloadResponseOnly: true,
        resultPath: resultPath ?? sfn.JsonPath.DISCARD,
        retryOnServiceExceptions: false,
      });
      task.addRetry({ errors: LAMBDA_TRANSIENT_ERRORS, interval: Duration.seconds(2), backoffRate: 2, maxAttempts: 6, maxDelay: Duration.seconds(60), jitterStrategy: sfn.JitterType.FULL });
      task.addRetry({ errors: STAGE_TRANSIENT_ERRORS, interval: Duration.seconds(10), backoffRate: 3, maxAttempts: 2, jitterStrategy: sfn.JitterType.FULL });
      task.addRetry({ errors: LEASE_ERRORS, interval: Duration.seconds(130), backoffRate: 1, maxAttempts: 2 });
      return task;
    };

    const defaults = new sfn.Pass(this, 'Defaults', {
      comment: 'What the execution input may leave out',
      result: sfn.Result.fromObject({ maxConcurrency: props.maxConcurrency ?? SCALE_DEFAULTS.maxConcurrency, shardsPerTask: SCALE_DEFAULTS.shardsPerTask }),
      resultPath: '$.defaults',
    });
    const options = new sfn.Pass(this, 'Options', {
      comment: 'The execution input over the defaults',
      parameters: { options: sfn.JsonPath.jsonMerge(sfn.JsonPath.objectAt('$.defaults'), sfn.JsonPath.objectAt('$$.Execution.Input')) },
    });
    const plan = invoke('Plan', sfn.TaskInput.fromObject({ stage: 'plan', run: sfn.JsonPath.objectAt('$.options.run') }), '$.plan', 'Check the settings, list the input into shards, fill the model cache');
    const extract = this.shardMap('Extract', 'extract', sfn.JsonPath.stringAt('$.plan.extractItems'), invoke);
    const merge = new sfn.Map(this, 'MergeGroups', {
      comment: 'Past 64 shards, the fit is split: each group of 64 shard statistics is summed by a task of its own',
      itemsPath: '$.plan.mergeGroups',
      itemSelector: { stage: 'merge', ...run, group: sfn.JsonPath.numberAt('$$.Map.Item.Value') },
      maxConcurrency: INLINE_MAP_CONCURRENCY,
      resultPath: sfn.JsonPath.DISCARD,
    });
    // No payload template: the item, as ItemSelector built it, is the event.
    merge.itemProcessor(invoke('MergeGroup', undefined, undefined, 'Sum one group of shard statistics'));
    const fit = invoke('Fit', sfn.TaskInput.fromObject({ stage: 'fit', ...run }), '$.fit', 'Merge the statistics, fit the PCA, list the shards to project');
    const project = this.shardMap('Project', 'project', sfn.JsonPath.stringAt('$.fit.projectItems'), invoke);
    const publish = invoke('Publish', sfn.TaskInput.fromObject({ stage: 'publish', ...run }), '$.result', 'Write errors.csv, the single-file tables, pca-model.json, the report, the manifest, _SUCCESS');
    const finished = new sfn.Succeed(this, 'Finished', { outputPath: '$.result' });
    const noPca = new sfn.Pass(this, 'NoPca', { comment: 'Fewer than 2 images: fit published the run (too_few_images)', inputPath: '$.fit.result', resultPath: '$.result' });

    for (const state of [plan, extract, merge, fit, project, publish]) state.addCatch(failed, { resultPath: '$.error' });
    const definition = defaults
      .next(options)
      .next(plan)
      .next(extract)
      .next(merge)
      .next(fit)
      .next(new sfn.Choice(this, 'Fitted').when(sfn.Condition.booleanEquals('$.fit.fitted', true), project.next(publish).next(finished)).otherwise(noPca.next(finished)));

    this.logGroup = operationalLogGroup(this, 'Logs', props.logRetention);
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      comment: 'orchard: a run on Lambda, shards fanned out by Distributed Map',
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      logs: { destination: this.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
      tracingEnabled: true,
    });
    this.grantMapItems(props.data);
    this.acknowledgeGeneratedWildcards(fn);
  }

  /**
   * The wildcards CDK writes into the state machine's policies, each acknowledged for cdk-nag with why it cannot
   * be narrower: the function's versions, the actions without resource-level permissions (log delivery, X-Ray),
   * and the Distributed Map's own child executions of this state machine.
   */
  private acknowledgeGeneratedWildcards(fn: lambda.IFunction): void {
    const role = this.stateMachine.role;
    acknowledgeWildcardResource(
      role,
      `${fn.functionArn}:*`,
      'lambda:InvokeFunction on the qualified ARNs (versions, aliases) of the one stage function: CDK grants the function and its qualifiers together; no other function is reachable.',
    );
    acknowledgeWildcardResource(
      role,
      '*',
      'Only the log-delivery actions of Step Functions logging (logs:CreateLogDelivery, GetLogDelivery, UpdateLogDelivery, DeleteLogDelivery, ListLogDeliveries, PutResourcePolicy, DescribeResourcePolicies, DescribeLogGroups) and X-Ray tracing (xray:PutTraceSegments, PutTelemetryRecords, GetSamplingRules, GetSamplingTargets) have Resource "*": IAM defines no resource type for them.',
    );
    const mapPolicy = this.stateMachine.node.findChild('DistributedMapPolicy') as iam.Policy;
    for (const statement of mapPolicy.document.toJSON().Statement as { Action: string | string[]; Resource: string | string[] }[]) {
      const actions = [statement.Action].flat();
      for (const arn of [statement.Resource].flat().filter((resource) => /\*$/.test(resource))) {
        acknowledgeWildcardResource(
          mapPolicy,
          arn,
          `${actions.join(', ')} on the executions of this state machine only: a Distributed Map runs its children as executions whose ` +
            'names the service chooses at run time, so they can only be named by this prefix (AWS documents this policy for Distributed Map).',
        );
      }
    }
  }

  /**
   * A Distributed Map over a stage's work-item file: batches of `shardsPerTask` shards, each a child execution
   * that invokes the stage function with `{ stage, BatchInput: { output, runId }, Items: [{ shard }, …] }`;
   * results written to S3, not returned (the state stays small whatever the shard count).
   */
  private shardMap(
    id: string,
    stage: 'extract' | 'project',
    itemsKey: string,
    invoke: Invoke,
  ): sfn.DistributedMap {
    const map = new sfn.DistributedMap(this, id, {
      comment: `${stage} every shard not yet done, a batch of shards per invocation`,
      label: id,
      mapExecutionType: sfn.StateMachineType.STANDARD,
      itemReader: new RunItemReader({ bucketNamePath: sfn.JsonPath.stringAt('$.plan.bucket'), key: itemsKey }),
      itemBatcher: new sfn.ItemBatcher({
        maxItemsPerBatchPath: '$.options.shardsPerTask',
        // BatchInput is written out as is (CDK renders no JSONPath tokens in it): the keys carry their own `.$`.
        batchInput: { 'output.$': '$.plan.output', 'runId.$': '$.plan.runId' },
      }),
      maxConcurrencyPath: '$.options.maxConcurrency',
      toleratedFailurePercentage: 0,
      resultWriterV2: new RunResultWriter({ bucketNamePath: sfn.JsonPath.stringAt('$.plan.bucket'), prefix: sfn.JsonPath.stringAt('$.plan.mapResults') }),
      resultPath: sfn.JsonPath.DISCARD,
    });
    map.itemProcessor(
      invoke(`${id}Shards`, sfn.TaskInput.fromObject({ stage, BatchInput: sfn.JsonPath.objectAt('$.BatchInput'), Items: sfn.JsonPath.listAt('$.Items') }), undefined, `${stage} a batch of shards`),
    );
    return map;
  }

  /**
   * The maps read their item files under `results/` and write their results under `map-results/` of the data
   * bucket: exactly the actions the service documents for an S3 item reader and result writer (whose policy
   * includes s3:GetObject), on those prefixes.
   */
  private grantMapItems(data: DataBucket): void {
    const role = this.stateMachine.role;
    const under = (prefix: string) => Stack.of(this).formatArn({ service: 's3', region: '', account: '', resource: data.bucketNameFor(this), resourceName: `${prefix}*` });
    const items = under(PREFIXES.results);
    const results = under(PREFIXES.mapResults);
    role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'ReadMapItems', actions: ['s3:GetObject'], resources: [items] }));
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'WriteMapResults', actions: ['s3:PutObject', 's3:GetObject', 's3:ListMultipartUploadParts', 's3:AbortMultipartUpload'], resources: [results] }),
    );
    acknowledgeWildcardResource(role, items, 'The distributed maps read the work-item files under results/<run-id>/_work/ of the data bucket; the run ids are chosen per execution.');
    acknowledgeWildcardResource(role, results, 'The distributed maps write their results under map-results/<run-id>/ of the data bucket; the run ids are chosen per execution.');
  }
}
