import * as fs from 'node:fs';
import { once } from 'node:events';
import { stringify, type Stringifier } from 'csv-stringify';
import { ByteWriter, ParquetWriter, fileWriter } from 'hyparquet-writer';

/** One block of result rows: keys, labels and an n × k matrix of principal-component values. */
export interface ResultBlock {
  readonly keys: readonly string[];
  readonly labels: readonly string[];
  /** n × k, row-major. */
  readonly values: Float32Array;
}

/** Column names shared by the CSV and Parquet outputs. */
export function resultColumns(k: number): string[] {
  return ['key', 'label', ...Array.from({ length: k }, (_, i) => `pc_${i + 1}`)];
}

/**
 * Shortest decimal that reads back as the same float32: the CSV stays small (float32 precision is what the
 * features have) without losing anything the Parquet file keeps.
 */
export function formatFloat32(value: number): string {
  for (let digits = 6; digits < 9; digits++) {
    const text = value.toPrecision(digits);
    if (Math.fround(Number(text)) === Math.fround(value)) return String(Number(text));
  }
  return String(Number(value.toPrecision(9)));
}

/** Streams result blocks into a CSV file (RFC 4180 quoting by csv-stringify): memory stays one block. */
export class CsvResultWriter {
  private readonly csv: Stringifier;
  private readonly file: fs.WriteStream;
  private readonly done: Promise<unknown>;

  constructor(
    path: string,
    private readonly k: number,
  ) {
    this.file = fs.createWriteStream(path);
    this.csv = stringify({ header: true, columns: resultColumns(k) });
    this.csv.pipe(this.file);
    this.done = once(this.file, 'finish');
  }

  async write(block: ResultBlock): Promise<void> {
    const { k } = this;
    for (let i = 0; i < block.keys.length; i++) {
      const row: string[] = [block.keys[i], block.labels[i]];
      for (let j = 0; j < k; j++) row.push(formatFloat32(block.values[i * k + j]));
      if (!this.csv.write(row)) await once(this.csv, 'drain');
    }
  }

  async close(): Promise<void> {
    this.csv.end();
    await this.done;
  }
}

/** Streams result blocks into a Parquet file (one row group per block): key, label as UTF8, pc_i as FLOAT. */
export class ParquetResultWriter {
  private readonly writer: ParquetWriter;
  private rows = 0;

  /** `target`: a file path, or a ByteWriter for a file built in memory (one shard's part). */
  constructor(
    target: string | ByteWriter,
    private readonly k: number,
    metadata: Record<string, string> = {},
  ) {
    const columns = resultColumns(k);
    this.writer = new ParquetWriter({
      writer: typeof target === 'string' ? fileWriter(target) : target,
      schema: [
        { name: 'root', num_children: columns.length },
        { name: 'key', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
        { name: 'label', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
        ...columns.slice(2).map((name) => ({ name, type: 'FLOAT' as const, repetition_type: 'REQUIRED' as const })),
      ],
      kvMetadata: Object.entries(metadata).map(([key, value]) => ({ key, value })),
      createdBy: 'orchard',
    });
  }

  async write(block: ResultBlock): Promise<void> {
    const n = block.keys.length;
    if (n === 0) return;
    const { k } = this;
    const pcs = Array.from({ length: k }, (_, j) => {
      const column = new Float32Array(n);
      for (let i = 0; i < n; i++) column[i] = block.values[i * k + j];
      return column;
    });
    await this.writer.write({
      columnData: [
        { name: 'key', data: [...block.keys], nullable: false },
        { name: 'label', data: [...block.labels], nullable: false },
        ...pcs.map((data, j) => ({ name: `pc_${j + 1}`, data, nullable: false })),
      ],
      rowGroupSize: n,
    });
    this.rows += n;
  }

  async close(): Promise<void> {
    await this.writer.finish();
  }
}

/** One block as a whole Parquet file in memory (a shard's part of the dataset: a few hundred kB). */
export async function parquetBytes(block: ResultBlock, k: number, metadata: Record<string, string> = {}): Promise<Buffer> {
  const bytes = new ByteWriter();
  const writer = new ParquetResultWriter(bytes, k, metadata);
  await writer.write(block);
  await writer.close();
  return Buffer.from(bytes.getBuffer());
}
