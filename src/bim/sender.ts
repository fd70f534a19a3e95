// The sending side: chunk manifests of ready files (computed once, persisted beside the file, reused after a
// restart while the file's identity is unchanged), ranges of bytes for peers and downloads, the per-file limit on
// concurrent sends (429 beyond it) and the process-wide bandwidth cap.

import type { FastifyReply } from 'fastify';
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import { BimError, messageOf } from './errors.js';
import { identityOf, readIfExists, sameIdentity, writeFileAtomic, parseIdentity, type FileIdentity } from './fsutil.js';
import { hashFile } from './hashing.js';
import { checkManifest, type ChunkManifest } from './manifest.js';
import { FILES, manifestFileName, type DiskLayout } from './names.js';
import { meteredStream, type TokenBucket } from './bucket.js';
import { BufferPool } from '../util/buffer-pool.js';
import type { BimStats } from './stats.js';
import type { FileRecord, FileTable } from './table.js';

export interface SenderOptions {
  layout: DiskLayout;
  table: FileTable;
  stats: BimStats;
  maxConcurrentSends: number;
  bucket: TokenBucket | undefined;
  /** A sync session with nothing in flight for this long stops counting against the limit. */
  sessionIdleMs?: number;
  /** Called when a ready file is found changed or corrupt: the manager re-verifies it. */
  onSuspect: (rec: FileRecord, why: string) => void;
}

export interface SendLease {
  readonly session: string;
  release(): void;
}

interface Computation {
  progress: number;
  done: Promise<void>;
}

/** Computations in a row that may end without a usable manifest before the sender stops trying and says why. */
export const MANIFEST_ATTEMPTS = 3;

/** Writes a manifest cache file: the manifest plus the identity of the bytes it describes. */
/**
 * The cached manifest of a ready file for `chunkSize`: only one saved for the bytes of `identity` that hash to the file's
 * SHA-512 (otherwise undefined).
 */
export async function loadManifest(layout: DiskLayout, rec: FileRecord, chunkSize: number, identity: FileIdentity): Promise<ChunkManifest | undefined> {
  const buf = await readIfExists(layout.path(rec.key, manifestFileName(chunkSize)));
  if (!buf) return undefined;
  try {
    const o = JSON.parse(buf.toString('utf8')) as { identity?: unknown; manifest?: unknown };
    const id = parseIdentity(o.identity);
    if (!id || !sameIdentity(id, identity)) return undefined;
    const m = checkManifest(o.manifest, { size: rec.size, chunkSize }, 'the cache file');
    return m.sha512 === rec.currentChecksum ? { ...m, name: rec.name, uuid: rec.uuid } : undefined;
  } catch {
    return undefined;
  }
}

export async function saveManifest(layout: DiskLayout, dir: string, identity: FileIdentity, manifest: ChunkManifest): Promise<void> {
  await writeFileAtomic(layout.path(dir, manifestFileName(manifest.chunkSize)), JSON.stringify({ identity, manifest }));
}

/** Size of each of the two buffers a send reads into. */
const SEND_BUFFER = 1024 * 1024;

/**
 * The send buffers, reused across requests: a sync asks for a file in hundreds of 4 MiB ranges, and two fresh 1 MiB
 * buffers per request cost page faults and, as external memory, garbage collections: 2.5 times the CPU per byte of
 * one long download before they were pooled. Room for 16 sends at once is kept.
 */
const sendBuffers = new BufferPool({ keepBytes: 32 * SEND_BUFFER });

/** Resolves once `res` took `buf` (so the buffer may be reused), rejects when the connection failed. */
function writeTo(res: ServerResponse, buf: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    res.write(buf, (err) => (err ? reject(err) : resolve()));
  });
}

export class Sender {
  readonly #o: SenderOptions;
  readonly #idleMs: number;
  readonly #computing = new Map<string, Computation>();
  /** Why the last computations of a manifest ended without one, per `key/chunkSize` (cleared by a success). */
  readonly #failures = new Map<string, string[]>();
  readonly #closing = new AbortController();
  #nextId = 0;

  constructor(opts: SenderOptions) {
    this.#o = opts;
    this.#idleMs = opts.sessionIdleMs ?? 10_000;
  }

