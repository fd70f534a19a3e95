// LayeredReplica: a replica with snapshots. The live head is a ReplicaStore (its data file, crash-consistent map and
// pending log, unchanged) whose UNWRITTEN blocks read from the frozen snapshot layers under it and then the backing
// image (layers.ts). The chain of layers is `chain.json` (chain.ts), replaced atomically as the one commit point of
// every change; the steps of each change are ordered so that a crash anywhere leaves the old chain or the new one,
// never a mix, and never loses an acknowledged write (docs/replica-protocol.md, "Snapshots").
//
// A snapshot freezes the head as it is and puts a new empty head on top: I/O waits while the head is closed (which
// waits for calls in flight and flushes, so everything acknowledged is durable), its block states are written as
// the frozen layer's map, the new head is created, and the chain is committed. The engine quiesces writes across
// replicas around it, which is what makes a snapshot crash-consistent across them.

import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import type { ImageReader } from '../imagefmt/index.js';
import { BlockState } from './block-map.js';
import {
  allLayerFiles, ancestry, CHAIN_FILE, childrenOf, decodeChain, EMPTY_CHAIN, encodeChain, headOnlyFiles, layerPrefix, layerStorage,
  SNAP_MAP_FILE, VOLUME_HEAD, type Chain, type ChainLayer,
} from './chain.js';
import type { ChainView, ControlAnswer, ControlRequest, SnapshotInfo } from './control.js';
import { ReplicaError } from './errors.js';
import { finishGrowth, growReplica } from './grow.js';
import { FrozenLayer, LayerReader } from './layers.js';
import { decodeCheckpoint, encodeCheckpoint } from './map-format.js';
import { backingInfo, checkName, decodeMeta, HEAD_FILE, META_FILE, type ReplicaMeta } from './meta.js';
import { decodeExtentData } from './protocol-payloads.js';
import { MAX_IO } from './protocol.js';
import { fsStorage, type StorageDir } from './storage.js';
import { SyncIoGate } from '../util/sync-io-gate.js';
import { lockDir, openBacking, ReplicaStore, type CreateReplicaOptions, type ReplicaStoreOptions } from './store.js';
import type { ExtentData, ReplicaDevice, ReplicaInfo, WrittenExtents } from './types.js';
import type { FileLock } from '../util/file-lock.js';
import { isNoSpace } from '../util/disk.js';
import { dropReserve, keepReserve, reserveBytes } from './open-reserve.js';

type Signal = { signal?: AbortSignal | undefined };
type HeadOptions = Pick<ReplicaStoreOptions, 'journal' | 'pending' | 'syncIo'>;

export interface OpenReplicaOptions extends ReplicaStoreOptions {
  /** The volume's size: a replica smaller than this grows to it first (grow.ts); a larger one is refused. */
  size?: number;
}

/** Copy unit of a purge into the head, and of layer copies (as the rebuild's windows). */
const MERGE_WINDOW = 4 * 1024 * 1024;

export class LayeredReplica implements ReplicaDevice {
  readonly dir: string;
  readonly meta: ReplicaMeta;
  readonly #storage: StorageDir;
  readonly #headOpts: HeadOptions;
  readonly #backing: ImageReader | undefined;
  readonly #layers = new Map<number, FrozenLayer>();
  readonly #below: LayerReader;
  readonly #lock: FileLock | undefined;
  #chain: Chain;
  #head: ReplicaStore;
  /** Set while the head is being replaced: I/O waits for it. */
  #swap: Promise<void> | undefined;
  /** Chain operations run one at a time. */
  #ops: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;

  private constructor(p: { dir: string; meta: ReplicaMeta; storage: StorageDir; headOpts: HeadOptions; backing: ImageReader | undefined; below: LayerReader; lock: FileLock | undefined; chain: Chain; head: ReplicaStore; layers: FrozenLayer[] }) {
    this.dir = p.dir;
    this.meta = p.meta;
    this.#storage = p.storage;
    this.#headOpts = p.headOpts;
    this.#backing = p.backing;
    this.#below = p.below;
    this.#lock = p.lock;
    this.#chain = p.chain;
    this.#head = p.head;
    for (const l of p.layers) this.#layers.set(l.id, l);
  }

