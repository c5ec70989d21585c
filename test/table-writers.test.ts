/**
 * pca.csv's writer: the very bytes csv-stringify wrote with its defaults (the writer it replaced, for speed), and
 * numbers as `String(Number(value.toPrecision(d)))` with the fewest digits d from 6 that read back as the same
 * float32 — checked against those references on hostile strings and on float32 values of every magnitude.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { mulberry32 } from '../runtime/random';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { CsvResultWriter, ParquetResultWriter, csvField, decimalText, formatFloat32, parquetBytes, resultColumns, type ResultBlock } from '../runtime/output/table-writers';
import { tempDir } from './helpers/s3';

/** What formatFloat32 wrote before `decimalText`: the reference. */
function referenceFormat(value: number): string {
  for (let digits = 6; digits < 9; digits++) {
    const text = value.toPrecision(digits);
    if (Math.fround(Number(text)) === Math.fround(value)) return String(Number(text));
  }
  return String(Number(value.toPrecision(9)));
}

/** Float32 values from random bit patterns: every exponent, subnormals, both signs (not NaN or infinity). */
function randomFloat32s(count: number, seed: number): Float32Array {
  const random = mulberry32(seed);
  const bits = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    let b: number;
    do b = Math.floor(random() * 2 ** 32) >>> 0;
    while (((b >>> 23) & 0xff) === 0xff);
    bits[i] = b;
  }
  return new Float32Array(bits.buffer);
}

describe('formatFloat32', () => {
  it('writes what String(Number(toPrecision)) wrote, for float32 values of every magnitude', () => {
    const values = randomFloat32s(200_000, 7);
    const mismatches: string[] = [];
    for (const value of values) {
      if (formatFloat32(value) !== referenceFormat(value)) mismatches.push(`${value}: ${formatFloat32(value)} vs ${referenceFormat(value)}`);
    }
    expect(mismatches.slice(0, 5)).toEqual([]);
  });

  it('writes the edge cases as before: zeros, powers of ten, the switch to exponents, extremes', () => {
    const edges = [0, -0, 1, -1, 10, 0.1, 1e-6, 1e-7, 9.999999e-7, 1e21, 1e20, 9.99999e20, 123456789, 1e-45, -1.4e-45, 3.4028235e38, -3.4028235e38, 1.17549435e-38, 0.5, 100, 1e6, 1e7, NaN, Infinity, -Infinity];
    for (const edge of edges) {
      const value = Math.fround(edge);
      expect([value, formatFloat32(value)]).toEqual([value, referenceFormat(value)]);
    }
  });

  it('lays out toPrecision texts as Number.prototype.toString does', () => {
    const texts = ['1.00000e-7', '1.00000e-6', '0.000123450', '-0.00100000', '1.23457e+8', '1.00000e+21', '9.99999e+20', '120.000', '-5.00000', '0.100000', '1.2345678e-20'];
    for (const text of texts) expect([text, decimalText(text)]).toEqual([text, String(Number(text))]);
  });
});

describe('CsvResultWriter', () => {
  const hostile = ['plain', '', 'a,b', 'say "hi"', 'two\nlines', 'cr\rhere', '=SUM(A1)', '-3', ' lead', 'naïve 果物', '""', ',', '\r\n'];

  it('quotes a field exactly as csv-stringify does', () => {
    for (const value of hostile) expect(csvField(value)).toBe(stringify([[value]]).slice(0, -1));
  });

  it('writes the bytes csv-stringify wrote (header, quoting, numbers, a block per write), and only the header for no rows', async () => {
    const dir = tempDir();
    const k = 3;
    const keys = hostile.map((name, i) => `${name}/${i}.jpg`);
    const labels = hostile;
    const values = randomFloat32s(keys.length * k, 3);
    const file = path.join(dir, 'pca.csv');
    const writer = new CsvResultWriter(file, k);
    await writer.write({ keys: keys.slice(0, 5), labels: labels.slice(0, 5), values: values.subarray(0, 5 * k) });
    await writer.write({ keys: keys.slice(5), labels: labels.slice(5), values: values.subarray(5 * k) });
    await writer.close();
    const rows = keys.map((key, i) => [key, labels[i], ...Array.from(values.subarray(i * k, (i + 1) * k), referenceFormat)]);
    expect(fs.readFileSync(file, 'utf8')).toBe(stringify(rows, { header: true, columns: resultColumns(k) }));

    const empty = path.join(dir, 'empty.csv');
    const none = new CsvResultWriter(empty, k);
    await none.close();
    expect(fs.readFileSync(empty, 'utf8')).toBe(stringify([], { header: true, columns: resultColumns(k) }));
  });
});

