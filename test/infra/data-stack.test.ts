import { Template } from 'aws-cdk-lib/assertions';
import { createOrchardApp } from '../../bin/orchard';
import { INTERMEDIATE_TAG, PREFIXES } from '../../lib/constructs/data-bucket';
import { PREFIXES as TRIGGER_PREFIXES } from '../../bin/stack-outputs';
import { RunFolder, WORK } from '../../runtime/pipeline/run-folder';
import { LocalStorage, type PutOptions, type Storage } from '../../runtime/storage';
import { cacheSlug } from '../../runtime/model/artifacts';
import { KERAS_MOBILENET_V2 } from '../../runtime/model/presets';
import { type SynthesizedOrchard, fakeBundle, flat, logicalId, resource, scratchDir, synthOrchard } from './app';

let orchard: SynthesizedOrchard;
let template: Template;
let bucketId: string;
let logsId: string;

beforeAll(() => {
  orchard = synthOrchard({ runtimeDir: fakeBundle('data stack tests: the bundle does not matter here') });
  template = orchard.dataTemplate;
  bucketId = logicalId(orchard.data.data.bucket);
  logsId = logicalId(orchard.data.data.accessLogsBucket);
});

const bucket = () => resource(template, bucketId);
const logs = () => resource(template, logsId);

/** The statements of the bucket policy attached to the bucket with this logical ID. */
function policyStatements(id: string): any[] {
  const policies = template.findResources('AWS::S3::BucketPolicy', { Properties: { Bucket: { Ref: id } } });
  expect(Object.keys(policies)).toHaveLength(1);
  return Object.values(policies)[0].Properties.PolicyDocument.Statement;
}

const arn = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });
const objects = (id: string) => ({ 'Fn::Join': ['', [arn(id), '/*']] });

describe.each([
  ['data bucket', () => bucketId],
  ['access-log bucket', () => logsId],
])('%s', (_name, id) => {
  test('encrypts objects at rest (SSE-S3)', () => {
    expect(resource(template, id()).Properties.BucketEncryption).toEqual({
      ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
    });
  });

  test('blocks every form of public access', () => {
    expect(resource(template, id()).Properties.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
  });

  test('disables ACLs (bucket owner enforced)', () => {
    expect(resource(template, id()).Properties.OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] });
  });

  test('denies every request made without TLS, on the bucket and its objects', () => {
    expect(policyStatements(id())).toContainEqual({
      Effect: 'Deny',
      Principal: { AWS: '*' },
      Action: 's3:*',
      Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      Resource: [arn(id()), objects(id())],
    });
  });

  test('denies TLS versions below 1.2', () => {
    expect(policyStatements(id())).toContainEqual({
      Effect: 'Deny',
      Principal: { AWS: '*' },
      Action: 's3:*',
      Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } },
      Resource: [arn(id()), objects(id())],
    });
  });
});

