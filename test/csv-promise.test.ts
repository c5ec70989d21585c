/**
 * What pca.csv promises (issue 16, defect 12): it is data, not a spreadsheet. Every key and label is written
 * exactly as the Parquet file and the input have it (RFC 4180 quoting, nothing added, nothing dropped), so that a
 * reader that parses CSV — DuckDB here, pandas with the call the README gives — gets the very strings back, even
 * for a class folder named like a spreadsheet formula. (README: "What pca.csv promises".)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parquetReadObjects } from 'hyparquet';
import { generateSampleImages } from '../runtime/images/generate';
import { initTf } from '../runtime/model/backend';
import { LocalStorage } from '../runtime/storage';
import { orchard } from './helpers/cli';
import { tempDir } from './helpers/s3';
import { TINY_INPUT, saveTinyModel } from './helpers/tiny-model';

const HOSTILE = ['=HYPERLINK("evil.example?q=1","click")', '+1-2', '@SUM(A1)', '-3', 'NA', 'a,b "c"', ' lead', 'two\nlines'];

let output: string;
let inputKeys: string[];

beforeAll(async () => {
  const tf = await initTf('wasm');
  const modelDir = tempDir();
  await saveTinyModel(tf.tf, new LocalStorage(modelDir));
  const images = tempDir();
  await generateSampleImages(images, { perClass: 2, seed: 3, classes: ['Kiwi'] });
  // Each hostile name as a class folder, and one image at the top (no folder: an empty label).
  for (const name of HOSTILE) {
    fs.mkdirSync(path.join(images, name));
    fs.copyFileSync(path.join(images, 'Kiwi', fs.readdirSync(path.join(images, 'Kiwi'))[0]!), path.join(images, name, '0.jpg'));
  }
  fs.copyFileSync(path.join(images, 'Kiwi', fs.readdirSync(path.join(images, 'Kiwi'))[0]!), path.join(images, 'top.jpg'));
  inputKeys = (fs.readdirSync(images, { recursive: true }) as string[]).filter((name) => name.endsWith('.jpg')).sort();
  output = tempDir();
  const run = await orchard('run', '-i', images, '-o', output, '--run-id', 'csv', '--model', modelDir, '--feature-layer', 'features', '--input-size', String(TINY_INPUT), '--backend', 'wasm', '-k', '2', '-q');
  expect(run.code).toBe(0);
});

describe('16.12 pca.csv carries the keys and labels exactly', () => {
  test('16.12 a class folder named =HYPERLINK(...) reads back from pca.csv exactly as from pca.parquet', async () => {
    const { DuckDBInstance } = await import('@duckdb/node-api');
    const connection = await (await DuckDBInstance.create(':memory:')).connect();
    const csvFile = path.join(output, 'csv', 'pca.csv').replace(/'/g, "''");
    // all_varchar: strings stay strings (no type sniffing); a null string that never occurs: "NA" and "" are values.
    const csv = (await connection.runAndReadAll(`select key, label from read_csv('${csvFile}', header = true, all_varchar = true, nullstr = ['\\N'], quote = '"', escape = '"') order by key`)).getRowObjects();
    const parquet = (await parquetReadObjects({ file: await fs.promises.readFile(path.join(output, 'csv', 'pca.parquet')).then((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer), columns: ['key', 'label'] }))
      .map((row) => ({ key: row.key as string, label: row.label as string }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    expect(csv).toEqual(parquet);
    expect(parquet.map((row) => row.key)).toEqual(inputKeys);
    for (const name of HOSTILE) expect(parquet).toContainEqual({ key: `${name}/0.jpg`, label: name });
    expect(parquet).toContainEqual({ key: 'top.jpg', label: '' });
  });
});
