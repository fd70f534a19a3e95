// Little-endian field helpers shared by the replica protocol codecs. 64-bit fields travel as two u32 halves and
// must stay below 2^53 so they fit a JavaScript number; a larger value is a protocol error at the field's offset.

import { protocolError } from './errors.js';

const MAX_HI = 0x1f_ffff; // high 32 bits of a value below 2^53

export function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

export function setU64(v: DataView, at: number, n: number): void {
  v.setUint32(at, n % 2 ** 32, true);
  v.setUint32(at + 4, Math.floor(n / 2 ** 32), true);
}

/** A u64 below 2^53 at `at`, or a protocol error at `streamOffset + at`. */
export function getU64(v: DataView, at: number, streamOffset: number, field: string): number {
  const hi = v.getUint32(at + 4, true);
  if (hi > MAX_HI) throw protocolError(streamOffset + at, `${field} is 2^53 or more`);
  return v.getUint32(at, true) + hi * 2 ** 32;
}
