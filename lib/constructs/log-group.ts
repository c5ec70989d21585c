import { RemovalPolicy } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';

/** How long operational lines (run output, function and state machine logs, flow logs) are kept by default. */
export const DEFAULT_LOG_RETENTION = logs.RetentionDays.THREE_MONTHS;

/**
 * A log group of operational lines: kept for `retention`, and deleted with its stack, since it holds no data
 * (results are in the data bucket) and a kept group would block redeploying the stack under the same names.
 */
export function operationalLogGroup(scope: Construct, id: string, retention: logs.RetentionDays = DEFAULT_LOG_RETENTION): logs.LogGroup {
  return new logs.LogGroup(scope, id, { retention, removalPolicy: RemovalPolicy.DESTROY });
}
