// The engine process's control API, for the engine and volume controllers: a small JSON-over-HTTP surface on a
// loopback port or Unix socket (documented in docs/replica-protocol.md, "Engine control API").
//
//   GET    /v1/engine                    → 200 EngineStatus
//   GET    /v1/engine?watch=true         → 200 ndjson: the status now, then the status after each change (at most
//                                           one line per WATCH_COALESCE_MS), and {"type":"HEARTBEAT"} lines
//   POST   /v1/engine/replicas           {name, address} → 202 EngineStatus: added in WO mode, rebuild started
//   DELETE /v1/engine/replicas/{name}    → 200 EngineStatus
//   POST   /v1/engine/clone              {sourceVolume, snapshot, sourceSize, replicaName, replicaAddress} → 202
//                                         CloneProgress: fill this volume from another's snapshot (clone.ts)
//   GET    /v1/engine/clone              → 200 CloneProgress (404 when no clone was asked of this engine)
//
// Errors are {code, message} with the engine's error codes; statusFor() is the one place mapping codes to HTTP.

import * as http from 'node:http';
import { ReplicaClient, type ReplicaEndpoint, type SnapshotInfo } from '../replica/index.js';
import type { Engine } from './engine.js';
import { CoalescingStream } from '../util/coalescing-stream.js';
import { runClone, type CloneProgress } from './clone.js';
import { EngineError, isEngineError, type EngineErrorCode } from './errors.js';
import type { EngineStatus, ReplicaBackend } from './types.js';

export type ControlListenOptions = { host?: string; port: number } | { path: string };

const HTTP_STATUS: Record<EngineErrorCode, number> = {
  InvalidArgument: 400,
  NoHealthyReplica: 503,
  ImageUnreadable: 500,
  ReplicaExists: 409,
  ReplicaUnknown: 404,
  ReplicaMismatch: 409,
  InvalidState: 409,
  RebuildRunning: 409,
  RebuildFailed: 500,
  Closed: 503,
  SnapshotUnknown: 404,
  SnapshotExists: 409,
  CloneUnknown: 404,
};

export function statusFor(err: unknown): number {
  return isEngineError(err) ? HTTP_STATUS[err.code] : 500;
}

/** "host:port", "[v6]:port", or "unix:/path" (also a bare absolute path) → an endpoint. */
export function parseEndpoint(address: string): ReplicaEndpoint {
  if (address.startsWith('unix:')) return { path: address.slice(5) };
  if (address.startsWith('/')) return { path: address };
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) throw new EngineError('InvalidArgument', `replica address "${address}" is not host:port or unix:/path`);
  return { host: (m[1] ?? m[2])!, port };
}

async function body(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 64 * 1024) throw new EngineError('InvalidArgument', 'request body over 64 KiB');
    chunks.push(c);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new EngineError('InvalidArgument', `request body is not JSON: ${(err as Error).message}`);
  }
}

const WATCH_COALESCE_MS = 200;
type WatchLine = { type: 'SNAPSHOT' | 'MODIFIED'; status: EngineStatus };
const WATCH_HEARTBEAT_MS = 5000;

export interface ControlServerOptions {
  /** Request timeout of clients to added replicas (ms). */
  requestTimeoutMs?: number;
  /**
   * How an added replica is reached (default: a ReplicaClient to its address). The instance manager gives its own,
   * which names the replica on the node's shared listener, or reaches a replica it hosts itself without a socket.
   */
  connectReplica?: (name: string, address: string) => Promise<ReplicaBackend>;
  /** Why a revert must be refused now (a frontend serves the volume), or undefined. */
  revertRefused?: () => string | undefined;
  log?: (line: string) => void;
}

/**
 * The control surface of one engine, apart from any HTTP server: status, the status watch stream, adding and
 * removing replicas. `ControlServer` serves one engine on its own listener (`stratum engine`); the instance manager
 * serves each of its engines under /v1/engines/{name} on its one API listener.
 */
