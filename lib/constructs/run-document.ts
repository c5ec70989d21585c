import { ArnFormat, Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { acknowledgeWildcardResource } from '../nag';
import { RUN_PARAMETER_PATTERNS } from '../run-parameters';
import { INSTALL_DIR } from './pipeline-host';
import { operationalLogGroup } from './log-group';

/**
 * Far above Run Command's default of 3,600 s: a run over millions of images takes hours. 48 h is the most
 * `aws:runShellScript` accepts; a run that is cut off resumes from its completed shards with the same run id.
 */
const DEFAULT_EXECUTION_TIMEOUT = Duration.hours(48);

/**
 * The document's only command. `bash` explicitly: cfn-init unpacks the bundle from a zip, which keeps no file
 * modes. Quoted: ORCHARD_HOME may contain spaces in a local test.
 */
export const RUN_COMMAND = `/bin/bash "\${ORCHARD_HOME:-${INSTALL_DIR}}/run-pipeline.sh"`;

/**
 * Each parameter reaches the script only as an environment variable `SSM_<name>` (`interpolationType: ENV_VAR`,
 * SSM Agent 3.3.2746.0 or later), never pasted into the command text; `allowedPattern` rejects malformed values
 * before the command is sent, and `run-pipeline.sh` checks them again against the same patterns (lib/run-parameters.ts).
 */
export { RUN_PARAMETER_PATTERNS };

export interface RunDocumentProps {
  /** Default of the `input` parameter, e.g. `s3://<bucket>/images/`. */
  readonly defaultInput: string;
  /** Default of the `output` parameter, e.g. `s3://<bucket>/results/`. */
  readonly defaultOutput: string;
  /** @default 48 hours, the most aws:runShellScript accepts */
  readonly executionTimeout?: Duration;
  /** Retention of the Run Command output log group. @default RetentionDays.THREE_MONTHS */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * The SSM Command document that runs the pipeline on the instance, and the log group its output goes to.
 *
 * The command is one fixed line, `run-pipeline.sh` from the installed bundle (`ORCHARD_HOME` overrides the
 * folder, so a test can run the same line locally); the script runs `orchard run` as the unprivileged `orchard`
 * user. The document is replaced (new name) when its content changes; the stack output gives the current name.
 */
export class RunDocument extends Construct {
  readonly document: ssm.CfnDocument;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: RunDocumentProps) {
    super(scope, id);
    this.logGroup = operationalLogGroup(this, 'Output', props.logRetention);

    const parameter = (name: keyof typeof RUN_PARAMETER_PATTERNS, description: string, defaultValue: string) => ({
      type: 'String',
      description,
      default: defaultValue,
      allowedPattern: RUN_PARAMETER_PATTERNS[name],
      interpolationType: 'ENV_VAR',
    });
    this.document = new ssm.CfnDocument(this, 'Document', {
      documentType: 'Command',
      documentFormat: 'JSON',
      content: {
        schemaVersion: '2.2',
        description: 'orchard: run the pipeline (list, extract features, fit PCA, write outputs) on the pipeline host',
        parameters: {
          input: parameter('input', 'Input prefix: s3://<bucket>/images/ or a folder under it', props.defaultInput),
          output: parameter('output', 'Output prefix; the run writes <output>/<run-id>/', props.defaultOutput),
          components: parameter('components', 'Number of principal components (leave empty to use variance)', ''),
          variance: parameter('variance', 'Share of explained variance to keep, between 0 and 1 (used when components is empty)', '0.95'),
          model: parameter('model', 'Model preset (mobilenet_v2, mobilenet_v2_offline) or tfjs model URI', 'mobilenet_v2'),
          runId: parameter('runId', 'Run id (default: a timestamp); reuse an id to resume that run', ''),
          maxErrorRate: parameter('maxErrorRate', 'Share of failed images still counted a success, from 0 to 1', '0.01'),
        },
        mainSteps: [
          {
            action: 'aws:runShellScript',
            name: 'runPipeline',
            precondition: { StringEquals: ['platformType', 'Linux'] },
            inputs: {
              timeoutSeconds: String((props.executionTimeout ?? DEFAULT_EXECUTION_TIMEOUT).toSeconds()),
              runCommand: [RUN_COMMAND],
            },
          },
        ],
      },
    });
  }

  /** Stream Run Command output into this document's log group (the SSM agent writes with the instance role). */
  grantOutputLogs(grantee: iam.IGrantable): iam.Grant {
    const stack = Stack.of(this);
    const streams = iam.Grant.addToPrincipal({
      grantee,
      actions: ['logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
      resourceArns: [this.logGroup.logGroupArn],
    });
    // The agent looks its log group up by name before it writes; DescribeLogGroups is authorised on the
    // account's log-group namespace and returns names and settings only, no log data.
    const logGroupsArn = stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    const lookup = iam.Grant.addToPrincipal({ grantee, actions: ['logs:DescribeLogGroups'], resourceArns: [logGroupsArn] });
    if (Construct.isConstruct(grantee)) {
      acknowledgeWildcardResource(
        grantee,
        logGroupsArn,
        'logs:DescribeLogGroups only, which the SSM agent calls to find its output log group before writing to it. ' +
          'IAM authorises it on the account and region log-group namespace; it returns names and settings, no log data. ' +
          'Writing is limited to this log group.',
      );
    }
    return streams.combine(lookup);
  }
}
