// Pure parser for the qcow2 header extension area (the type/length/data records that follow the fixed header in the
// first cluster). Split from qcow2-header.ts, which owns the layout diagram and the refusal rules.

import { ImageFormatError } from './errors.js';

export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_NAMES = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO_HEADER = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

export interface Qcow2FeatureName {
  type: 'incompatible' | 'compatible' | 'autoclear';
  bit: number;
  name: string;
}

export interface Qcow2Bitmaps {
  count: number;
  directorySize: number;
  directoryOffset: number;
}

export interface Qcow2HeaderExtension {
  type: number;
  /** File offset of the extension's 8-byte type/length prefix. */
  offset: number;
  /** Length of the data, without the prefix and padding. */
  length: number;
}

export interface Qcow2Extensions {
  extensions: Qcow2HeaderExtension[];
  featureNames: Qcow2FeatureName[];
  backingFormat?: string;
  bitmaps?: Qcow2Bitmaps;
}

const FEATURE_TYPES = ['incompatible', 'compatible', 'autoclear'] as const;
const FEATURE_ENTRY_SIZE = 48;
// Not fatal: names are for messages only; undecodable bytes become U+FFFD instead of an exception.
const utf8 = new TextDecoder('utf-8');

/**
 * Walk the extensions from `start` (the header length) up to `limit` (the end of the first cluster, which is where
 * qemu stops too). An extension running past `limit` is `Corrupt`; one running past the end of `buf` is `Truncated`.
 */
export function parseQcow2Extensions(buf: Uint8Array, start: number, limit: number): Qcow2Extensions {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Qcow2Extensions = { extensions: [], featureNames: [] };
  let offset = start;
  while (offset + 8 <= limit) {
    if (offset + 8 > buf.length) throw truncated(offset, 8, buf.length, 'a header extension prefix');
    const type = view.getUint32(offset);
    const length = view.getUint32(offset + 4);
    if (type === EXT_END) break;
    const data = offset + 8;
    if (data + length > limit) {
      throw fail('Corrupt', offset, `header extension 0x${hex(type)} of ${length} bytes runs past the end of the first cluster (${limit})`);
    }
    if (data + length > buf.length) throw truncated(offset, 8 + length, buf.length, `header extension 0x${hex(type)}`);
    out.extensions.push({ type, offset, length });
    const bytes = buf.subarray(data, data + length);
    switch (type) {
      case EXT_BACKING_FORMAT:
        out.backingFormat = utf8.decode(bytes);
        break;
      case EXT_FEATURE_NAMES:
        out.featureNames.push(...parseFeatureNames(bytes));
        break;
      case EXT_BITMAPS:
        out.bitmaps = parseBitmaps(view, offset, length);
        break;
      case EXT_DATA_FILE:
        throw fail('ExternalDataFile', offset, `the image keeps its data in an external data file ${JSON.stringify(utf8.decode(bytes))}; a backing image must be self-contained`);
      case EXT_CRYPTO_HEADER:
        // Only LUKS images carry this, and crypt_method 0 was already checked: the two disagree.
        throw fail('Corrupt', offset, 'a full disk encryption header extension is present but crypt_method is 0');
      default:
        break; // Unknown extensions "can be safely ignored" (spec); they stay listed in `extensions`.
    }
    offset = data + Math.ceil(length / 8) * 8;
  }
  return out;
}

function parseFeatureNames(bytes: Uint8Array): Qcow2FeatureName[] {
  const names: Qcow2FeatureName[] = [];
  // A trailing partial entry is ignored rather than refused: the table only feeds error messages.
  for (let at = 0; at + FEATURE_ENTRY_SIZE <= bytes.length; at += FEATURE_ENTRY_SIZE) {
    const type = FEATURE_TYPES[bytes[at] ?? 255];
    const bit = bytes[at + 1] ?? 255;
    if (type === undefined || bit > 63) continue;
    const raw = bytes.subarray(at + 2, at + FEATURE_ENTRY_SIZE);
    const nul = raw.indexOf(0);
    names.push({ type, bit, name: utf8.decode(nul === -1 ? raw : raw.subarray(0, nul)) });
  }
  return names;
}

function parseBitmaps(view: DataView, offset: number, length: number): Qcow2Bitmaps {
  if (length < 24) throw fail('Corrupt', offset, `bitmaps extension is ${length} bytes, expected at least 24`);
  const data = offset + 8;
  const size = view.getBigUint64(data + 8);
  const dirOffset = view.getBigUint64(data + 16);
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  if (size > max || dirOffset > max) throw fail('Corrupt', offset, 'bitmaps extension has a directory size or offset beyond 2^53');
  return { count: view.getUint32(data), directorySize: Number(size), directoryOffset: Number(dirOffset) };
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function truncated(offset: number, width: number, have: number, what: string): ImageFormatError {
  return fail('Truncated', offset, `${what} needs ${width} bytes but the ${have} bytes given end first`);
}

function fail(code: 'Corrupt' | 'Truncated' | 'ExternalDataFile', offset: number, text: string): ImageFormatError {
  return new ImageFormatError(code, `qcow2 header at offset ${offset}: ${text}`, { offset });
}