  /** Why the directory has no open reserve (open-reserve.ts) after the last create or open; undefined when it has one. */
  reserveProblem: string | undefined;

  /** The size before this open grew the replica (grow.ts); undefined when it did not. */
  grownFrom: number | undefined;

  /** Makes the open reserve when the disk has room; best effort: a disk that is full or failing leaves it out. */
  async #keepReserve(): Promise<void> {
    const bytes = reserveBytes(this.meta.size / this.meta.blockSize);
    try {
      this.reserveProblem = (await keepReserve(this.#storage, bytes)) ? undefined : `the disk has no room for its ${bytes}-byte open reserve`;
    } catch (err) {
      this.reserveProblem = `its ${bytes}-byte open reserve could not be written: ${err instanceof Error ? err.message : String(err)}`;
    }
  }

  static async create(dir: string, opts: CreateReplicaOptions): Promise<LayeredReplica> {
    const gate = new SyncIoGate(opts.syncIo);
    const storage = opts.storage ?? (await fsStorage(dir, { gate }));
    const lock = await lockDir(dir, opts);
    let backing: ImageReader | undefined;
    try {
      if ((await storage.readFile(META_FILE)) === undefined) await storage.remove(CHAIN_FILE);
      if (opts.backing) backing = await openBacking(resolve(dir, opts.backing.path), gate, opts.signal, opts.backingReaders);
      const blockSize = opts.blockSize ?? 4096;
      const below = new LayerReader([], backing, blockSize);
      const head = await ReplicaStore.create(dir, { ...opts, storage, below });
      const r = new LayeredReplica({ dir, meta: head.meta, storage, headOpts: headOptions(opts), backing, below, lock, chain: EMPTY_CHAIN, head, layers: [] });
      await r.#keepReserve();
      return r;
    } catch (err) {
      await backing?.close();
      await lock?.release();
      throw err;
    }
  }

  /**
   * Open the replica in `dir`. An open that fails for want of space gives back the directory's open reserve and tries
   * once more (open-reserve.ts); the reserve is made again afterwards when the disk has room.
   */
  static async open(dir: string, opts: OpenReplicaOptions = {}): Promise<LayeredReplica> {
    let r: LayeredReplica;
    try {
      r = await LayeredReplica.#open(dir, opts);
    } catch (err) {
      if (!isNoSpace(err) || !(await dropReserve(opts.storage ?? (await fsStorage(dir))))) throw err;
      r = await LayeredReplica.#open(dir, opts);
    }
    await r.#keepReserve();
    return r;
  }

  static async #open(dir: string, opts: OpenReplicaOptions): Promise<LayeredReplica> {
    const gate = new SyncIoGate(opts.syncIo);
    const storage = opts.storage ?? (await fsStorage(dir, { gate }));
    const lock = await lockDir(dir, opts);
    let backing: ImageReader | undefined;
    const layers: FrozenLayer[] = [];
    try {
      const bytes = await storage.readFile(META_FILE);
      if (bytes === undefined) throw new ReplicaError('NotFound', `No replica in ${dir}: ${META_FILE} is missing`);
      let meta = decodeMeta(bytes);
      const chainBytes = await storage.readFile(CHAIN_FILE);
      const chain = chainBytes === undefined ? EMPTY_CHAIN : decodeChain(chainBytes);
      if (chain.layers.some((l) => l.building)) {
        throw new ReplicaError('Corrupt', `replica ${dir}: its snapshot chain was being copied by a rebuild that did not finish`, { file: CHAIN_FILE, offset: 0 });
      }
      if (meta.backing) {
        const b = meta.backing;
        backing = await openBacking(resolve(dir, b.path), gate, opts.signal, opts.backingReaders);
        if (backing.format !== b.format || backing.virtualSize !== b.virtualSize) {
          throw new ReplicaError('BackingMismatch', `Cannot open replica "${meta.name}": backing file ${b.path} is ${backing.format} of ${backing.virtualSize} bytes, the replica was created over ${b.format} of ${b.virtualSize} bytes`);
        }
      }
      const oldSize = meta.size;
      if (opts.size !== undefined) meta = await growReplica(storage, chain, meta, opts.size);
      await finishGrowth(storage, chain, meta);
      await sweep(storage, chain);
      const geometry = { blockSize: meta.blockSize, blockCount: meta.size / meta.blockSize };
      for (const l of chain.layers) {
        const s = layerStorage(storage, l.id);
        const mapBytes = await s.readFile(SNAP_MAP_FILE);
        if (mapBytes === undefined) throw new ReplicaError('Corrupt', `replica ${dir}: snapshot "${l.name}" has no ${SNAP_MAP_FILE}`, { file: SNAP_MAP_FILE, offset: 0 });
        const states = decodeCheckpoint(mapBytes, geometry).states;
        layers.push(new FrozenLayer(l.id, await s.open(HEAD_FILE, { create: false }), meta.blockSize, states));
      }
      const byId = new Map(layers.map((l) => [l.id, l]));
      const below = new LayerReader(ancestry(chain, chain.headParent).map((id) => byId.get(id)!), backing, meta.blockSize);
      const head = await ReplicaStore.open(dir, { ...opts, storage: layerStorage(storage, chain.head), below });
      const r = new LayeredReplica({ dir, meta, storage, headOpts: headOptions(opts), backing, below, lock, chain, head, layers });
      if (meta.size !== oldSize) r.grownFrom = oldSize;
      return r;
    } catch (err) {
      await Promise.allSettled(layers.map((l) => l.close()));
      await backing?.close();
      await lock?.release();
      throw err;
    }
  }

