// Rebuild: bring a new replica (WO, empty head, the same backing image already on its own disk) up to date by
// copying only the written extents of a healthy replica. The backing file is never transferred, and unwritten
// blocks are never read.
//
// Ordering: frontend writes keep going to the new replica during the copy. Each copy window holds the engine's range
// lock exclusively while it reads the source and writes the target, and frontend writes hold the same lock shared
// for their blocks. So every block is either copied before a frontend write to it (the write then lands on top,
// merging on the target with correct content) or after it (the copy carries the write). The source's READ_EXTENT
// answer gives each block's state at copy time, so a block listed as data and trimmed since is copied as zero.
// A partial frontend write to a block not yet copied merges with the target's backing image, which is wrong only
// until that block's copy lands, and no read reaches a WO replica.
//
// The flip to RW happens under an exclusive lock over the whole volume (a brief I/O barrier): no write is in flight,
// so the source's revision counter is exactly the one the new replica must carry.
//
// Snapshots: before the head, the source's chain is copied layer by layer, written extents only (copyChain). The
// target takes the chain's shape under a brief barrier (its head is replaced by an empty one over the new layers:
// whatever frontend writes it had received are on the source's head too, which is copied after), then each frozen
// layer's extents go into the same layer on the target. Frozen layers do not change while a replica is WO (the
// engine refuses snapshot operations then), so that copy needs no lock. One source for the whole chain: layer ids
// are the source's own.

import { BlockState, replicaProtocol } from '../replica/index.js';
import type { ChainView, RangeLock, WrittenExtents, ExtentRun } from '../replica/index.js';
import { EngineError } from './errors.js';
import type { RebuildStatus, ReplicaBackend, ReplicaMode } from './types.js';

export interface RebuildMember {
  readonly name: string;
  readonly backend: ReplicaBackend;
  readonly mode: ReplicaMode;
}

export interface RebuildContext {
  readonly size: number;
  readonly blockSize: number;
  readonly lock: RangeLock;
  readonly chunkBytes: number;
  readonly target: RebuildMember;
  /** A healthy RW replica to copy from, other than those in `exclude`. */
  pickSource(exclude: ReadonlySet<RebuildMember>): RebuildMember | undefined;
  /** Mark a replica ERR (it failed an operation). */
  fail(member: RebuildMember, err: unknown, what: string): void;
  /** Flip the target to RW (called under the barrier). */
  promote(): void;
  /** Progress changed (for status watchers). */
  changed(): void;
}

/** Chain changes on a replica close and create files and fdatasync: more than an I/O request's timeout. */
const CONTROL_TIMEOUT_MS = 120_000;

interface Window {
  offset: number;
  length: number;
}

/** Windows of at most `chunk` bytes covering `extents` (block-aligned), merging nearby extents into one read. */
function* windows(extents: readonly Window[], chunk: number): Generator<Window> {
  let cur: Window | undefined;
  for (const e of extents) {
    for (let at = e.offset; at < e.offset + e.length; at += chunk) {
      const end = Math.min(at + chunk, e.offset + e.length);
      if (cur && end - cur.offset <= chunk) cur.length = end - cur.offset;
      else {
        if (cur) yield cur;
        cur = { offset: at, length: end - at };
      }
    }
  }
  if (cur) yield cur;
}

