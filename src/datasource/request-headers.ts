// Extra request headers for a download, read from a header file (`--header-file`): one `Name: value` per line,
// blank lines and `#` comments ignored. The values are credentials more often than not (`Authorization: Bearer …`),
// so errors name the line number, never the value, and nothing here is logged.

import { readFile } from 'node:fs/promises';
import { DataSourceError } from './errors.js';

/** RFC 9110 token characters: what a header name may be made of. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Headers the downloader sets itself (ranges, framing) or that would change what connection is made.
const RESERVED = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'range', 'if-range', 'upgrade', 'te', 'trailer', 'keep-alive', 'proxy-connection', 'expect', 'accept-encoding']);

export type RequestHeaders = ReadonlyArray<readonly [name: string, value: string]>;

/** Parses header-file text. Throws InvalidArgument naming the line for a malformed or reserved header. */
export function parseHeaderText(text: string, source = 'header file'): RequestHeaders {
  const out: [string, string][] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    const where = `${source} line ${i + 1}`;
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new DataSourceError('InvalidArgument', `${where} is not "Name: value"`);
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (!TOKEN.test(name)) throw new DataSourceError('InvalidArgument', `${where}: the header name is not a valid HTTP token`);
    if (RESERVED.has(name.toLowerCase())) {
      throw new DataSourceError('InvalidArgument', `${where}: the header "${name}" is set by the downloader and cannot be given`);
    }
    // CR/LF are impossible after the split; other control characters would be refused by Node at request time,
    // where the error could echo the value.
    if (hasControl(value)) throw new DataSourceError('InvalidArgument', `${where}: the header value contains control characters`);
    out.push([name, value]);
  }
  return out;
}

/** Control characters other than horizontal tab (RFC 9110 field values). */
function hasControl(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}

export async function readHeaderFile(path: string, { signal }: { signal?: AbortSignal } = {}): Promise<RequestHeaders> {
  let text: string;
  try {
    text = await readFile(path, { encoding: 'utf8', ...(signal ? { signal } : {}) });
  } catch (err) {
    throw new DataSourceError('InvalidArgument', `cannot read the header file ${JSON.stringify(path)}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
  return parseHeaderText(text, `header file ${JSON.stringify(path)}`);
}