describe('data bucket', () => {
  test('keeps every version of its objects', () => {
    expect(bucket().Properties.VersioningConfiguration).toEqual({ Status: 'Enabled' });
  });

  test('writes server access logs to the access-log bucket', () => {
    expect(bucket().Properties.LoggingConfiguration).toEqual({ DestinationBucketName: { Ref: logsId }, LogFilePrefix: 'data-bucket/' });
  });

  test('allows no principal in its bucket policy: access comes from identity policies only', () => {
    expect(policyStatements(bucketId).filter((statement) => statement.Effect === 'Allow')).toEqual([]);
  });

  test('aborts incomplete multipart uploads after 7 days', () => {
    expect(bucket().Properties.LifecycleConfiguration.Rules).toContainEqual({
      Id: 'abort-incomplete-multipart-uploads',
      Status: 'Enabled',
      AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
    });
  });

  test('expires intermediate shards (tagged orchard:intermediate=true under results/) after 7 days', () => {
    expect(bucket().Properties.LifecycleConfiguration.Rules).toContainEqual({
      Id: 'expire-intermediate-shards',
      Status: 'Enabled',
      Prefix: PREFIXES.results,
      TagFilters: [{ Key: INTERMEDIATE_TAG.key, Value: INTERMEDIATE_TAG.value }],
      ExpirationInDays: 7,
      NoncurrentVersionExpiration: { NoncurrentDays: 1 },
    });
  });

  test('filters on the very tag the runtime puts on every _work/ object of a run (the deploy boundary)', async () => {
    const rule = (bucket().Properties.LifecycleConfiguration.Rules as { Id: string; Prefix?: string; TagFilters?: { Key: string; Value: string }[] }[]).find(
      (candidate) => candidate.Id === 'expire-intermediate-shards',
    )!;
    const tagsPut = new Set<string>();
    const local = new LocalStorage(scratchDir('orchard-tags-'));
    const recording = Object.assign(Object.create(local) as Storage, {
      put: (key: string, body: Buffer | string, options?: PutOptions) => {
        if (key.startsWith(WORK)) tagsPut.add(JSON.stringify(options?.tags ?? {}));
        return local.put(key, body, options);
      },
    });
    const folder = new RunFolder(recording);
    await folder.writeConfig({});
    await folder.writePlan({ shards: 0, images: 0, shardSize: 1, startedAt: '', listSeconds: 0 });
    await folder.writeWorkItems('extract', []);
    expect([...tagsPut]).toEqual([JSON.stringify(Object.fromEntries(rule.TagFilters!.map((filter) => [filter.Key, filter.Value])))]);
    // The run folders the rule must reach sit under the results/ prefix the trigger gives as --output.
    expect(rule.Prefix).toBe(TRIGGER_PREFIXES.results);
  });

  test('expires the scale path\'s map results (under map-results/, which Step Functions cannot tag) after 7 days', () => {
    expect(bucket().Properties.LifecycleConfiguration.Rules).toContainEqual({
      Id: 'expire-map-results',
      Status: 'Enabled',
      Prefix: PREFIXES.mapResults,
      ExpirationInDays: 7,
      NoncurrentVersionExpiration: { NoncurrentDays: 1 },
    });
  });

  test('expires noncurrent versions after 30 days and removes expired delete markers', () => {
    expect(bucket().Properties.LifecycleConfiguration.Rules).toContainEqual({
      Id: 'expire-noncurrent-versions',
      Status: 'Enabled',
      NoncurrentVersionExpiration: { NoncurrentDays: 30 },
      ExpiredObjectDeleteMarker: true,
    });
  });

  test('has no lifecycle rule that expires current objects other than tagged intermediate shards and map results', () => {
    const expiring = bucket().Properties.LifecycleConfiguration.Rules.filter((rule: any) => rule.ExpirationInDays !== undefined);
    expect(expiring.map((rule: any) => rule.Id)).toEqual(['expire-intermediate-shards', 'expire-map-results']);
  });
});

