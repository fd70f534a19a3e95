// Small big-endian field helpers shared by the NBD encoders and decoders: 64-bit numbers without BigInt on the hot
// path, and strict decoding of protocol strings (UTF-8, no NUL, at most 4096 bytes).

import { NBD_MAX_STRING } from './constants.js';
import { protocolError } from './errors.js';

export function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Reads an unsigned 64-bit field as a number. Values of 2^53 and above lose precision but stay >= 2^53, which is
 * larger than any export this server can describe, so range checks on them still fail as they should.
 */
export function getU64(view: DataView, at: number): number {
  return view.getUint32(at) * 0x1_0000_0000 + view.getUint32(at + 4);
}

/** Writes a non-negative safe integer as an unsigned 64-bit field. */
export function setU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, Math.floor(value / 0x1_0000_0000));
  view.setUint32(at + 4, value >>> 0);
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function encodeUtf8(text: string): Uint8Array {
  return utf8.encode(text);
}

/** Decodes a protocol string; `offset` is where it starts in the stream, for the error. */
export function decodeNbdString(bytes: Uint8Array, offset: number, what: string): string {
  if (bytes.byteLength > NBD_MAX_STRING) {
    throw protocolError(offset, `${what} is ${bytes.byteLength} bytes, more than ${NBD_MAX_STRING}`);
  }
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw protocolError(offset, `${what} is not valid UTF-8`);
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) throw protocolError(offset + nul, `${what} contains a NUL byte`);
  return text;
}

/** Validates a string this side is about to send (export names, descriptions). */
export function checkNbdString(text: string): string | undefined {
  const bytes = utf8.encode(text);
  if (bytes.byteLength > NBD_MAX_STRING) return `is ${bytes.byteLength} bytes in UTF-8, more than ${NBD_MAX_STRING}`;
  if (text.includes('\0')) return 'contains a NUL character';
  return undefined;
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.byteLength;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
