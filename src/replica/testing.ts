// Test helpers for this folder (not exported from index.ts): a seeded PRNG, and CrashDir, an in-memory StorageDir
// that models what a power cut leaves behind. Each file keeps its durable content (as of its last datasync) and the
// writes since; a crash image keeps, for every 512-byte sector independently, the durable bytes plus any prefix of
// the writes to that sector (crashImage explains why). Atomic replacement is durable when it returns, as the real
// one is after its directory fsync. A process crash keeps every completed write (the page cache survives it):
// that is processCrashImage. Also: a raw backing file of seeded random bytes in a temp directory.

import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StorageDir, StorageFile } from './storage.js';
import type { ExtentData, ReplicaDevice, ReplicaInfo, WrittenExtents } from './types.js';
import { mulberry32 } from '../util/prng.js';
import type { ControlAnswer, ControlRequest } from './control.js';
import { ReplicaError } from './errors.js';

/** A raw backing file of `bytes` random bytes from `seed`, in a new temp directory pushed on `dirs` (for removal). */
export async function randomBackingFile(seed: number, bytes: number, dirs: string[]): Promise<{ backing: Uint8Array; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'stratum-backing-'));
  dirs.push(dir);
  const backing = new Rng(seed ^ 0x5eed).bytes(bytes);
  const path = join(dir, 'backing.raw');
  await writeFile(path, backing);
  return { backing, path };
}

/**
 * A random write (any alignment, up to 3 blocks of 4 KiB) or, one time in six, a write-zeroes inside [0, end), applied
 * to the replica and to the model. Only whole blocks of a write-zeroes read as zeros for certain; the model zeroes the
 * edges as the store does.
 */
export async function randomMutation(r: Pick<ReplicaDevice, 'write' | 'writeZeroes'>, model: Uint8Array, rng: Rng, end: number): Promise<void> {
  const offset = rng.int(end - 1);
  const length = 1 + rng.int(Math.min(3 * 4096, end - offset - 1));
  if (rng.int(6) === 0) {
    await r.writeZeroes(offset, length, { fua: false });
    model.fill(0, offset, offset + length);
    return;
  }
  const data = rng.bytes(length);
  await r.write(offset, data, { fua: false });
  model.set(data, offset);
}

