// Writing a file sequentially while keeping its zeros as holes, shared by the data source's work file and the
// `stratum bi download` command: all-zero blocks (64 KiB, aligned in the file) that lie at or beyond the file's
// current end are not written; the writer extends the file with ftruncate when it is done, so they read as zeros
// and allocate nothing. A zero block below the end is written, because it may cover older bytes.

import type { FileHandle } from 'node:fs/promises';

/** Zero detection granularity. */
export const HOLE_BLOCK = 64 * 1024;

let zeroBlock = Buffer.alloc(HOLE_BLOCK);

/** True when every byte of `buf` is 0 (memcmp against a zero block). */
export function isZero(buf: Uint8Array): boolean {
  if (zeroBlock.length < buf.byteLength) zeroBlock = Buffer.alloc(buf.byteLength);
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).equals(zeroBlock.subarray(0, buf.byteLength));
}

async function writeAll(handle: FileHandle, buf: Uint8Array, pos: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const { bytesWritten } = await handle.write(buf, done, buf.length - done, pos + done);
    done += bytesWritten;
  }
}

/**
 * Writes `buf` at `pos` except the zero blocks at or beyond `end` (the file's size on disk); consecutive written
 * blocks go out in one write. Resolves with the file's new size on disk (extend to the logical size with ftruncate).
 */
export async function writeSparse(handle: FileHandle, buf: Uint8Array, pos: number, end: number): Promise<number> {
  let runStart = -1;
  let newEnd = end;
  for (let at = 0; at < buf.length; ) {
    const next = Math.min(buf.length, at + HOLE_BLOCK - ((pos + at) % HOLE_BLOCK));
    const hole = pos + at >= end && isZero(buf.subarray(at, next));
    if (!hole && runStart < 0) runStart = at;
    if (hole && runStart >= 0) {
      await writeAll(handle, buf.subarray(runStart, at), pos + runStart);
      newEnd = Math.max(newEnd, pos + at);
      runStart = -1;
    }
    at = next;
  }
  if (runStart >= 0) {
    await writeAll(handle, buf.subarray(runStart), pos + runStart);
    newEnd = Math.max(newEnd, pos + buf.length);
  }
  return newEnd;
}
