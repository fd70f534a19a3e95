// Reading one snapshot of a volume from one of its replicas over CONTROL (snapshotAllocated, readSnapshot): the
// reader that an export (datasource/export.ts: the whole content, flattened) and a volume clone (engine/clone.ts:
// what the snapshot's layers wrote, `written`) share. The replica serves the snapshot's frozen layers while its head
// keeps taking writes.

import type { ControlAnswer, ControlRequest } from './control.js';

export interface SnapshotSource {
  control(req: ControlRequest, data?: Uint8Array, opts?: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined }): Promise<ControlAnswer>;
}

export interface Range {
  offset: number;
  length: number;
}

export interface SnapshotReadOptions {
  signal: AbortSignal;
  /** Per request (default: the source's own). */
  timeoutMs?: number;
}

/** Bytes asked for per allocation query, and per read. */
export const SNAPSHOT_MAP_WINDOW = 256 * 1024 * 1024;
export const SNAPSHOT_READ_CHUNK = 4 * 1024 * 1024;
/** Reads in flight ahead of the one being consumed: one at a time would leave the replica idle meanwhile. */
const READ_AHEAD = 4;

/**
 * Ranges of [offset, offset + length) of snapshot `name` that may hold data (`written`: only those its layers wrote,
 * data or zeros, the backing image left out). One query per SNAPSHOT_MAP_WINDOW.
 */
export async function snapshotRanges(src: SnapshotSource, name: string, offset: number, length: number, written: boolean, o: SnapshotReadOptions): Promise<Range[]> {
  const out: Range[] = [];
  const end = offset + length;
  for (let w = offset; w < end; w += SNAPSHOT_MAP_WINDOW) {
    const req: ControlRequest = { op: 'snapshotAllocated', name, offset: w, length: Math.min(end, w + SNAPSHOT_MAP_WINDOW) - w, ...(written ? { written: true } : {}) };
    out.push(...((await src.control(req, undefined, o)).result as Range[]));
  }
  return out;
}

/** `ranges` cut into pieces of at most SNAPSHOT_READ_CHUNK bytes. */
export function readPieces(ranges: readonly Range[]): Range[] {
  const out: Range[] = [];
  for (const r of ranges) {
    for (let at = r.offset; at < r.offset + r.length; at += SNAPSHOT_READ_CHUNK) out.push({ offset: at, length: Math.min(SNAPSHOT_READ_CHUNK, r.offset + r.length - at) });
  }
  return out;
}

/** The bytes of snapshot `name` for each of `pieces`, in order, with up to READ_AHEAD reads in flight. */
export async function* readSnapshotPieces(src: SnapshotSource, name: string, pieces: readonly Range[], o: SnapshotReadOptions): AsyncGenerator<{ piece: Range; data: Buffer }> {
  const read = async (p: Range): Promise<Buffer> => {
    const a = await src.control({ op: 'readSnapshot', name, offset: p.offset, length: p.length }, undefined, o);
    const d = a.data ?? new Uint8Array(0);
    if (d.byteLength !== p.length) throw new Error(`readSnapshot ${p.offset}+${p.length} of snapshot ${name} answered ${d.byteLength} bytes`);
    return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  };
  const inFlight: { piece: Range; data: Promise<Buffer> }[] = [];
  let next = 0;
  try {
    while (next < pieces.length || inFlight.length > 0) {
      while (next < pieces.length && inFlight.length < READ_AHEAD) {
        const piece = pieces[next++]!;
        const data = read(piece);
        data.catch(() => {}); // awaited below in order; a failure must not be an unhandled rejection meanwhile
        inFlight.push({ piece, data });
      }
      const head = inFlight.shift()!;
      o.signal.throwIfAborted();
      yield { piece: head.piece, data: await head.data };
    }
  } finally {
    await Promise.allSettled(inFlight.map((f) => f.data));
  }
}