/** mulberry32: small, fast, seedable; good enough for test workloads. */
export class Rng {
  readonly #next: () => number;
  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }
  next(): number {
    return this.#next();
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** A seed from the environment (REPLICA_TEST_SEED) or the clock, to print with any failure. */
export function testSeed(): number {
  const env = process.env['REPLICA_TEST_SEED'];
  return env !== undefined ? Number(env) : Date.now() % 1_000_000;
}

type Pending = { kind: 'write'; pos: number; data: Uint8Array } | { kind: 'truncate'; length: number };

class MemFile {
  content: Uint8Array;
  durable: Uint8Array;
  pending: Pending[] = [];

  constructor(content: Uint8Array, durable: boolean) {
    this.content = content;
    this.durable = durable ? new Uint8Array(content) : new Uint8Array(0);
  }
}

function applyWrite(target: Uint8Array, pos: number, data: Uint8Array): Uint8Array {
  let out = target;
  if (pos + data.length > out.length) {
    out = new Uint8Array(pos + data.length);
    out.set(target);
  }
  out.set(data, pos);
  return out;
}

function applyTruncate(target: Uint8Array, length: number): Uint8Array {
  if (length <= target.length) return target.slice(0, length);
  const out = new Uint8Array(length);
  out.set(target);
  return out;
}

export class CrashDir implements StorageDir {
  readonly location: string;
  readonly #files = new Map<string, MemFile>();
  /** Storage operations so far (writes, datasyncs, truncates, atomic replacements). */
  ops = 0;
  /** Called before each storage operation with its number and what it is: take crash images from here. */
  beforeOp: ((n: number, op: { file: string; kind: 'write' | 'datasync' | 'truncate' | 'replace' }) => void) | undefined;

  constructor(location: string) {
    this.location = location;
  }

  async open(name: string, { create }: { create: boolean }): Promise<StorageFile> {
    let file = this.#files.get(name);
    if (!file) {
      if (!create) throw Object.assign(new Error(`ENOENT: ${name}`), { code: 'ENOENT' });
      file = new MemFile(new Uint8Array(0), true);
      this.#files.set(name, file);
    }
    const f = file; // a handle keeps its file across a rename over the name, like an open descriptor
    const tick = (kind: 'write' | 'datasync' | 'truncate'): void => {
      this.beforeOp?.(this.ops, { file: name, kind });
      this.ops++;
    };
    return {
      read: async (buf, position) => {
        const part = f.content.subarray(Math.min(position, f.content.length), Math.min(position + buf.length, f.content.length));
        buf.set(part);
        return part.length;
      },
      write: async (data, position) => {
        tick('write');
        const copy = new Uint8Array(data);
        f.content = applyWrite(f.content, position, copy);
        f.pending.push({ kind: 'write', pos: position, data: copy });
      },
      datasync: async () => {
        tick('datasync');
        f.durable = new Uint8Array(f.content);
        f.pending = [];
      },
      size: async () => f.content.length,
      truncate: async (length) => {
        tick('truncate');
        f.content = applyTruncate(f.content, length);
        f.pending.push({ kind: 'truncate', length });
      },
      close: async () => {},
    };
  }

  async readFile(name: string): Promise<Uint8Array | undefined> {
    const f = this.#files.get(name);
    return f ? new Uint8Array(f.content) : undefined;
  }

  async writeFileAtomic(name: string, data: Uint8Array): Promise<void> {
    this.beforeOp?.(this.ops, { file: name, kind: 'replace' });
    this.ops++;
    this.#files.set(name, new MemFile(new Uint8Array(data), true));
  }

  async syncDir(): Promise<void> {}

  async remove(name: string): Promise<void> {
    this.#files.delete(name);
  }

  /**
   * What the disk could hold if the power failed now (a fresh directory, for opening after the "crash"). The page
   * cache writes dirty pages back in any order and at any time, and a device writes 512-byte sectors atomically;
   * so each sector independently holds its content as of some moment: the durable bytes plus a prefix (possibly
   * empty, possibly all) of the writes to that sector since the last datasync. The file length likewise reflects a
   * prefix of the pending size changes.
   */
  crashImage(rng: Rng): CrashDir {
    const out = new CrashDir(this.location);
    for (const [name, f] of this.#files) {
      const ops = f.pending;
      let length = f.durable.length;
      const lengthCut = rng.int(ops.length + 1);
      for (let i = 0; i < lengthCut; i++) {
        const op = ops[i]!;
        length = op.kind === 'truncate' ? op.length : Math.max(length, op.pos + op.data.length);
      }
      const bytes = new Uint8Array(length);
      bytes.set(f.durable.subarray(0, length));
      // Sector → the pieces of pending writes that touch it, in write order.
      const pieces = new Map<number, { op: number; at: number; data: Uint8Array }[]>();
      ops.forEach((op, i) => {
        if (op.kind !== 'write') return;
        for (let s = 0; s < op.data.length; ) {
          const abs = op.pos + s;
          const n = Math.min(512 - (abs % 512), op.data.length - s);
          const sector = Math.floor(abs / 512);
          let list = pieces.get(sector);
          if (!list) pieces.set(sector, (list = []));
          list.push({ op: i, at: abs, data: op.data.subarray(s, s + n) });
          s += n;
        }
      });
      for (const list of pieces.values()) {
        const cut = rng.int(ops.length + 1);
        for (const p of list) {
          if (p.op >= cut) break;
          const fit = Math.max(0, Math.min(p.data.length, length - p.at));
          if (fit > 0) bytes.set(p.data.subarray(0, fit), p.at);
        }
      }
      out.#files.set(name, new MemFile(bytes, true));
    }
    return out;
  }

  /**
   * What the files hold after the process died now and the machine did not: every completed write, still in the
   * page cache (not durable unless it was synced, so a crashImage taken later can lose it).
   */
  processCrashImage(): CrashDir {
    const out = new CrashDir(this.location);
    for (const [name, f] of this.#files) {
      const copy = new MemFile(new Uint8Array(f.content), false);
      copy.durable = new Uint8Array(f.durable);
      copy.pending = [...f.pending];
      out.#files.set(name, copy);
    }
    return out;
  }

  /** The current (volatile) bytes of a file, for tests that damage files on purpose. */
  setFile(name: string, bytes: Uint8Array): void {
    this.#files.set(name, new MemFile(new Uint8Array(bytes), true));
  }
}

/**
 * A ReplicaDevice wrapper that can hold calls (a replica that stops answering), fail them, or delay them. What it
 * wraps is real (a ReplicaStore), so tests exercise the whole path apart from the fault itself.
 */
export class FaultDevice implements ReplicaDevice {
  readonly inner: ReplicaDevice;
  /** While set, every I/O call waits for it before running. */
  gate: Promise<void> | undefined;
  /** Errors thrown by the next I/O calls, in order. */
  readonly failures: Error[] = [];
  /** Per-call delay in ms (after the gate), before the call runs. */
  delayMs: (op: string, offset: number) => number = () => 0;
  /** Per-call delay in ms after the call ran, before it answers (widens races between reading and using data). */
  answerDelayMs: (op: string, offset: number) => number = () => 0;
  calls = 0;

  constructor(inner: ReplicaDevice) {
    this.inner = inner;
  }

  get size(): number {
    return this.inner.size;
  }

  /** Hold every call from now on; returns the function that lets them through. */
  hold(): () => void {
    let release!: () => void;
    this.gate = new Promise((r) => (release = r));
    return () => {
      this.gate = undefined;
      release();
    };
  }

  info(): ReplicaInfo {
    return this.inner.info();
  }
  read(offset: number, length: number, opts?: { signal?: AbortSignal | undefined }): Promise<Uint8Array> {
    return this.#enter('read', offset, () => this.inner.read(offset, length, opts));
  }
  write(offset: number, data: Uint8Array, opts: { fua: boolean; signal?: AbortSignal | undefined }): Promise<void> {
    return this.#enter('write', offset, () => this.inner.write(offset, data, opts));
  }
  flush(opts?: { signal?: AbortSignal | undefined }): Promise<void> {
    return this.#enter('flush', 0, () => this.inner.flush(opts));
  }
  trim(offset: number, length: number, opts: { fua: boolean; signal?: AbortSignal | undefined }): Promise<void> {
    return this.#enter('trim', offset, () => this.inner.trim(offset, length, opts));
  }
  writeZeroes(offset: number, length: number, opts: { fua: boolean; signal?: AbortSignal | undefined }): Promise<void> {
    return this.#enter('writeZeroes', offset, () => this.inner.writeZeroes(offset, length, opts));
  }
  writtenExtents(opts?: { offset?: number; maxExtents?: number }): WrittenExtents {
    return this.inner.writtenExtents(opts);
  }
  readExtent(offset: number, length: number, opts?: { signal?: AbortSignal | undefined }): Promise<ExtentData> {
    return this.#enter('readExtent', offset, () => this.inner.readExtent(offset, length, opts));
  }
  setRevision(revision: number): void {
    this.inner.setRevision(revision);
  }
  control(req: ControlRequest, data: Uint8Array, opts?: { signal?: AbortSignal | undefined }): Promise<ControlAnswer> {
    const inner = this.inner;
    if (!inner.control) return Promise.reject(new ReplicaError('InvalidArgument', 'the wrapped device has no snapshots'));
    return this.#enter('control', 0, () => inner.control!(req, data, opts));
  }

  async #enter<T>(op: string, offset: number, run: () => Promise<T>): Promise<T> {
    this.calls++;
    // Writes must reach the inner store in arrival order (its range lock is taken synchronously): only a held or
    // delayed device reorders, which is exactly the fault being simulated.
    const result = this.gate === undefined && this.delayMs(op, offset) === 0 && this.failures.length === 0 ? await run() : await this.#faulty(op, offset, run);
    const after = this.answerDelayMs(op, offset);
    if (after > 0) await new Promise((r) => setTimeout(r, after));
    return result;
  }

  async #faulty<T>(op: string, offset: number, run: () => Promise<T>): Promise<T> {
    if (this.gate) await this.gate;
    const ms = this.delayMs(op, offset);
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
    const failure = this.failures.shift();
    if (failure) throw failure;
    return run();
  }
}