describe('ParquetResultWriter.writeFromPart', () => {
  const k = 4;
  const metadata = { orchard_run_id: 'r', orchard_model: 'm' };
  const block = (n: number, seed: number, keyLength = 8): ResultBlock => ({
    keys: Array.from({ length: n }, (_, i) => `${['naïve 果物', 'a,b', 'say "hi"'][i % 3]}/${String(seed * 100_000 + i).padStart(keyLength, '0')}.jpg`),
    labels: Array.from({ length: n }, (_, i) => ['apple', 'pear', ''][(i + seed) % 3]!),
    values: randomFloat32s(n * k, seed),
  });
  const write = async (file: string, blocks: readonly ResultBlock[], parts?: readonly Uint8Array[]) => {
    const writer = new ParquetResultWriter(file, k, metadata);
    for (const [i, b] of blocks.entries()) await (parts ? writer.writeFromPart(parts[i]!, b) : writer.write(b));
    await writer.close();
    return fs.readFileSync(file);
  };

  it('makes the very file that encoding every block again makes, from the parts', async () => {
    const dir = tempDir();
    const blocks = [block(500, 1), block(1, 2), block(37, 3)];
    const parts = await Promise.all(blocks.map((b) => parquetBytes(b, k, metadata)));
    const assembled = await write(path.join(dir, 'assembled.parquet'), blocks, parts);
    expect(assembled.equals(await write(path.join(dir, 'encoded.parquet'), blocks))).toBe(true);
    const file = assembled.buffer.slice(assembled.byteOffset, assembled.byteOffset + assembled.byteLength) as ArrayBuffer;
    const rows = (await parquetReadObjects({ file })) as Record<string, unknown>[];
    const all = blocks.flatMap((b) => b.keys.map((key, i) => ({ key, label: b.labels[i], pcs: Array.from(b.values.subarray(i * k, (i + 1) * k)) })));
    expect(rows.map((row) => ({ key: row.key, label: row.label, pcs: resultColumns(k).slice(2).map((name) => row[name]) }))).toEqual(all);
  });

  it('encodes the block when its part cannot be copied: page indexes, another schema, not a Parquet file', async () => {
    const dir = tempDir();
    // Keys of more than 1 MB in one column chunk: two pages, and an offset index whose offsets would be stale.
    const big = block(12_000, 4, 100);
    const blocks = [block(20, 5), big, block(30, 6), block(10, 7)];
    const other = new ParquetResultWriter(path.join(dir, 'other.parquet'), k + 1);
    const parts = [
      await parquetBytes(blocks[0]!, k, metadata),
      await parquetBytes(big, k, metadata),
      await parquetBytes({ ...blocks[2]!, values: randomFloat32s(30 * (k + 1), 8) }, k + 1, metadata),
      Buffer.from('not parquet'),
    ];
    await other.close();
    expect(parquetMetadata(parts[1]!).row_groups[0]!.columns[0]!.offset_index_offset).toBeDefined();
    const assembled = await write(path.join(dir, 'assembled.parquet'), blocks, parts);
    expect(assembled.equals(await write(path.join(dir, 'encoded.parquet'), blocks))).toBe(true);
  });
});