export async function runRebuild(ctx: RebuildContext, progress: RebuildStatus, signal: AbortSignal): Promise<void> {
  const target = ctx.target;
  const tried = new Set<RebuildMember>();
  let source = ctx.pickSource(tried);

  /** Run `op` on the current source; a source that fails is marked ERR and the next one is tried. */
  const fromSource = async <T>(what: string, op: (b: ReplicaBackend) => Promise<T>): Promise<T> => {
    for (;;) {
      signal.throwIfAborted();
      if (!source || source.mode !== 'RW') source = ctx.pickSource(tried);
      if (!source) throw new EngineError('NoHealthyReplica', `Cannot rebuild replica "${target.name}": no RW replica left to copy from`);
      progress.source = source.name;
      try {
        return await op(source.backend);
      } catch (err) {
        signal.throwIfAborted();
        ctx.fail(source, err, what);
        tried.add(source);
        source = undefined;
      }
    }
  };

  const onTarget = async (what: string, op: Promise<void>): Promise<void> => {
    try {
      await op;
    } catch (err) {
      ctx.fail(target, err, what);
      throw new EngineError('RebuildFailed', `Cannot rebuild replica "${target.name}": ${what} failed: ${(err as Error).message}`, { cause: err });
    }
  };

  const checkTarget = (): void => {
    signal.throwIfAborted();
    if (target.mode !== 'WO') throw new EngineError('RebuildFailed', `Cannot rebuild replica "${target.name}": it is ${target.mode}, no longer WO`);
  };

  async function copyChain(): Promise<void> {
    const src = await fromSource('chain', async (b) => ({ b, view: (await b.control({ op: 'chain' }, undefined, { timeoutMs: CONTROL_TIMEOUT_MS })).result as ChainView }));
    const { b, view } = src;
    if (view.layers.length === 0) return;
    const bs = ctx.blockSize;
    const release = await ctx.lock.acquire(0, ctx.size / bs, 'exclusive', { signal });
    try {
      checkTarget();
      await onTarget('install the snapshot chain', target.backend.control({ op: 'installChain', chain: view }, undefined, { timeoutMs: CONTROL_TIMEOUT_MS }).then(() => {}));
    } finally {
      release();
    }
    const fromChainSource = async <T>(what: string, op: () => Promise<T>): Promise<T> => {
      try {
        return await op();
      } catch (err) {
        signal.throwIfAborted();
        const m = source && source.backend === b ? source : undefined;
        if (m) ctx.fail(m, err, what);
        throw new EngineError('RebuildFailed', `Cannot rebuild replica "${target.name}": ${what} failed on the source: ${(err as Error).message}`, { cause: err });
      }
    };
    for (const layer of view.layers) {
      let at: number | undefined = 0;
      while (at !== undefined) {
        checkTarget();
        const from: number = at;
        const page = (await fromChainSource('list layer extents', () => b.control({ op: 'layerExtents', layer: layer.id, offset: from, maxExtents: 1024 }))).result as WrittenExtents;
        for (const e of page.extents) progress.bytesListed += e.length;
        for (const w of windows(page.extents, ctx.chunkBytes)) {
          checkTarget();
          const a = await fromChainSource('read layer extent', () => b.control({ op: 'layerRead', layer: layer.id, offset: w.offset, length: w.length }));
          const runs = (a.result as { runs: ExtentRun[] }).runs;
          for (const r of runs) {
            if (r.state === BlockState.DATA) progress.bytesCopied += r.length;
            else if (r.state === BlockState.ZERO) progress.zeroBytes += r.length;
          }
          const body = Buffer.concat(replicaProtocol.encodeExtentData({ runs, data: a.data ?? new Uint8Array(0) }));
          await onTarget('write layer extent', target.backend.control({ op: 'layerWrite', layer: layer.id, offset: w.offset }, body).then(() => {}));
          progress.chunks++;
        }
        at = page.nextOffset;
        ctx.changed();
      }
      progress.snapshots = (progress.snapshots ?? 0) + 1;
    }
    await onTarget('finish the snapshot chain', target.backend.control({ op: 'finishChain' }, undefined, { timeoutMs: CONTROL_TIMEOUT_MS }).then(() => {}));
  }

  const copy = async (w: Window): Promise<void> => {
    const bs = ctx.blockSize;
    const release = await ctx.lock.acquire(w.offset / bs, (w.offset + w.length) / bs, 'exclusive', { signal });
    try {
      checkTarget();
      const ext = await fromSource('read extent', (b) => b.readExtent(w.offset, w.length));
      const writes: Promise<void>[] = [];
      let at = w.offset;
      let dataAt = 0;
      for (const run of ext.runs) {
        if (run.state === BlockState.DATA) {
          writes.push(onTarget('rebuild write', target.backend.write(at, ext.data.subarray(dataAt, dataAt + run.length))));
          dataAt += run.length;
          progress.bytesCopied += run.length;
        } else if (run.state === BlockState.ZERO) {
          writes.push(onTarget('rebuild write-zeroes', target.backend.writeZeroes(at, run.length)));
          progress.zeroBytes += run.length;
        }
        at += run.length;
      }
      await Promise.all(writes);
      progress.chunks++;
    } finally {
      release();
    }
    ctx.changed();
  };

  await copyChain();

  let cursor: number | undefined = 0;
  while (cursor !== undefined) {
    checkTarget();
    const from: number = cursor;
    const page = await fromSource('list extents', (b) => b.listExtents(from, 1024));
    for (const e of page.extents) progress.bytesListed += e.length;
    for (const w of windows(page.extents, ctx.chunkBytes)) await copy(w);
    cursor = page.nextOffset;
  }

  checkTarget();
  await onTarget('flush', target.backend.flush());
  const release = await ctx.lock.acquire(0, ctx.size / ctx.blockSize, 'exclusive', { signal });
  try {
    checkTarget();
    const info = await fromSource('info', (b) => b.info());
    await onTarget('set revision', target.backend.setRevision(info.revision));
    await onTarget('flush', target.backend.flush());
    ctx.promote();
  } finally {
    release();
  }
}
