// Frozen snapshot layers and the reader that stacks them: what an UNWRITTEN block of the head reads as. A frozen
// layer is a sparse data file plus its block states, read-only except while a rebuild fills it or a purge merges
// its parent into it (both only add blocks the layer did not have, with the same bytes the layer below had, so a
// reader never sees a change). The backing image sits under the bottom layer and is never a layer itself.

import type { ImageReader } from '../imagefmt/index.js';
import { BlockMap, BlockState } from './block-map.js';
import { ReplicaError } from './errors.js';
import type { StorageFile } from './storage.js';
import type { BelowReader } from './store.js';
import type { ExtentData, WrittenExtents } from './types.js';

type Signal = { signal?: AbortSignal | undefined };

export class FrozenLayer {
  readonly id: number;
  readonly file: StorageFile;
  readonly blockSize: number;
  #map: BlockMap;
  readonly #inFlight = new Set<Promise<unknown>>();

  constructor(id: number, file: StorageFile, blockSize: number, states: Uint8Array) {
    this.id = id;
    this.file = file;
    this.blockSize = blockSize;
    this.#map = new BlockMap(blockSize, states);
  }

  get map(): BlockMap {
    return this.#map;
  }

  /** Replace the block states at once (a purge's merged map, once its data is durable). */
  replaceStates(states: Uint8Array): void {
    this.#map = new BlockMap(this.blockSize, states);
  }

  /** Read `buf.length` bytes of this layer's data file at `position` (DATA blocks only are meaningful). */
  readData(buf: Uint8Array, position: number): Promise<void> {
    const p = this.file.read(buf, position).then((n) => {
      if (n < buf.length) buf.fill(0, n);
    });
    return this.#track(p);
  }

  written(offset: number, maxExtents: number): WrittenExtents {
    const bs = this.blockSize;
    const { runs, next } = this.#map.written(Math.floor(offset / bs), Math.max(1, maxExtents));
    return {
      extents: runs.map((r) => ({ offset: r.start * bs, length: r.count * bs, state: r.state === BlockState.DATA ? 'data' : 'zero' })),
      nextOffset: next === undefined ? undefined : next * bs,
    };
  }