describe('access-log bucket', () => {
  test('accepts log objects from the S3 logging service, for the data bucket of this account only', () => {
    expect(policyStatements(logsId)).toContainEqual({
      Effect: 'Allow',
      Principal: { Service: 'logging.s3.amazonaws.com' },
      Action: 's3:PutObject',
      Resource: { 'Fn::Join': ['', [arn(logsId), '/data-bucket/*']] },
      Condition: { ArnLike: { 'aws:SourceArn': arn(bucketId) }, StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
    });
  });

  test('expires access logs after a year', () => {
    expect(logs().Properties.LifecycleConfiguration.Rules).toEqual([{ Id: 'expire-access-logs', Status: 'Enabled', ExpirationInDays: 365 }]);
  });
});

describe('removal policy', () => {
  test('keeps both buckets on cdk destroy by default', () => {
    for (const id of [bucketId, logsId]) {
      expect(resource(template, id)).toMatchObject({ DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
    }
  });

  test('adds no auto-delete custom resource by default', () => {
    template.resourceCountIs('Custom::S3AutoDeleteObjects', 0);
  });

  describe('with orchard:destroyData=true', () => {
    let destroyable: Template;
    let ids: string[];
    beforeAll(() => {
      const app = createOrchardApp({ lambdaDir: fakeBundle('lambda'), modelFetchDir: fakeBundle('model-fetch'),
        context: { 'orchard:destroyData': true },
        runtimeDir: fakeBundle('destroyData'),
        outdir: scratchDir('orchard-cdk-out-'),
      });
      destroyable = Template.fromStack(app.data);
      ids = [logicalId(app.data.data.bucket), logicalId(app.data.data.accessLogsBucket)];
    });

    test('deletes both buckets on cdk destroy', () => {
      for (const id of ids) expect(resource(destroyable, id)).toMatchObject({ DeletionPolicy: 'Delete', UpdateReplacePolicy: 'Delete' });
    });

    test('empties both buckets (every object version) before deleting them', () => {
      for (const id of ids) {
        destroyable.hasResourceProperties('Custom::S3AutoDeleteObjects', { BucketName: { Ref: id } });
      }
      destroyable.resourceCountIs('Custom::S3AutoDeleteObjects', 2);
    });
  });

  test('reads orchard:destroyData=true given on the command line, where it arrives as a string', () => {
    const app = createOrchardApp({ lambdaDir: fakeBundle('lambda'), modelFetchDir: fakeBundle('model-fetch'),
      context: { 'orchard:destroyData': 'true' },
      runtimeDir: fakeBundle('destroyData as a string'),
      outdir: scratchDir('orchard-cdk-out-'),
    });
    Template.fromStack(app.data).hasResource('AWS::S3::Bucket', { DeletionPolicy: 'Delete' });
  });

  test('rejects an orchard:destroyData that is neither true nor false', () => {
    expect(() =>
      createOrchardApp({ lambdaDir: fakeBundle('lambda'), modelFetchDir: fakeBundle('model-fetch'), context: { 'orchard:destroyData': 'yes' }, runtimeDir: fakeBundle('x'), outdir: scratchDir('o-') }),
    ).toThrow('expected true or false for context orchard:destroyData but got "yes"');
  });
});

describe('outputs', () => {
  test('gives the bucket name as BucketName', () => {
    template.hasOutput('BucketName', { Value: { Ref: bucketId } });
  });

  test('exports the bucket name as OrchardData-BucketName, the one value the compute stack imports', () => {
    template.hasOutput('*', { Value: { Ref: bucketId }, Export: { Name: 'OrchardData-BucketName' } });
    expect(Object.values(template.toJSON().Outputs).filter((output: any) => output.Export)).toHaveLength(1);
  });
});

test('the data stack holds only the buckets, their policies and the model fetch (nothing that bills by the hour)', () => {
  const types = new Set(Object.values(template.toJSON().Resources).map((r: any) => r.Type as string));
  types.delete('AWS::CDK::Metadata');
  // The model fetch: a function that runs once per deploy, its role and its log group.
  expect([...types].sort()).toEqual(['AWS::IAM::Policy', 'AWS::IAM::Role', 'AWS::Lambda::Function', 'AWS::Logs::LogGroup', 'AWS::S3::Bucket', 'AWS::S3::BucketPolicy', 'Custom::OrchardModel']);
});

describe('the default model, brought into models/ at deploy', () => {
  const model = () => orchard.data.model;
  const slug = cacheSlug(KERAS_MOBILENET_V2);

  test('is a custom resource with the Keras URL, the bucket and models/, answered within 5 minutes', () => {
    const [custom] = Object.values(template.findResources('Custom::OrchardModel'));
    expect(custom!.Properties).toMatchObject({
      Url: KERAS_MOBILENET_V2,
      Prefix: PREFIXES.models,
      Bucket: { Ref: bucketId },
      ServiceTimeout: '300',
      ServiceToken: { 'Fn::GetAtt': [logicalId(model().function), 'Arn'] },
    });
    // The function answers before its own timeout, which is inside the service timeout.
    expect(resource(template, logicalId(model().function)).Properties.Timeout).toBeLessThan(300);
  });

  test('its function may write its log group, list models/ and read and write the file and its .sha256, nothing else', () => {
    const policies = Object.values(template.findResources('AWS::IAM::Policy')).filter((policy) =>
      (policy.Properties.Roles as unknown[]).some((role) => flat(role) === `<${logicalId(model().role)}>`),
    );
    const statements = policies.flatMap((policy) => policy.Properties.PolicyDocument.Statement as any[]);
    expect(statements.map((s) => `${[s.Action].flat().join(', ')} on ${[s.Resource].flat().map(flat).join(', ')}${s.Condition ? ` if ${JSON.stringify(s.Condition)}` : ''}`)).toEqual([
      `logs:CreateLogStream, logs:PutLogEvents on <${logicalId(model().node.findChild('Logs') as never)}.Arn>`,
      `s3:ListBucket on <${bucketId}.Arn> if {"StringLike":{"s3:prefix":["models/*"]}}`,
      `s3:GetObject, s3:PutObject on <${bucketId}.Arn>/models/${slug}, <${bucketId}.Arn>/models/${slug}.sha256`,
    ]);
  });

  test('its SHA-256 is a stack output', () => {
    expect(template.toJSON().Outputs.ModelSha256.Value).toEqual({ 'Fn::GetAtt': [logicalId(model().node.findChild('Model') as never), 'Sha256'] });
  });
});