export class EngineControl {
  readonly #engine: Engine;
  readonly #opts: ControlServerOptions;
  readonly #watchers = new Map<http.ServerResponse, CoalescingStream<WatchLine>>();
  #pending: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #clone: { progress: CloneProgress; abort: AbortController } | undefined;

  constructor(engine: Engine, opts: ControlServerOptions = {}) {
    this.#engine = engine;
    this.#opts = opts;
  }

  status(): EngineStatus {
    return this.#engine.status();
  }

  /** The engine changed (replica mode, rebuild progress, snapshots): watchers get the new status, coalesced. */
  changed(): void {
    if (this.#pending || this.#watchers.size === 0) return;
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      const ev: WatchLine = { type: 'MODIFIED', status: this.#engine.status() };
      for (const out of this.#watchers.values()) out.send(ev);
    }, WATCH_COALESCE_MS);
  }

  /** Streams the status now and after each change on `res` (ndjson) until either side closes. */
  watch(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
    // HEAD (fastify's automatic one under the instance manager): no body, so answer with the headers alone.
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    // Every line carries the whole status, so a slow reader only ever needs the latest.
    const out = new CoalescingStream<WatchLine>(res, () => 'status');
    out.send({ type: 'SNAPSHOT', status: this.#engine.status() });
    this.#watchers.set(res, out);
    this.#heartbeat ??= setInterval(() => {
      for (const w of this.#watchers.values()) w.heartbeat();
    }, WATCH_HEARTBEAT_MS).unref();
    const done = () => {
      this.#watchers.delete(res);
      if (this.#watchers.size === 0 && this.#heartbeat) {
        clearInterval(this.#heartbeat);
        this.#heartbeat = undefined;
      }
    };
    req.on('close', done);
    res.on('close', done);
  }

  /** GET …/clone: the clone asked of this engine (404 when none was: it was restarted, or is not a clone). */
  cloneStatus(): CloneProgress {
    if (!this.#clone) throw new EngineError('CloneUnknown', `no clone was started on the engine of volume "${this.#engine.volume}"`);
    return { ...this.#clone.progress };
  }

  /**
   * POST …/clone: starts filling this volume from snapshot `snapshot` of `sourceVolume`, read from the replica
   * `replicaName` at `replicaAddress`. The same clone in progress or completed is answered as is; a failed one, or
   * another source, starts over (the copy's writes are idempotent).
   */
  startClone(input: unknown): CloneProgress {
    const b = (input ?? {}) as Record<string, unknown>;
    const str = (k: string) => (typeof b[k] === 'string' && b[k] !== '' ? (b[k] as string) : undefined);
    const sourceVolume = str('sourceVolume');
    const snapshot = str('snapshot');
    const replicaName = str('replicaName');
    const replicaAddress = str('replicaAddress');
    const sourceSize = b['sourceSize'];
    if (!sourceVolume || !snapshot || !replicaName || !replicaAddress || typeof sourceSize !== 'number' || !Number.isSafeInteger(sourceSize) || sourceSize <= 0) {
      throw new EngineError('InvalidArgument', 'body must be {"sourceVolume", "snapshot", "replicaName", "replicaAddress": strings, "sourceSize": bytes}');
    }
    if (sourceSize > this.#engine.size) throw new EngineError('InvalidArgument', `source volume "${sourceVolume}" (${sourceSize} bytes) is larger than volume "${this.#engine.volume}" (${this.#engine.size} bytes)`);
    const cur = this.#clone;
    if (cur && cur.progress.sourceVolume === sourceVolume && cur.progress.snapshot === snapshot && cur.progress.state !== 'failed') return { ...cur.progress };
    cur?.abort.abort();
    const progress: CloneProgress = { sourceVolume, snapshot, state: 'in-progress', bytesTotal: 0, bytesCopied: 0, progress: 0, startedAt: new Date().toISOString() };
    const abort = new AbortController();
    this.#clone = { progress, abort };
    const timeoutMs = this.#opts.requestTimeoutMs ?? 8000;
    const connect = this.#opts.connectReplica ?? (async (_n: string, a: string) => (await ReplicaClient.connect(parseEndpoint(a), { timeoutMs })) as ReplicaBackend);
    const log = (line: string) => this.#opts.log?.(line);
    void (async () => {
      let source: ReplicaBackend | undefined;
      try {
        source = await connect(replicaName, replicaAddress);
        log(`clone: copying snapshot ${snapshot} of volume ${sourceVolume} from replica ${replicaName} (${replicaAddress})`);
        await runClone(this.#engine, source, snapshot, sourceSize, progress, { signal: abort.signal });
        progress.state = 'completed';
        log(`clone: completed, ${progress.bytesCopied} bytes copied`);
      } catch (err) {
        progress.state = 'failed';
        progress.error = `copying snapshot ${snapshot} of volume ${sourceVolume} from replica ${replicaName}: ${(err as Error).message}`;
        log(`clone: ${progress.error}`);
      } finally {
        progress.finishedAt = new Date().toISOString();
        await source?.close().catch(() => source?.destroy());
      }
    })();
    return { ...progress };
  }

  /** Ends every watch stream (the engine is going away). */
  endWatches(): void {
    this.#clone?.abort.abort();
    clearTimeout(this.#pending);
    clearInterval(this.#heartbeat);
    this.#pending = this.#heartbeat = undefined;
    for (const res of this.#watchers.keys()) res.end();
    this.#watchers.clear();
  }

  /** Adds a replica in WO mode and starts its rebuild; resolves with the status once it is a member. */
  async addReplica(input: unknown): Promise<EngineStatus> {
    const { name, address } = (input ?? {}) as { name?: unknown; address?: unknown };
    if (typeof name !== 'string' || name === '' || typeof address !== 'string') {
      throw new EngineError('InvalidArgument', 'body must be {"name": string, "address": "host:port" | "unix:/path"}');
    }
    const timeoutMs = this.#opts.requestTimeoutMs ?? 8000;
    const connect = this.#opts.connectReplica ?? (async (_n: string, a: string) => (await ReplicaClient.connect(parseEndpoint(a), { timeoutMs })) as ReplicaBackend);
    const backend = await connect(name, address).catch((err: unknown) => {
      throw new EngineError('InvalidArgument', `Cannot add replica "${name}": ${(err as Error).message}`, { cause: err });
    });
    await this.#engine.addReplica(name, backend);
    // The rebuild runs on; its progress and outcome are in the status.
    this.#engine.rebuild(name).catch((err: unknown) => this.#opts.log?.(`engine: ${(err as Error).message}`));
    return this.#engine.status();
  }

  async removeReplica(name: string): Promise<EngineStatus> {
    await this.#engine.removeReplica(name);
    return this.#engine.status();
  }

  /** GET …/snapshots: the snapshots with 'volume-head' last. */
  async listSnapshots(): Promise<{ snapshots: SnapshotInfo[] }> {
    return { snapshots: await this.#engine.snapshotList() };
  }

  /** POST …/snapshots {name?, labels?}: a crash-consistent snapshot of every replica. */
  async createSnapshot(input: unknown): Promise<{ name: string; snapshots: SnapshotInfo[] }> {
    const { name, labels } = (input ?? {}) as { name?: unknown; labels?: unknown };
    if ((name !== undefined && typeof name !== 'string') || (labels !== undefined && (typeof labels !== 'object' || labels === null || Object.values(labels).some((v) => typeof v !== 'string')))) {
      throw new EngineError('InvalidArgument', 'body must be {"name"?: string, "labels"?: {string: string}}');
    }
    const created = await this.#snapshotsChanged(this.#engine.snapshotCreate({ name: name as string | undefined, labels: labels as Record<string, string> | undefined }));
    return { name: created, ...(await this.listSnapshots()) };
  }

  async deleteSnapshot(name: string): Promise<{ snapshots: SnapshotInfo[] }> {
    await this.#snapshotsChanged(this.#engine.snapshotDelete(name));
    return this.listSnapshots();
  }

  async revertSnapshot(name: string): Promise<{ snapshots: SnapshotInfo[] }> {
    const refused = this.#opts.revertRefused?.();
    if (refused) throw new EngineError('InvalidState', `Cannot revert volume "${this.#engine.volume}" to snapshot "${name}": ${refused}`);
    await this.#snapshotsChanged(this.#engine.snapshotRevert(name));
    return this.listSnapshots();
  }

  async purgeSnapshots(): Promise<{ merged: string[]; snapshots: SnapshotInfo[] }> {
    const merged = await this.#snapshotsChanged(this.#engine.snapshotPurge());
    return { merged, ...(await this.listSnapshots()) };
  }

  /**
   * A snapshot operation ended (or failed part way): watchers hear of it at once, so the Engine's status (and the
   * Snapshot objects mirrored from it) follow within a moment instead of at the next resync.
   */
  async #snapshotsChanged<T>(op: Promise<T>): Promise<T> {
    try {
      return await op;
    } finally {
      this.changed();
    }
  }
}

/** One engine's control API on a listener of its own (the `stratum engine` process). */
export class ControlServer {
  readonly #server: http.Server;
  readonly #control: EngineControl;

  constructor(engine: Engine, opts: ControlServerOptions = {}) {
    this.#control = new EngineControl(engine, opts);
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    this.#server.requestTimeout = 30_000;
  }

  /** The engine changed (replica mode, rebuild progress): watchers get the new status, coalesced. */
  changed(): void {
    this.#control.changed();
  }

  async listen(where: ControlListenOptions, { signal }: { signal?: AbortSignal } = {}): Promise<{ host: string; port: number } | { path: string }> {
    signal?.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen('path' in where ? { path: where.path } : { host: where.host ?? '127.0.0.1', port: where.port }, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const a = this.#server.address();
    return typeof a === 'string' || a === null ? { path: String(a) } : { host: a.address, port: a.port };
  }

  /** Stop accepting and close idle connections; requests in progress finish. */
  async close(): Promise<void> {
    this.#control.endWatches();
    this.#server.closeIdleConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  destroy(): void {
    this.#control.endWatches();
    this.#server.closeAllConnections();
    this.#server.close();
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const send = (status: number, value: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(value)}\n`);
    };
    try {
      const url = new URL(req.url ?? '/', 'http://engine');
      const path = url.pathname.replace(/\/+$/, '');
      const one = /^\/v1\/engine\/replicas\/([^/]+)$/.exec(path);
      if (req.method === 'GET' && path === '/v1/engine' && url.searchParams.get('watch') === 'true') return this.#control.watch(req, res);
      if (req.method === 'GET' && path === '/v1/engine') return send(200, this.#control.status());
      if (req.method === 'POST' && path === '/v1/engine/replicas') return send(202, await this.#control.addReplica(await body(req)));
      if (req.method === 'DELETE' && one) return send(200, await this.#control.removeReplica(decodeURIComponent(one[1]!)));
      const snap = /^\/v1\/engine\/snapshots\/([^/]+)(\/revert)?$/.exec(path);
      if (req.method === 'GET' && path === '/v1/engine/snapshots') return send(200, await this.#control.listSnapshots());
      if (req.method === 'POST' && path === '/v1/engine/snapshots') return send(200, await this.#control.createSnapshot(await body(req)));
      if (req.method === 'POST' && path === '/v1/engine/purge') return send(200, await this.#control.purgeSnapshots());
      if (req.method === 'POST' && path === '/v1/engine/clone') return send(202, this.#control.startClone(await body(req)));
      if (req.method === 'GET' && path === '/v1/engine/clone') return send(200, this.#control.cloneStatus());
      if (req.method === 'DELETE' && snap && !snap[2]) return send(200, await this.#control.deleteSnapshot(decodeURIComponent(snap[1]!)));
      if (req.method === 'POST' && snap?.[2]) return send(200, await this.#control.revertSnapshot(decodeURIComponent(snap[1]!)));
      send(404, { code: 'NotFound', message: `no route ${req.method} ${path}` });
    } catch (err) {
      send(statusFor(err), { code: isEngineError(err) ? err.code : 'Internal', message: err instanceof Error ? err.message : String(err) });
    }
  }
}