  /**
   * Refuses files that are not ready, and ready files whose bytes changed since they were verified (compared by
   * identity, one stat): those are handed back for re-verification and never served.
   */
  async checkServable(rec: FileRecord): Promise<FileIdentity> {
    if (rec.state !== 'ready' || !rec.identity) {
      throw new BimError('NotReady', `${rec.name} is ${rec.state}, not ready${rec.message ? `: ${rec.message}` : ''}`);
    }
    const now = await identityOf(this.#o.layout.path(rec.key, FILES.backing)).catch(() => undefined);
    if (!now || !sameIdentity(now, rec.identity)) {
      const why = now ? `its size, mtime or inode changed since it was verified` : `it is gone`;
      this.#o.onSuspect(rec, why);
      throw new BimError('NotReady', `${rec.name} cannot be served: ${why}; it is being re-verified`);
    }
    return now;
  }

  /** Forgets what was recorded about a file that is gone (failed manifest computations). */
  forget(rec: FileRecord): void {
    for (const key of this.#failures.keys()) if (key.startsWith(`${rec.key}/`)) this.#failures.delete(key);
  }

  /** The manifest for `chunkSize`, from the cache file; when absent, starts computing it and throws ManifestPending. */
  async manifest(rec: FileRecord, chunkSize: number): Promise<ChunkManifest> {
    this.#o.stats.sent.manifestRequests++;
    const identity = await this.checkServable(rec);
    const cached = await this.#load(rec, chunkSize, identity);
    if (cached) return cached;
    const key = `${rec.key}/${chunkSize}`;
    const failed = this.#failures.get(key) ?? [];
    let c = this.#computing.get(key);
    if (!c) {
      // A computation that keeps ending without a manifest would keep every receiver waiting: after a few, say why.
      if (failed.length >= MANIFEST_ATTEMPTS) {
        this.#failures.delete(key);
        throw new BimError('Internal', `the chunk manifest of ${rec.name} could not be computed ${failed.length} times in a row: ${failed.join('; ')}`);
      }
      const comp: Computation = { progress: 0, done: Promise.resolve() };
      comp.done = this.#compute(rec, chunkSize, identity, comp)
        .then((why) => {
          if (why === undefined) this.#failures.delete(key);
          else this.#failures.set(key, [...(this.#failures.get(key) ?? []), why]);
        })
        .finally(() => this.#computing.delete(key));
      this.#computing.set(key, comp);
      c = comp;
    }
    const earlier = failed.length > 0 ? ` (attempt ${failed.length + 1} of ${MANIFEST_ATTEMPTS}; the last one ended: ${failed[failed.length - 1]})` : '';
    throw new BimError('ManifestPending', `the chunk manifest of ${rec.name} (chunks of ${chunkSize} bytes) is being computed: ${c.progress}% done${earlier}; ask again shortly`);
  }

  #load(rec: FileRecord, chunkSize: number, identity: FileIdentity): Promise<ChunkManifest | undefined> {
    return loadManifest(this.#o.layout, rec, chunkSize, identity);
  }

  /** Computes and saves the manifest; resolves with why it ended without one, or undefined when it was saved. */
  async #compute(rec: FileRecord, chunkSize: number, identity: FileIdentity, c: Computation): Promise<string | undefined> {
    const path = this.#o.layout.path(rec.key, FILES.backing);
    try {
      const r = await hashFile(path, {
        signal: this.#closing.signal,
        chunkSize,
        ids: { name: rec.name, uuid: rec.uuid },
        onRead: (n) => (this.#o.stats.hashedBytes += n),
        onProgress: (n) => (c.progress = rec.size > 0 ? Math.floor((n / rec.size) * 100) : 100),
      });
      // The same pass re-checked the whole file: a ready file that no longer hashes to its checksum is not served.
      if (r.sha512 !== rec.currentChecksum) {
        this.#o.onSuspect(rec, `its bytes hash to ${r.sha512}, not to the recorded ${rec.currentChecksum}`);
        return `the file hashes to ${r.sha512}, not to the recorded ${rec.currentChecksum}`;
      }
      const after = await identityOf(path);
      if (!sameIdentity(after, identity)) return 'the file changed while it was being hashed';
      if (!r.manifest) return 'hashing produced no manifest';
      // What is saved must load again (#load): a manifest that does not is never served, and would be recomputed forever.
      checkManifest(r.manifest, { size: rec.size, chunkSize }, 'the computed manifest');
      await saveManifest(this.#o.layout, rec.key, identity, r.manifest);
      return undefined;
    } catch (err) {
      // The next manifest request starts over; the failure is visible to it as a missing manifest only, so say it.
      rec.lastError = `computing the chunk manifest failed: ${messageOf(err)}`;
      return messageOf(err);
    }
  }

  /** Stops manifest computations and waits for them (shutdown). */
  async close(): Promise<void> {
    this.#closing.abort();
    await Promise.all([...this.#computing.values()].map((c) => c.done));
  }

  /** Forgets sync sessions idle for longer than the idle limit, so they stop counting against the send limit. */
  sweep(): void {
    const now = this.#o.table.now();
    for (const rec of this.#o.table.all()) this.#sweepRecord(rec, now);
  }

  #sweepRecord(rec: FileRecord, now: number): void {
    let changed = false;
    for (const [id, s] of rec.sessions) {
      if (s.inflight === 0 && now - s.lastActive > this.#idleMs) {
        rec.sessions.delete(id);
        changed = true;
      }
    }
    if (changed) this.#o.table.changed(rec);
  }

  /**
   * Counts one request against the file's send limit. Requests of one sync carry the same session id and count once;
   * a session stays counted until idle for a while, so a receiver between chunks keeps its place.
   */
  acquire(rec: FileRecord, opts: { session?: string | undefined; to: string; kind: 'sync' | 'download' }): SendLease {
    const now = this.#o.table.now();
    this.#sweepRecord(rec, now);
    const id = opts.session ? `${opts.kind}:${opts.session}` : `${opts.kind}:#${++this.#nextId}`;
    let s = rec.sessions.get(id);
    if (!s) {
      if (rec.sessions.size >= this.#o.maxConcurrentSends) {
        this.#o.stats.sent.busyRejections++;
        const to = [...rec.sessions.values()].map((x) => x.to).join(', ');
        throw new BimError('Busy', `${rec.name} is already being sent to ${rec.sessions.size} receivers (${to}), the limit is ${this.#o.maxConcurrentSends}; retry later or use another peer`);
      }
      s = { id, to: opts.to, kind: opts.kind, bytes: 0, since: new Date().toISOString(), inflight: 0, lastActive: now };
      rec.sessions.set(id, s);
      this.#o.table.changed(rec);
    }
    s.inflight++;
    const session = s;
    let released = false;
    return {
      session: id,
      release: () => {
        if (released) return;
        released = true;
        session.inflight--;
        session.lastActive = this.#o.table.now();
        // Only a sync that names its session keeps its slot between requests; anything else lets go at once.
        if ((session.kind === 'download' || !opts.session) && session.inflight === 0) rec.sessions.delete(id);
        this.#o.table.changed(rec);
      },
    };
  }

  /**
   * Answers with bytes [start, end] (inclusive) of a ready file, written straight to the response from two reused
   * 1 MiB buffers (one is read while the other drains), metered and paced; the lease is released when done. This is
   * the hot path of every sync and download: no stream layers, no buffer allocated per read, nothing for the
   * garbage collector. The status and headers already set on `reply` are sent as they are.
   */
  async send(reply: FastifyReply, rec: FileRecord, start: number, end: number, lease: SendLease, kind: 'data' | 'download'): Promise<void> {
    const session = rec.sessions.get(lease.session);
    const stats = this.#o.stats.sent;
    const res = reply.raw;
    reply.hijack();
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) headers[k] = String(v);
    // The client going away ends the loop at its next step; the socket is destroyed with the response.
    const gone = new AbortController();
    res.once('close', () => gone.abort(new BimError('PeerFailed', 'the client closed the connection')));
    let fh: FileHandle | undefined;
    try {
      fh = await open(this.#o.layout.path(rec.key, FILES.backing), 'r');
      res.writeHead(reply.statusCode, headers);
      const bufs = [sendBuffers.take(SEND_BUFFER), sendBuffers.take(SEND_BUFFER)] as const;
      let written: Promise<void> = Promise.resolve();
      for (let pos = start, turn = 0; pos <= end; turn ^= 1) {
        const buf = bufs[turn]!;
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end + 1 - pos), pos);
        if (bytesRead === 0) throw new BimError('Internal', `${rec.name} ended at byte ${pos} while sending up to ${end}`);
        await this.#o.bucket?.take(bytesRead, gone.signal);
        // The other buffer must be on the wire before this one is handed over (and before it is read into again).
        await written;
        gone.signal.throwIfAborted();
        written = writeTo(res, buf.subarray(0, bytesRead));
        // It is awaited only at the next turn, after a read and the bucket: a client that went away meanwhile must
        // not make it an unhandled rejection (which ends the process), it fails that await instead.
        written.catch(() => undefined);
        if (kind === 'data') stats.dataBytes += bytesRead;
        else stats.downloadBytes += bytesRead;
        if (session) session.bytes += bytesRead;
        pos += bytesRead;
      }
      await written;
      res.end();
      // Both writes completed, so nothing refers to the buffers any more. (On a failure they are left to the
      // collector: a destroyed socket's last write may still hold one.)
      for (const b of bufs) sendBuffers.give(b);
    } catch (err) {
      // Headers may be out already: all that is left is to cut the connection, which the client sees as short.
      res.destroy(err instanceof Error ? err : new Error(String(err)));
    } finally {
      await fh?.close().catch(() => undefined);
      lease.release();
    }
  }

  /** Bytes [start, end] (inclusive) of a ready file as a stream (for compression), metered and paced; the lease is
   *  released when the stream ends. */
  stream(rec: FileRecord, start: number, end: number, lease: SendLease, kind: 'data' | 'download'): Readable {
    const session = rec.sessions.get(lease.session);
    const stats = this.#o.stats.sent;
    const metered = meteredStream({
      bucket: this.#o.bucket,
      onBytes: (n) => {
        if (kind === 'data') stats.dataBytes += n;
        else stats.downloadBytes += n;
        if (session) session.bytes += n;
      },
    });
    const out = new PassThrough({ highWaterMark: 1024 * 1024 });
    out.once('close', () => lease.release());
    if (end < start) {
      out.end();
      return out;
    }
    const file = createReadStream(this.#o.layout.path(rec.key, FILES.backing), { start, end, highWaterMark: 1024 * 1024 });
    pipeline(file, metered, out, () => lease.release());
    return out;
  }
}
