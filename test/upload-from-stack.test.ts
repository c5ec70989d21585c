// `npm run upload -- <dir>` with no URI: the bucket comes from the stack outputs (CloudFormation through
// aws-sdk-client-mock: it has no local server), the upload itself goes to a real S3 server on loopback.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { main, type UploadDeps } from '../bin/upload';
import { createS3Client } from '../runtime/storage';
import { missingStack, stackWith } from './helpers/cloudformation';
import { startTestS3, tempDir } from './helpers/s3';

const cfn = mockClient(CloudFormationClient);
const BUCKET = 'orchard-data-bucket-1a2b3c';
const OTHER = 'orchard-other';
const REGION = 'eu-west-1';
const FILES = ['Apple Braeburn/0_100.jpg', 'Apple Braeburn/1_100.jpg', 'Pêche de vigne/r_2_100.jpg'];

interface Run {
  code: number;
  out: string;
  err: string;
  regions: (string | undefined)[];
}

let s3: Awaited<ReturnType<typeof startTestS3>>;
let client: S3Client;
let source: string;
const savedEnv = { ...process.env };

async function upload(...args: string[]): Promise<Run> {
  const run: Run = { code: -1, out: '', err: '', regions: [] };
  const deps: UploadDeps = {
    cloudFormation: (region) => {
      run.regions.push(region);
      return new CloudFormationClient({ region: region ?? REGION });
    },
    io: {
      out: (text) => {
        run.out += text;
      },
      err: (text) => {
        run.err += text;
      },
      exit: () => undefined,
      isTty: false,
    },
    env: { AWS_REGION: REGION },
  };
  // The S3 server is reached through the same --endpoint a user would give for any S3-compatible server.
  run.code = await main(['node', 'upload', ...args, '--endpoint', s3.endpoint], deps);
  return run;
}

async function keys(bucket: string): Promise<string[]> {
  const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
  return (listed.Contents ?? []).map((item) => item.Key!).sort();
}

beforeAll(async () => {
  s3 = await startTestS3([BUCKET, OTHER]);
  client = createS3Client(s3.options);
  // `orchard upload` takes credentials from the SDK's default chain, as on a laptop: here s3rver's fixed ones.
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  source = tempDir('orchard-upload-stack-');
  for (const [i, key] of FILES.entries()) {
    const file = path.join(source, ...key.split('/'));
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.from(`image ${i} `.repeat(100 + i)));
  }
});

afterAll(async () => {
  process.env = savedEnv;
  await s3?.close();
  fs.rmSync(source, { recursive: true, force: true });
});

beforeEach(() => {
  cfn.reset();
});

describe('npm run upload without an s3 URI', () => {
  it('uploads to s3://<BucketName of OrchardData>/images/, in the region of the stack', async () => {
    cfn.on(DescribeStacksCommand, { StackName: 'OrchardData' }).resolves(stackWith('OrchardData', { BucketName: BUCKET }));

    const run = await upload(source);

    expect(run.code).toBe(0);
    expect(run.regions).toEqual([REGION]);
    expect(cfn.commandCalls(DescribeStacksCommand).map((call) => call.args[0].input)).toEqual([{ StackName: 'OrchardData' }]);
    expect(run.err).toContain(`destination s3://${BUCKET}/images/ (output BucketName of stack OrchardData in ${REGION})`);
    expect(run.out).toMatch(new RegExp(`^uploaded 3, skipped 0 unchanged, failed 0 of 3 files \\(.* MB in .* s\\) to s3://${BUCKET}/images/\\n$`));
    expect(await keys(BUCKET)).toEqual(FILES.map((key) => `images/${key}`).sort());
  });

  it('a second upload skips the unchanged files (the same upload as `orchard upload`)', async () => {
    cfn.on(DescribeStacksCommand, { StackName: 'OrchardData' }).resolves(stackWith('OrchardData', { BucketName: BUCKET }));
    const run = await upload(source, '--quiet');
    expect(run.code).toBe(0);
    expect(run.out).toContain('uploaded 0, skipped 3 unchanged, failed 0 of 3 files');
    expect(run.err).toBe('');
  });

  it('falls back to the compute stack when the data stack does not exist', async () => {
    cfn.on(DescribeStacksCommand, { StackName: 'OrchardData' }).rejects(missingStack('OrchardData'));
    cfn.on(DescribeStacksCommand, { StackName: 'OrchardCompute' }).resolves(stackWith('OrchardCompute', { BucketName: OTHER, InstanceId: 'i-0abc' }));

    const run = await upload(source);

    expect(run.code).toBe(0);
    expect(run.err).toContain(`destination s3://${OTHER}/images/ (output BucketName of stack OrchardCompute in ${REGION})`);
    expect(await keys(OTHER)).toEqual(FILES.map((key) => `images/${key}`).sort());
  });

  it('--data-stack and --region choose the stack and the region', async () => {
    cfn.on(DescribeStacksCommand, { StackName: 'OrchardData-dev' }).resolves(stackWith('OrchardData-dev', { BucketName: BUCKET }));
    const run = await upload(source, '--data-stack', 'OrchardData-dev', '--region', 'us-west-2');
    expect(run.code).toBe(0);
    expect(run.regions).toEqual(['us-west-2']);
    expect(cfn.commandCalls(DescribeStacksCommand)[0]!.args[0].input).toEqual({ StackName: 'OrchardData-dev' });
  });

  it('with neither stack deployed: exit 1 and an error naming both stacks and the region', async () => {
    cfn.on(DescribeStacksCommand).callsFake((input: { StackName: string }) => Promise.reject(missingStack(input.StackName)));
    const run = await upload(source);
    expect(run.code).toBe(1);
    expect(run.err).toBe(
      `upload: Stacks OrchardData and OrchardCompute not found in ${REGION}: run \`npx cdk deploy --all\` first, ` +
        'pass the region it was deployed to with --region, or give the destination as an s3:// URI\n',
    );
    expect(run.out).toBe('');
  });

  it('a stack without a BucketName output is an error naming the stack and the output', async () => {
    cfn.on(DescribeStacksCommand).resolves(stackWith('OrchardData', {}));
    const run = await upload(source);
    expect(run.code).toBe(1);
    expect(run.err).toContain(`upload: Stack OrchardData in ${REGION} has no output BucketName`);
  });
});

describe('npm run upload with an s3 URI', () => {
  it('uploads there without asking CloudFormation', async () => {
    const run = await upload(source, `s3://${OTHER}/given/prefix/`);
    expect(run.code).toBe(0);
    expect(cfn.calls()).toHaveLength(0);
    expect((await keys(OTHER)).filter((key) => key.startsWith('given/'))).toEqual(FILES.map((key) => `given/prefix/${key}`).sort());
  });

  it('--help describes the optional URI and exits 0', async () => {
    const run = await upload('--help');
    expect(run.code).toBe(0);
    expect(run.out).toContain('[s3-uri]');
    expect(run.out).toContain('--data-stack');
    expect(cfn.calls()).toHaveLength(0);
  });
});
