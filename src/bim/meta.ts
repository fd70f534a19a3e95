// The JSON records kept beside the data: `backing.meta.json` (what a complete file is, and the identity of the bytes
// that were verified) and `backing.partial.json` (what a partial file is meant to become). Decoding is strict: a
// record that does not parse is treated as absent, which makes the start-up scan re-verify instead of trusting it.

import { parseIdentity, readIfExists, writeFileAtomic, type FileIdentity, type SignalOptions } from './fsutil.js';

export type ImageFormatName = 'raw' | 'qcow2' | 'unknown';

export interface BackingMeta {
  version: 1;
  name: string;
  uuid: string;
  size: number;
  virtualSize: number;
  format: ImageFormatName;
  /** SHA-512 (hex) of the whole file, computed by this manager or trusted from the data source with its identity. */
  sha512: string;
  /** Identity of the file whose bytes hash to `sha512`; a restart trusts the file only while it still matches. */
  identity: FileIdentity;
  /** When the file became ready (ISO 8601). */
  readyAt: string;
  /** When a scrub last read every byte and found the SHA-512 unchanged (ISO 8601; absent: never since ready). */
  verifiedAt?: string;
  /** The request (an opaque token from the controller) the last scrub answered, repaired or clean. */
  scrubRequest?: string;
}

export interface PartialIntent {
  version: 1;
  name: string;
  uuid: string;
  size: number;
  expectedChecksum: string;
  chunkSize: number;
  startedAt: string;
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isSize = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isSha = (v: unknown): v is string => isStr(v) && /^[0-9a-f]{128}$/.test(v);

export function encodeMeta(m: BackingMeta): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}

export function decodeMeta(text: string): BackingMeta | undefined {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (!o || typeof o !== 'object' || o.version !== 1) return undefined;
  const identity = parseIdentity(o.identity);
  const format = o.format === 'raw' || o.format === 'qcow2' || o.format === 'unknown' ? o.format : undefined;
  if (!isStr(o.name) || !isStr(o.uuid) || !isSize(o.size) || !isSize(o.virtualSize) || !format || !isSha(o.sha512) || !identity) return undefined;
  return {
    version: 1,
    name: o.name,
    uuid: o.uuid,
    size: o.size,
    virtualSize: o.virtualSize,
    format,
    sha512: o.sha512,
    identity,
    readyAt: isStr(o.readyAt) ? o.readyAt : '',
    ...(isStr(o.verifiedAt) ? { verifiedAt: o.verifiedAt } : {}),
    ...(isStr(o.scrubRequest) ? { scrubRequest: o.scrubRequest } : {}),
  };
}

export function encodeIntent(p: PartialIntent): string {
  return `${JSON.stringify(p, null, 2)}\n`;
}

export function decodeIntent(text: string): PartialIntent | undefined {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (!o || typeof o !== 'object' || o.version !== 1) return undefined;
  if (!isStr(o.name) || !isStr(o.uuid) || !isSize(o.size) || !isSha(o.expectedChecksum) || !isSize(o.chunkSize)) return undefined;
  return {
    version: 1,
    name: o.name,
    uuid: o.uuid,
    size: o.size,
    expectedChecksum: o.expectedChecksum,
    chunkSize: o.chunkSize,
    startedAt: isStr(o.startedAt) ? o.startedAt : '',
  };
}

export async function readMeta(path: string): Promise<BackingMeta | undefined> {
  const buf = await readIfExists(path);
  return buf ? decodeMeta(buf.toString('utf8')) : undefined;
}

export async function writeMeta(path: string, m: BackingMeta, opts: SignalOptions = {}): Promise<void> {
  await writeFileAtomic(path, encodeMeta(m), opts);
}

export async function readIntent(path: string): Promise<PartialIntent | undefined> {
  const buf = await readIfExists(path);
  return buf ? decodeIntent(buf.toString('utf8')) : undefined;
}

export async function writeIntent(path: string, p: PartialIntent, opts: SignalOptions = {}): Promise<void> {
  await writeFileAtomic(path, encodeIntent(p), opts);
}
