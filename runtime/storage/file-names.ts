/**
 * File names as storage keys. A Linux file name is bytes, not text: `caf\xe9.jpg` (Latin-1) is a valid name and
 * not valid UTF-8. A key must be text (it goes into CSV, Parquet and JSON) and must lead back to the file, so a
 * name's valid UTF-8 is kept as it is, and every byte that is not part of valid UTF-8 is percent-encoded (`%E9`),
 * as is `%` itself (`%25`) so that the encoding is reversible: `caf\xe9.jpg` → `caf%E9.jpg`, `100%.jpg` →
 * `100%25.jpg`. To get the name back, replace every `%XX` by the byte 0xXX.
 */

/** The key segment of a file name's bytes. */
export function keyOfName(name: Buffer): string {
  let out = '';
  let i = 0;
  while (i < name.length) {
    const length = utf8SequenceLength(name, i);
    if (length === 0) {
      out += `%${name[i]!.toString(16).toUpperCase().padStart(2, '0')}`;
      i += 1;
    } else {
      const text = name.toString('utf8', i, i + length);
      out += text === '%' ? '%25' : text;
      i += length;
    }
  }
  return out;
}

/**
 * The bytes of a key (or of a path made of keys): `%25` and `%80`–`%FF` decoded, everything else as UTF-8. Only
 * those: a key can never decode to a `/`, a `.` or a NUL that its text did not show.
 */
export function nameOfKey(key: string): Buffer {
  if (!key.includes('%')) return Buffer.from(key);
  const parts: Buffer[] = [];
  let text = '';
  for (let i = 0; i < key.length; i++) {
    const hex = key[i] === '%' ? /^[0-9A-Fa-f]{2}/.exec(key.slice(i + 1, i + 3))?.[0] : undefined;
    const byte = hex === undefined ? -1 : parseInt(hex, 16);
    if (byte === 0x25 || byte >= 0x80) {
      parts.push(Buffer.from(text), Buffer.from([byte]));
      text = '';
      i += 2;
    } else {
      text += key[i];
    }
  }
  parts.push(Buffer.from(text));
  return Buffer.concat(parts);
}

/** The length of the valid UTF-8 sequence at `i` (1–4), or 0 when the byte there does not start one. */
function utf8SequenceLength(bytes: Buffer, i: number): number {
  const lead = bytes[i]!;
  if (lead < 0x80) return 1;
  const continuation = (at: number, low = 0x80, high = 0xbf) => at < bytes.length && bytes[at]! >= low && bytes[at]! <= high;
  if (lead >= 0xc2 && lead <= 0xdf) return continuation(i + 1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    // No overlong forms (E0 80–9F) and no UTF-16 surrogates (ED A0–BF).
    const [low, high] = lead === 0xe0 ? [0xa0, 0xbf] : lead === 0xed ? [0x80, 0x9f] : [0x80, 0xbf];
    return continuation(i + 1, low, high) && continuation(i + 2) ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    const [low, high] = lead === 0xf0 ? [0x90, 0xbf] : lead === 0xf4 ? [0x80, 0x8f] : [0x80, 0xbf];
    return continuation(i + 1, low, high) && continuation(i + 2) && continuation(i + 3) ? 4 : 0;
  }
  return 0;
}
