import * as fs from 'node:fs';
import { once } from 'node:events';
import { parquetMetadata, type RowGroup } from 'hyparquet';
import { deserializeTCompactProtocol } from 'hyparquet/src/thrift.js';
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
 * features have) without losing anything the Parquet file keeps. The text is that of
 * `String(Number(value.toPrecision(digits)))` for the fewest digits from 6 that read back, written straight from
 * toPrecision's digits (`decimalText`): the number-to-string conversion cost more than the search itself.
 */
export function formatFloat32(value: number): string {
  if (value === 0 || !Number.isFinite(value)) return String(Number(value.toPrecision(6)));
  const target = Math.fround(value);
  // Whether d digits read back only ever changes once as d grows: the d-digit rounding is the nearest d-digit
  // decimal, and every (d - 1)-digit decimal is one, so it is at least as near as the (d - 1)-digit rounding.
  // (Exact ties cannot occur: half a decimal step is never half a float32 step.) So 7 first: most values need 7 or 8.
  const seven = value.toPrecision(7);
  if (Math.fround(Number(seven)) === target) {
    const six = value.toPrecision(6);
    return decimalText(Math.fround(Number(six)) === target ? six : seven);
  }
  const eight = value.toPrecision(8);
  return decimalText(Math.fround(Number(eight)) === target ? eight : value.toPrecision(9));
}

/**
 * `String(Number(text))` for the output of toPrecision on a finite non-zero number (at most 21 significant
 * digits, so the double nearest to it prints as those very digits, trailing zeros dropped), laid out by
 * Number.prototype.toString's rules (ECMA-262 Number::toString): plain digits for decimal exponents from -7 to
 * 20, else exponential.
 */
export function decimalText(text: string): string {
  const negative = text.charCodeAt(0) === 45; // '-'
  const body = negative ? text.slice(1) : text;
  const e = body.indexOf('e');
  const mantissa = e < 0 ? body : body.slice(0, e);
  const point = mantissa.indexOf('.');
  const whole = point < 0 ? mantissa : mantissa.slice(0, point);
  let digits = point < 0 ? mantissa : whole + mantissa.slice(point + 1);
  // The value is 0.digits x 10^n once leading zeros are gone.
  let n = whole.length + (e < 0 ? 0 : Number(body.slice(e + 1)));
  let lead = 0;
  while (lead < digits.length - 1 && digits.charCodeAt(lead) === 48) lead++;
  n -= lead;
  let end = digits.length;
  while (end > lead + 1 && digits.charCodeAt(end - 1) === 48) end--;
  digits = digits.slice(lead, end);
  const k = digits.length;
  let out: string;
  if (k <= n && n <= 21) out = digits + '0'.repeat(n - k);
  else if (0 < n && n <= 21) out = `${digits.slice(0, n)}.${digits.slice(n)}`;
  else if (-6 < n && n <= 0) out = `0.${'0'.repeat(-n)}${digits}`;
  else out = `${digits[0]}${k > 1 ? `.${digits.slice(1)}` : ''}e${n - 1 < 0 ? '-' : '+'}${Math.abs(n - 1)}`;
  return negative ? `-${out}` : out;
}

/**
 * A CSV field as csv-stringify writes it with its defaults (RFC 4180): quoted when it holds a comma, a double
 * quote, a CR or an LF, with its double quotes doubled; as it is otherwise.
 */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/**
 * Streams result blocks into a CSV file, as csv-stringify would write them (RFC 4180 quoting: `csvField`), a block
 * of lines per write: a row goes out as one string, not as k + 2 fields through a stream transform each. Memory
 * stays one block.
 */
export class CsvResultWriter {
  private readonly file: fs.WriteStream;
  private readonly done: Promise<unknown>;

  constructor(
    path: string,
    private readonly k: number,
  ) {
    this.file = fs.createWriteStream(path);
    this.done = once(this.file, 'finish');
    this.file.write(`${resultColumns(k).map(csvField).join(',')}\n`);
  }

  async write(block: ResultBlock): Promise<void> {
    const { k } = this;
    let lines = '';
    for (let i = 0; i < block.keys.length; i++) {
      let line = `${csvField(block.keys[i])},${csvField(block.labels[i])}`;
      for (let j = 0; j < k; j++) line += `,${formatFloat32(block.values[i * k + j])}`;
      lines += `${line}\n`;
      if (lines.length >= CSV_CHUNK_CHARS || i === block.keys.length - 1) {
        if (!this.file.write(lines)) await once(this.file, 'drain');
        lines = '';
      }
    }
  }