  /** The states of a block-aligned range and the bytes of its DATA runs (the rebuild and purge copy unit). */
  async readExtent(offset: number, length: number): Promise<ExtentData> {
    const bs = this.blockSize;
    if (offset % bs !== 0 || length % bs !== 0) throw new ReplicaError('OutOfRange', `Cannot read extent ${offset}+${length} of layer ${this.id}: it must be aligned to ${bs} bytes`);
    const runs = [...this.#map.runs(offset / bs, (offset + length) / bs)];
    const dataBytes = runs.reduce((n, r) => n + (r.state === BlockState.DATA ? r.count * bs : 0), 0);
    const data = Buffer.allocUnsafe(dataBytes);
    let at = 0;
    const reads: Promise<void>[] = [];
    for (const r of runs) {
      if (r.state !== BlockState.DATA) continue;
      reads.push(this.readData(data.subarray(at, at + r.count * bs), r.start * bs));
      at += r.count * bs;
    }
    await Promise.all(reads);
    return { runs: runs.map((r) => ({ length: r.count * bs, state: r.state })), data };
  }

  /** Put a copied extent into this layer (rebuild target): the data first, the states after. */
  async writeExtent(offset: number, extent: ExtentData): Promise<void> {
    const bs = this.blockSize;
    let block = offset / bs;
    let dataAt = 0;
    for (const r of extent.runs) {
      const count = r.length / bs;
      if (r.state === BlockState.DATA) {
        await this.file.write(extent.data.subarray(dataAt, dataAt + r.length), block * bs);
        dataAt += r.length;
      }
      if (r.state !== BlockState.UNWRITTEN) this.#map.set(block, count, r.state);
      block += count;
    }
  }

  /** Waits for reads in flight, then closes the data file. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
    await this.file.close();
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inFlight.add(p);
    const done = (): void => void this.#inFlight.delete(p);
    p.then(done, done);
    return p;
  }
}

/** The content under a head (or under a snapshot, for export): frozen layers from the nearest down, then the backing image. */
export class LayerReader implements BelowReader {
  #layers: readonly FrozenLayer[];
  readonly #backing: ImageReader | undefined;
  readonly #blockSize: number;

  constructor(layers: readonly FrozenLayer[], backing: ImageReader | undefined, blockSize: number) {
    this.#layers = layers;
    this.#backing = backing;
    this.#blockSize = blockSize;
  }

  get layers(): readonly FrozenLayer[] {
    return this.#layers;
  }

  /** Restack (a purge removed a layer); reads already running finish on the old stack. */
  setLayers(layers: readonly FrozenLayer[]): void {
    this.#layers = layers;
  }

  read(buf: Uint8Array, offset: number, opts: Signal = {}): Promise<void> {
    return this.#read(this.#layers, 0, buf, offset, opts.signal);
  }

  async #read(layers: readonly FrozenLayer[], i: number, buf: Uint8Array, offset: number, signal: AbortSignal | undefined): Promise<void> {
    const layer = layers[i];
    if (!layer) {
      if (this.#backing) await this.#backing.read(buf, offset, { signal });
      else buf.fill(0);
      return;
    }
    const bs = this.#blockSize;
    const end = offset + buf.length;
    const jobs: Promise<void>[] = [];
    for (const run of layer.map.runs(Math.floor(offset / bs), Math.ceil(end / bs))) {
      const a = Math.max(offset, run.start * bs);
      const b = Math.min(end, (run.start + run.count) * bs);
      const slice = buf.subarray(a - offset, b - offset);
      if (run.state === BlockState.DATA) jobs.push(layer.readData(slice, a));
      else if (run.state === BlockState.ZERO) slice.fill(0);
      else jobs.push(this.#read(layers, i + 1, slice, a, signal));
    }
    await Promise.all(jobs);
  }

  /**
   * Ranges of [offset, offset + length) that some layer wrote (data or zeros), merged: where this content differs
   * from the backing image's. The backing image is not looked at.
   */
  written(offset: number, length: number): { offset: number; length: number }[] {
    const bs = this.#blockSize;
    const first = Math.floor(offset / bs);
    const count = Math.ceil((offset + length) / bs) - first;
    const hit = new Uint8Array(count);
    for (const layer of this.#layers) {
      for (const run of layer.map.runs(first, first + count)) {
        if (run.state !== BlockState.UNWRITTEN) hit.fill(1, Math.max(0, run.start - first), Math.min(count, run.start - first + run.count));
      }
    }
    const out: { offset: number; length: number }[] = [];
    for (let b = 0; b < count; b++) {
      if (!hit[b]) continue;
      const start = (first + b) * bs;
      const last = out[out.length - 1];
      if (last && last.offset + last.length === start) last.length += bs;
      else out.push({ offset: start, length: bs });
    }
    return out;
  }

  /**
   * Ranges of [offset, offset + length) that may hold non-zero bytes: written DATA in some layer, or unwritten
   * everywhere and not known to be zeros in the backing image (its zeroExtents). The rest reads as zeros.
   */
  async allocated(offset: number, length: number, opts: Signal = {}): Promise<{ offset: number; length: number }[]> {
    const bs = this.#blockSize;
    const first = Math.floor(offset / bs);
    const count = Math.ceil((offset + length) / bs) - first;
    // Per block: 0 undecided (falls through), 1 data, 2 zero.
    const decided = new Uint8Array(count);
    for (const layer of this.#layers) {
      for (const run of layer.map.runs(first, first + count)) {
        if (run.state === BlockState.UNWRITTEN) continue;
        for (let b = run.start; b < run.start + run.count; b++) if (decided[b - first] === 0) decided[b - first] = run.state;
      }
    }
    if (this.#backing) {
      const vs = this.#backing.virtualSize;
      // Past the backing image's end everything undecided is zero.
      for (let b = 0; b < count; b++) if (decided[b] === 0 && (first + b) * bs >= vs) decided[b] = BlockState.ZERO;
      for (const z of await this.#backing.zeroExtents({ offset: first * bs, length: count * bs, signal: opts.signal })) {
        const zs = Math.ceil(z.offset / bs);
        const ze = Math.floor((z.offset + z.length) / bs);
        for (let b = zs; b < ze; b++) if (decided[b - first] === 0) decided[b - first] = BlockState.ZERO;
      }
    } else {
      for (let b = 0; b < count; b++) if (decided[b] === 0) decided[b] = BlockState.ZERO;
    }
    const out: { offset: number; length: number }[] = [];
    for (let b = 0; b < count; b++) {
      if (decided[b] === BlockState.ZERO) continue;
      const start = (first + b) * bs;
      const last = out[out.length - 1];
      if (last && last.offset + last.length === start) last.length += bs;
      else out.push({ offset: start, length: bs });
    }
    return out;
  }
}