  get size(): number {
    return this.meta.size;
  }

  /** The head's (revision, generation) with the replica's backing image. */
  info(): ReplicaInfo {
    return { ...this.#head.info(), name: this.meta.name, backing: backingInfo(this.meta.backing) };
  }

  stats(): ReturnType<ReplicaStore['stats']> & { snapshots: number } {
    return { ...this.#head.stats(), snapshots: this.#chain.layers.length };
  }

  /** The head store's recovery report (tests). */
  get recovery(): ReplicaStore['recovery'] {
    return this.#head.recovery;
  }

  read(offset: number, length: number, opts?: Signal): Promise<Uint8Array> {
    return this.#io((h) => h.read(offset, length, opts));
  }

  write(offset: number, data: Uint8Array, opts: { fua: boolean } & Signal): Promise<void> {
    return this.#io((h) => h.write(offset, data, opts));
  }

  flush(opts?: Signal): Promise<void> {
    return this.#io((h) => h.flush(opts));
  }

  trim(offset: number, length: number, opts: { fua: boolean } & Signal): Promise<void> {
    return this.#io((h) => h.trim(offset, length, opts));
  }

  writeZeroes(offset: number, length: number, opts: { fua: boolean } & Signal): Promise<void> {
    return this.#io((h) => h.writeZeroes(offset, length, opts));
  }

  writtenExtents(opts?: { offset?: number; maxExtents?: number }): WrittenExtents {
    return this.#head.writtenExtents(opts);
  }

  readExtent(offset: number, length: number, opts?: Signal): Promise<ExtentData> {
    return this.#io((h) => h.readExtent(offset, length, opts));
  }

  setRevision(revision: number): void {
    this.#head.setRevision(revision);
  }

  /** The snapshots, oldest first, and the head as 'volume-head' (Longhorn's list). */
  listSnapshots(): SnapshotInfo[] {
    const c = this.#chain;
    const nameOf = (id: number | null) => (id === null ? '' : (c.layers.find((l) => l.id === id)?.name ?? ''));
    const out: SnapshotInfo[] = c.layers.map((l) => ({
      name: l.name,
      parent: nameOf(l.parent),
      children: childrenOf(c, l.id),
      created: l.createdAt,
      removed: l.removed,
      userCreated: l.userCreated,
      labels: l.labels,
      size: (this.#layers.get(l.id)?.map.countWritten().dataBlocks ?? 0) * this.meta.blockSize,
      revision: l.revision,
    }));
    const h = this.#head.info();
    out.push({ name: VOLUME_HEAD, parent: nameOf(c.headParent), children: [], created: '', removed: false, userCreated: false, labels: {}, size: this.#head.stats().dataBytes, revision: h.revision });
    return out;
  }

  /** One CONTROL request (control.ts). */
  control(req: ControlRequest, data: Uint8Array, opts: Signal = {}): Promise<ControlAnswer> {
    if (req.op === 'layerRead' || req.op === 'readSnapshot' || req.op === 'snapshotAllocated') {
      // The answer is built in memory: bounded as READ is (snapshotAllocated answers ranges, not bytes).
      const max = req.op === 'snapshotAllocated' ? this.meta.size : MAX_IO;
      const ok = Number.isSafeInteger(req.offset) && Number.isSafeInteger(req.length) && req.offset >= 0 && req.length >= 0 && req.length <= max && req.offset + req.length <= this.meta.size;
      if (!ok) return Promise.reject(new ReplicaError('OutOfRange', `Cannot ${req.op} ${req.offset}+${req.length} on replica "${this.meta.name}": outside the ${this.meta.size}-byte volume or longer than ${max} bytes`));
    }
    switch (req.op) {
      case 'snapshot':
        return this.snapshot(req.name, req).then((name) => ({ result: { name } }));
      case 'listSnapshots':
        return Promise.resolve({ result: this.listSnapshots() });
      case 'deleteSnapshot':
        return this.deleteSnapshot(req.name).then(() => ({ result: null }));
      case 'revertSnapshot':
        return this.revert(req.name).then(() => ({ result: null }));
      case 'purgeSnapshots':
        return this.purge({ ...opts, intoHead: req.intoHead !== false }).then((merged) => ({ result: { merged } }));
      case 'chain':
        return Promise.resolve({ result: this.chainView() });
      case 'layerExtents':
        return Promise.resolve({ result: this.#layer(req.layer).written(req.offset, req.maxExtents) });
      case 'layerRead':
        return this.#layer(req.layer).readExtent(req.offset, req.length).then((e) => ({ result: { runs: e.runs }, data: e.data }));
      case 'installChain':
        return this.installChain(req.chain).then(() => ({ result: null }));
      case 'layerWrite':
        return this.layerWrite(req.layer, req.offset, decodeExtentData(data)).then(() => ({ result: null }));
      case 'finishChain':
        return this.finishChain().then(() => ({ result: null }));
      case 'snapshotAllocated':
        if (req.written === true) return Promise.resolve({ result: this.snapshotReader(req.name).written(req.offset, req.length) });
        return this.snapshotReader(req.name).allocated(req.offset, req.length, opts).then((r) => ({ result: r }));
      case 'readSnapshot': {
        const buf = Buffer.allocUnsafe(req.length);
        return this.snapshotReader(req.name).read(buf, req.offset, opts).then(() => ({ result: null, data: buf }));
      }
    }
    return Promise.reject(new ReplicaError('InvalidArgument', `unknown control op ${JSON.stringify((req as { op: unknown }).op)}`));
  }

  /** Freeze the head as snapshot `name` and continue on a new empty head; returns the name (generated when empty). */
  snapshot(name: string, opts: { createdAt?: string | undefined; userCreated?: boolean | undefined; labels?: Record<string, string> | undefined } = {}): Promise<string> {
    return this.#exclusive(async () => {
      const snapName = name === '' ? randomUUID() : name;
      this.#checkNewName(snapName);
      await this.#replaceHead(async (old) => {
        const oldId = this.#chain.head;
        const revision = old.info().revision;
        const states = old.mapStates();
        const s = layerStorage(this.#storage, oldId);
        await s.writeFileAtomic(SNAP_MAP_FILE, encodeCheckpoint({ blockSize: this.meta.blockSize, blockCount: states.length, generation: 0, nextSeq: 0, revision, states }));
        const frozen = new FrozenLayer(oldId, await s.open(HEAD_FILE, { create: false }), this.meta.blockSize, states);
        const layer: ChainLayer = { id: oldId, name: snapName, parent: this.#chain.headParent, createdAt: opts.createdAt ?? new Date().toISOString(), removed: false, userCreated: opts.userCreated ?? true, labels: opts.labels ?? {}, revision };
        const next: Chain = { ...this.#chain, head: this.#chain.nextId, headParent: oldId, nextId: this.#chain.nextId + 1, layers: [...this.#chain.layers, layer] };
        return { next, frozen, stack: [frozen, ...this.#below.layers], revision, removeOld: headOnlyFiles(oldId) };
      });
      return snapName;
    });
  }

  /** Discard the head and continue on a new empty head over snapshot `name` (the engine checks there is no frontend). */
  revert(name: string): Promise<void> {
    return this.#exclusive(async () => {
      const target = this.#byName(name);
      await this.#replaceHead(async (old) => {
        const next: Chain = { ...this.#chain, head: this.#chain.nextId, headParent: target.id, nextId: this.#chain.nextId + 1 };
        const stack = ancestry(next, target.id).map((id) => this.#layer(id));
        return { next, stack, revision: old.info().revision, removeOld: allLayerFiles(this.#chain.head).filter((f) => f !== META_FILE) };
      });
    });
  }

  /** Delete snapshot `name`: at once when nothing sits on it, otherwise it is marked removed until a purge. */
  deleteSnapshot(name: string): Promise<void> {
    return this.#exclusive(async () => {
      const l = this.#byName(name);
      if (childrenOf(this.#chain, l.id).length > 0) {
        if (l.removed) return;
        await this.#commit({ ...this.#chain, layers: this.#chain.layers.map((x) => (x.id === l.id ? { ...x, removed: true } : x)) });
        return;
      }
      await this.#commit({ ...this.#chain, layers: this.#chain.layers.filter((x) => x.id !== l.id) });
      await this.#dropLayer(l.id);
    });
  }

  /**
   * Merge every removed snapshot that has one child into that child (blocks the child does not have are copied up,
   * the child's own win), and drop removed snapshots left with none. Returns the names merged or dropped. Without
   * `intoHead`, a removed snapshot whose child is the live head stays: merging it copies its data into the head,
   * which the engine's automatic tidy-up does not do (engine/snapshots.ts).
   */
  purge({ signal, intoHead = true }: Signal & { intoHead?: boolean } = {}): Promise<string[]> {
    return this.#exclusive(async () => {
      const done: string[] = [];
      for (;;) {
        signal?.throwIfAborted();
        const c = this.#chain;
        const s = c.layers.find((l) => l.removed && purgeable(childrenOf(c, l.id), intoHead));
        if (!s) return done;
        const children = childrenOf(c, s.id);
        if (children.length === 0) {
          await this.#commit({ ...c, layers: c.layers.filter((l) => l.id !== s.id) });
        } else if (children[0] === VOLUME_HEAD) {
          await this.#mergeIntoHead(s, signal);
        } else {
          await this.#mergeIntoLayer(s, this.#byName(children[0]!), signal);
        }
        await this.#dropLayer(s.id);
        done.push(s.name);
      }
    });
  }

  /** The chain as a rebuild copies it. */
  chainView(): ChainView {
    return { head: this.#chain.head, headParent: this.#chain.headParent, layers: this.#chain.layers };
  }

  /**
   * Rebuild target: take the source's chain (empty layers with its ids, marked building) under a new empty head.
   * Whatever the head held is dropped: the rebuild copies the source's head after the chain. Only on a replica
   * without snapshots.
   */
  installChain(view: ChainView): Promise<void> {
    return this.#exclusive(async () => {
      if (this.#chain.layers.length > 0) {
        throw new ReplicaError('InvalidArgument', `Cannot install a snapshot chain on replica "${this.meta.name}": it has snapshots already`);
      }
      if (view.layers.length === 0) return;
      const ids = new Set(view.layers.map((l) => l.id));
      const oldHead = this.#chain.head;
      const headId = Math.max(view.head, oldHead, ...ids) + 1;
      const chain: Chain = { version: 1, head: headId, headParent: view.headParent, nextId: headId + 1, layers: view.layers.map((l) => ({ ...l, removed: l.removed, building: true })) };
      ancestry(chain, chain.headParent);
      await this.#replaceHead(async () => {
        for (const l of chain.layers) {
          const s = layerStorage(this.#storage, l.id);
          const f = await s.open(HEAD_FILE, { create: true });
          await f.truncate(0);
          await f.truncate(this.meta.size);
          this.#layers.set(l.id, new FrozenLayer(l.id, f, this.meta.blockSize, new Uint8Array(this.meta.size / this.meta.blockSize)));
        }
        const stack = ancestry(chain, chain.headParent).map((id) => this.#layer(id));
        // The old head's files go, except when a new layer took its id (then only what a head alone has).
        const removeOld = ids.has(oldHead) ? headOnlyFiles(oldHead) : allLayerFiles(oldHead).filter((f) => f !== META_FILE);
        return { next: chain, stack, revision: 0, removeOld };
      });
    });
  }

  /** Rebuild target: put a copied extent into a layer that is being built. */
  async layerWrite(id: number, offset: number, extent: ExtentData): Promise<void> {
    const l = this.#chain.layers.find((x) => x.id === id);
    if (!l?.building) throw new ReplicaError('InvalidArgument', `Cannot write layer ${id} of replica "${this.meta.name}": it is not being built`);
    await this.#layer(id).writeExtent(offset, extent);
  }

  /** Rebuild target: every layer copied; make them durable, then commit the chain as complete. */
  finishChain(): Promise<void> {
    return this.#exclusive(async () => {
      const building = this.#chain.layers.filter((l) => l.building);
      for (const l of building) {
        const f = this.#layer(l.id);
        await f.file.datasync();
        const states = f.map.copyStates();
        await layerStorage(this.#storage, l.id).writeFileAtomic(SNAP_MAP_FILE, encodeCheckpoint({ blockSize: this.meta.blockSize, blockCount: states.length, generation: 0, nextSeq: 0, revision: l.revision, states }));
      }
      await this.#commit({ ...this.#chain, layers: this.#chain.layers.map(({ building: _b, ...l }) => l) });
    });
  }

  /** The volume's content as of snapshot `name` (its layers and the backing image, flattened): export reads it. */
  snapshotReader(name: string): LayerReader {
    const l = this.#byName(name);
    return new LayerReader(ancestry(this.#chain, l.id).map((id) => this.#layer(id)), this.#backing, this.meta.blockSize);
  }

  /** Wait for chain operations and calls in flight, flush the head, close every file. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#ops.catch(() => {});
      try {
        await this.#head.close();
      } finally {
        await Promise.allSettled([...this.#layers.values()].map((l) => l.close()));
        await this.#backing?.close();
        await this.#lock?.release();
      }
    })();
    return this.#closing;
  }

  #io<T>(f: (h: ReplicaStore) => Promise<T>): Promise<T> {
    const s = this.#swap;
    return s ? s.then(() => f(this.#head)) : f(this.#head);
  }

  #exclusive<T>(op: () => Promise<T>): Promise<T> {
    if (this.#closing) return Promise.reject(new ReplicaError('Closed', `Cannot change the snapshots of replica "${this.meta.name}": it is closed`));
    const p = this.#ops.catch(() => {}).then(op);
    this.#ops = p;
    return p;
  }

  /**
   * Replace the head: I/O waits; the old head is closed (calls in flight finish, everything acknowledged becomes
   * durable); `plan` says the next chain and stack; a new empty head is created over the stack with the old
   * revision, made durable; the chain is committed; the old head's leftover files are removed. Before the commit
   * a failure reopens the old head; a crash leaves the old chain, whose head is intact.
   */
  async #replaceHead(plan: (old: ReplicaStore) => Promise<{ next: Chain; stack: FrozenLayer[]; revision: number; frozen?: FrozenLayer; removeOld: string[] }>): Promise<void> {
    let release!: () => void;
    this.#swap = new Promise((r) => (release = r));
    const old = this.#head;
    const oldStack = this.#below.layers;
    let created: ReplicaStore | undefined;
    let p: Awaited<ReturnType<typeof plan>> | undefined;
    try {
      await old.close();
      p = await plan(old);
      this.#below.setLayers(p.stack);
      created = await ReplicaStore.create(this.dir, { ...this.#headOpts, storage: layerStorage(this.#storage, p.next.head), name: this.meta.name, size: this.meta.size, blockSize: this.meta.blockSize, below: this.#below });
      created.setRevision(p.revision);
      await created.flush();
      await this.#commit(p.next);
      this.#head = created;
      if (p.frozen) this.#layers.set(p.frozen.id, p.frozen);
      for (const name of p.removeOld) await this.#storage.remove(name).catch(() => {});
    } catch (err) {
      if (this.#head !== created) {
        this.#below.setLayers(oldStack);
        await created?.close().catch(() => {});
        await p?.frozen?.close().catch(() => {});
        this.#head = await ReplicaStore.open(this.dir, { ...this.#headOpts, storage: layerStorage(this.#storage, this.#chain.head), below: this.#below });
      }
      throw err;
    } finally {
      this.#swap = undefined;
      release();
    }
  }

  async #mergeIntoHead(s: ChainLayer, signal: AbortSignal | undefined): Promise<void> {
    const layer = this.#layer(s.id);
    for (const w of windows(layer, this.meta.size)) {
      signal?.throwIfAborted();
      await this.#head.adopt(w.offset, await layer.readExtent(w.offset, w.length), { signal });
    }
    // The head's copies are durable before the chain stops naming the layer they came from.
    await this.#head.flush({ signal });
    await this.#commit({ ...this.#chain, headParent: s.parent, layers: this.#chain.layers.filter((l) => l.id !== s.id) });
    this.#below.setLayers(ancestry(this.#chain, this.#chain.headParent).map((id) => this.#layer(id)));
  }

  async #mergeIntoLayer(s: ChainLayer, child: ChainLayer, signal: AbortSignal | undefined): Promise<void> {
    const from = this.#layer(s.id);
    const into = this.#layer(child.id);
    const states = into.map.copyStates();
    const bs = this.meta.blockSize;
    for (const w of windows(from, this.meta.size)) {
      signal?.throwIfAborted();
      const e = await from.readExtent(w.offset, w.length);
      let block = w.offset / bs;
      let dataAt = 0;
      for (const r of e.runs) {
        const count = r.length / bs;
        for (let b = block; b < block + count; b++) {
          if (r.state === BlockState.UNWRITTEN || states[b] !== BlockState.UNWRITTEN) continue;
          if (r.state === BlockState.DATA) await into.file.write(e.data.subarray(dataAt + (b - block) * bs, dataAt + (b - block + 1) * bs), b * bs);
          states[b] = r.state;
        }
        if (r.state === BlockState.DATA) dataAt += r.length;
        block += count;
      }
    }
    // Data durable, then the child's larger map (reads are unchanged by it: the blocks are the parent's), then the chain.
    await into.file.datasync();
    await layerStorage(this.#storage, child.id).writeFileAtomic(SNAP_MAP_FILE, encodeCheckpoint({ blockSize: bs, blockCount: states.length, generation: 0, nextSeq: 0, revision: child.revision, states }));
    into.replaceStates(states);
    await this.#commit({ ...this.#chain, layers: this.#chain.layers.filter((l) => l.id !== s.id).map((l) => (l.id === child.id ? { ...l, parent: s.parent } : l)) });
    this.#below.setLayers(ancestry(this.#chain, this.#chain.headParent).map((id) => this.#layer(id)));
  }

  /** The commit point: chain.json replaced atomically and durably. */
  async #commit(next: Chain): Promise<void> {
    await this.#storage.writeFileAtomic(CHAIN_FILE, encodeChain(next));
    this.#chain = next;
  }

  /** After a commit that no longer names the layer: close it and remove its files. */
  async #dropLayer(id: number): Promise<void> {
    const l = this.#layers.get(id);
    this.#layers.delete(id);
    await l?.close();
    for (const f of allLayerFiles(id)) if (f !== META_FILE) await this.#storage.remove(f).catch(() => {});
  }

  #layer(id: number): FrozenLayer {
    const l = this.#layers.get(id);
    if (!l) throw new ReplicaError('NotFound', `Replica "${this.meta.name}" has no snapshot layer ${id}`);
    return l;
  }

  #byName(name: string): ChainLayer {
    const l = this.#chain.layers.find((x) => x.name === name);
    if (!l) throw new ReplicaError('NotFound', `Replica "${this.meta.name}" has no snapshot "${name}"`);
    return l;
  }

  #checkNewName(name: string): void {
    checkName('snapshot name', name);
    if (name === VOLUME_HEAD) throw new ReplicaError('InvalidArgument', `"${VOLUME_HEAD}" is the head's name, not a snapshot's`);
    if (this.#chain.layers.some((l) => l.name === name)) throw new ReplicaError('AlreadyExists', `Replica "${this.meta.name}" already has a snapshot "${name}"`);
  }
}

/** Whether a removed snapshot with these children can be purged: none or one, and the head only when allowed. */
function purgeable(children: readonly string[], intoHead: boolean): boolean {
  return children.length === 0 || (children.length === 1 && (intoHead || children[0] !== VOLUME_HEAD));
}

function headOptions(o: ReplicaStoreOptions): HeadOptions {
  return { ...(o.journal ? { journal: o.journal } : {}), ...(o.pending ? { pending: o.pending } : {}), ...(o.syncIo ? { syncIo: o.syncIo } : {}) };
}

/** Windows of up to MERGE_WINDOW bytes covering a layer's written extents. */
function* windows(layer: FrozenLayer, size: number): Generator<{ offset: number; length: number }> {
  let cursor: number | undefined = 0;
  while (cursor !== undefined) {
    const page = layer.written(cursor, 1024);
    for (const e of page.extents) {
      for (let at = e.offset; at < e.offset + e.length; at += MERGE_WINDOW) yield { offset: at, length: Math.min(MERGE_WINDOW, e.offset + e.length - at, size - at) };
    }
    cursor = page.nextOffset;
  }
}

/**
 * Remove what interrupted chain changes left behind: files of layers the chain does not name (a snapshot's new head,
 * a dropped layer), head-only files of frozen layers, and a stale snap.map of the head. Ids beyond nextId are never
 * written, so the sweep is over 0..nextId.
 */
async function sweep(storage: StorageDir, chain: Chain): Promise<void> {
  const frozen = new Set(chain.layers.map((l) => l.id));
  for (let id = 0; id <= chain.nextId; id++) {
    let names: string[];
    if (frozen.has(id)) names = headOnlyFiles(id);
    else if (id === chain.head) names = [layerPrefix(id) + SNAP_MAP_FILE];
    else names = allLayerFiles(id).filter((f) => f !== META_FILE);
    for (const n of names) await storage.remove(n);
  }
}