  async close(): Promise<void> {
    this.file.end();
    await this.done;
  }
}

/** Characters of CSV lines handed to the file stream at once. */
const CSV_CHUNK_CHARS = 1 << 16;

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

  /**
   * The block as the row group of `part`, a file `parquetBytes` made of this very block with the same metadata:
   * its encoded column chunks are copied as they are and only their offsets in the file change, so the file is
   * byte for byte the one `write(block)` makes, without encoding the block a second time. A part this cannot
   * copy (not one row group of this schema, or with page indexes, which hold offsets of their own) is encoded
   * from the block instead.
   */
  async writeFromPart(part: Uint8Array, block: ResultBlock): Promise<void> {
    const group = copyableRowGroup(part, this.writer.schema.length);
    if (!group || group.num_rows !== BigInt(block.keys.length)) return this.write(block);
    const out = this.writer.writer;
    // The part's row group starts right after its 4-byte magic; here it starts at the writer's offset.
    const shift = BigInt(out.offset - PARQUET_MAGIC_BYTES);
    const moved = (offset: bigint | undefined) => (offset === undefined ? undefined : offset + shift);
    out.appendBytes(part.subarray(PARQUET_MAGIC_BYTES, PARQUET_MAGIC_BYTES + Number(group.total_compressed_size)));
    this.writer.row_groups.push({
      ...group,
      columns: group.columns.map((chunk) => ({
        ...chunk,
        file_offset: moved(chunk.file_offset)!,
        meta_data: chunk.meta_data && { ...chunk.meta_data, data_page_offset: moved(chunk.meta_data.data_page_offset)!, dictionary_page_offset: moved(chunk.meta_data.dictionary_page_offset) },
      })),
    });
    this.writer.num_rows += group.num_rows;
    this.rows += block.keys.length;
  }

  async close(): Promise<void> {
    await this.writer.finish();
  }
}

/** "PAR1", at the start and at the end of every Parquet file. */
const PARQUET_MAGIC_BYTES = 4;

/**
 * The one row group of a part whose bytes can be copied into another file by shifting its offsets: `columns`
 * leaves, right after the magic, and nothing between it and the footer (no page index, no bloom filter).
 */
function copyableRowGroup(part: Uint8Array, schemaLength: number): RowGroup | undefined {
  let metadata;
  let raw;
  try {
    metadata = parquetMetadata(part);
    // hyparquet's reader drops the statistics' NaN counts (thrift field 9), which the writer writes for FLOAT
    // columns: read from the footer as it is, they go into the new footer too.
    const view = new DataView(part.buffer, part.byteOffset, part.byteLength);
    raw = deserializeTCompactProtocol({ view, offset: part.length - 8 - metadata.metadata_length });
  } catch {
    return undefined;
  }
  const group = metadata.row_groups[0];
  if (metadata.row_groups.length !== 1 || metadata.schema.length !== schemaLength || !group) return undefined;
  const size = Number(group.total_compressed_size);
  if (PARQUET_MAGIC_BYTES + size + metadata.metadata_length + 8 !== part.length) return undefined;
  const plain = group.columns.every(
    (chunk) =>
      chunk.offset_index_offset === undefined && chunk.column_index_offset === undefined && chunk.meta_data?.bloom_filter_offset === undefined && chunk.file_path === undefined,
  );
  if (!plain) return undefined;
  const chunks = raw.field_4?.[0]?.field_1 as { field_3?: { field_12?: { field_9?: bigint } } }[] | undefined;
  return {
    ...group,
    columns: group.columns.map((chunk, c) => {
      const nanCount = chunks?.[c]?.field_3?.field_12?.field_9;
      return nanCount === undefined || !chunk.meta_data?.statistics ? chunk : { ...chunk, meta_data: { ...chunk.meta_data, statistics: { ...chunk.meta_data.statistics, nan_count: nanCount } } };
    }),
  };
}

/** One block as a whole Parquet file in memory (a shard's part of the dataset: a few hundred kB). */
export async function parquetBytes(block: ResultBlock, k: number, metadata: Record<string, string> = {}): Promise<Buffer> {
  const bytes = new ByteWriter();
  const writer = new ParquetResultWriter(bytes, k, metadata);
  await writer.write(block);
  await writer.close();
  return Buffer.from(bytes.getBuffer());
}
