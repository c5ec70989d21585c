import { CloudFormationServiceException, type DescribeStacksCommandOutput, type Output } from '@aws-sdk/client-cloudformation';

/** A DescribeStacks answer for one complete stack with these outputs. */
export function stackWith(name: string, outputs: Record<string, string>, created = new Date()): Pick<DescribeStacksCommandOutput, 'Stacks'> {
  const Outputs: Output[] = Object.entries(outputs).map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue }));
  return { Stacks: [{ StackName: name, StackStatus: 'CREATE_COMPLETE', CreationTime: created, Outputs }] };
}

/** The error CloudFormation answers DescribeStacks with for a stack that does not exist. */
export function missingStack(name: string): CloudFormationServiceException {
  return new CloudFormationServiceException({
    name: 'ValidationError',
    $fault: 'client',
    $metadata: { httpStatusCode: 400 },
    message: `Stack with id ${name} does not exist`,
  });
}
