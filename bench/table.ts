export interface Target {
  readonly op: '>=' | '<=';
  readonly limit: number;
  readonly unit?: string;
}

export interface Row {
  readonly name: string;
  readonly value: number | string | null;
  readonly target?: Target;
  readonly note?: string;
  /** Decimals shown (by default from the value's size). */
  readonly digits?: number;
}

export function verdict(value: Row['value'], target: Target | undefined): '' | 'PASS' | 'MISS' | 'n/a' {
  if (!target) return '';
  if (typeof value !== 'number') return 'n/a';
  return (target.op === '>=' ? value >= target.limit : value <= target.limit) ? 'PASS' : 'MISS';
}

function formatValue(value: Row['value'], digits?: number): string {
  if (value === null) return 'n/a';
  if (typeof value === 'string') return value;
  if (digits !== undefined) return value.toFixed(digits);
  const abs = Math.abs(value);
  return abs >= 100 ? value.toFixed(0) : abs >= 10 ? value.toFixed(1) : abs >= 0.1 ? value.toFixed(2) : value.toFixed(3);
}

/** A plain-text table: measure, value (right-aligned), target, PASS/MISS, note. */
export function formatTable(rows: readonly Row[]): string {
  const cells = rows.map((row) => [
    row.name,
    formatValue(row.value, row.digits),
    row.target ? `${row.target.op} ${row.target.limit}${row.target.unit ?? ''}` : '',
    verdict(row.value, row.target),
    row.note ?? '',
  ]);
  const header = ['measure', 'value', 'target', '', 'note'];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => (i === 1 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}
