// The replica's in-memory map of block states (one byte per block: 256 KiB of RAM per GiB at 4 KiB blocks), the
// record of which blocks changed since the last flush, and the pure block arithmetic of the I/O paths: splitting a
// byte range into runs of one state, and planning a write into partial edge blocks (read-modify-write) and whole
// blocks (written as they are).

/** What a block of the volume reads as. */
export const BlockState = {
  /** Never written: read from the backing image (zeros past its end, or with no backing image). */
  UNWRITTEN: 0,
  /** Written: read from the head file. */
  DATA: 1,
  /** Trimmed or zeroed: reads as zeros without touching the head, and hides the backing image. */
  ZERO: 2,
} as const;
export type BlockState = (typeof BlockState)[keyof typeof BlockState];

export function isBlockState(v: number): v is BlockState {
  return v === BlockState.UNWRITTEN || v === BlockState.DATA || v === BlockState.ZERO;
}

export function blockStateName(s: BlockState): 'unwritten' | 'data' | 'zero' {
  return s === BlockState.DATA ? 'data' : s === BlockState.ZERO ? 'zero' : 'unwritten';
}

/** A run of consecutive blocks in one state. */
export interface StateRun {
  start: number;
  count: number;
  state: BlockState;
}

/** Block size rules: a power of two from 512 B to 1 MiB. */
export function checkBlockSize(blockSize: number): boolean {
  return Number.isInteger(blockSize) && blockSize >= 512 && blockSize <= 1 << 20 && (blockSize & (blockSize - 1)) === 0;
}

export class BlockMap {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly #states: Uint8Array;
  /** Block ranges [start, end) changed since the last takeDirty, in change order, possibly overlapping. */
  #dirty: [number, number][] = [];
  /** The same since the last takeVolatile: what the next pending-log record must carry (pending-log.ts). */
  #volatile: [number, number][] = [];

  constructor(blockSize: number, states: Uint8Array) {
    this.blockSize = blockSize;
    this.blockCount = states.length;
    this.#states = states;
  }

  get(block: number): BlockState {
    return this.#states[block] as BlockState;
  }

  /** A copy of every block's state. */
  copyStates(): Uint8Array {
    return this.#states.slice();
  }

  /**
   * Set `count` blocks from `start` to `state` and remember them as changed. Returns whether any block changed: a
   * block already in `state` has its change remembered already (or durable), so rewriting it records nothing.
   */
  set(start: number, count: number, state: BlockState): boolean {
    const end = start + count;
    let from = start;
    while (from < end && this.#states[from] === state) from++;
    if (from >= end) return false;
    let to = end;
    while (this.#states[to - 1] === state) to--;
    this.#states.fill(state, from, to);
    addRange(this.#dirty, from, to);
    addRange(this.#volatile, from, to);
    return true;
  }

  /** Runs of equal state covering blocks [start, end). */
  *runs(start: number, end: number): Generator<StateRun> {
    let at = start;
    while (at < end) {
      const state = this.#states[at] as BlockState;
      let next = at + 1;
      while (next < end && this.#states[next] === state) next++;
      yield { start: at, count: next - at, state };
      at = next;
    }
  }

  /**
   * The current state of every block changed since the previous call, as sorted non-overlapping runs, and forget
   * them. The states are read now: a block changed twice since the last flush is journaled once, as it is now.
   */
  takeDirty(): StateRun[] {
    const ranges = this.#dirty;
    this.#dirty = [];
    return this.#currentRuns(ranges);
  }

  /**
   * The current state of every block changed since the previous call (with `sinceFlush`: also of every block
   * changed since the last takeDirty), and forget the former; the flush record of changes is left alone.
   */
  takeVolatile(sinceFlush = false): StateRun[] {
    const ranges = sinceFlush ? [...this.#volatile, ...this.#dirty] : this.#volatile;
    this.#volatile = [];
    return this.#currentRuns(ranges);
  }

  get hasVolatile(): boolean {
    return this.#volatile.length > 0;
  }

  /** Sorted, non-overlapping runs of the current states over the union of `ranges` (which it sorts). */
  #currentRuns(ranges: [number, number][]): StateRun[] {
    ranges.sort((a, b) => a[0] - b[0]);
    const out: StateRun[] = [];
    let curStart = -1;
    let curEnd = -1;
    const emit = (): void => {
      if (curStart >= 0) for (const r of this.runs(curStart, curEnd)) out.push(r);
    };
    for (const [s, e] of ranges) {
      if (s <= curEnd) curEnd = Math.max(curEnd, e);
      else {
        emit();
        curStart = s;
        curEnd = e;
      }
    }
    emit();
    return out;
  }

  /** Put runs back as dirty (a flush that failed before its journal commit). */
  restoreDirty(runs: readonly StateRun[]): void {
    for (const r of runs) this.#dirty.push([r.start, r.start + r.count]);
  }

  get hasDirty(): boolean {
    return this.#dirty.length > 0;
  }

  /**
   * Written runs (DATA or ZERO) from block `start` on, at most `max` of them (adjacent runs of one state merged),
   * and the block to continue from, or undefined when the map has been walked to the end.
   */
  written(start: number, max: number): { runs: StateRun[]; next: number | undefined } {
    const runs: StateRun[] = [];
    const states = this.#states;
    let at = start;
    while (at < this.blockCount) {
      while (at < this.blockCount && states[at] === BlockState.UNWRITTEN) at++;
      if (at >= this.blockCount) break;
      if (runs.length === max) return { runs, next: at };
      const state = states[at] as BlockState;
      let end = at + 1;
      while (end < this.blockCount && states[end] === state) end++;
      runs.push({ start: at, count: end - at, state });
      at = end;
    }
    return { runs, next: undefined };
  }

  /** Bytes of the volume in each written state (for status and tests). */
  countWritten(): { dataBlocks: number; zeroBlocks: number } {
    let dataBlocks = 0;
    let zeroBlocks = 0;
    for (const s of this.#states) {
      if (s === BlockState.DATA) dataBlocks++;
      else if (s === BlockState.ZERO) zeroBlocks++;
    }
    return { dataBlocks, zeroBlocks };
  }
}

/** Remember [start, end) in a change list; sequential writers produce touching ranges, merged to keep it short. */
function addRange(list: [number, number][], start: number, end: number): void {
  const last = list[list.length - 1];
  if (last !== undefined && last[1] === start) last[1] = end;
  else list.push([start, end]);
}

/** One piece of a planned write. */
export type WriteSegment =
  /** A block only partly covered: read the block, lay data[dataStart, dataEnd) over it at `within`, write it back. */
  | { kind: 'partial'; block: number; within: number; dataStart: number; dataEnd: number }
  /** Whole blocks [block, block + count) covered by data[dataStart, dataEnd). */
  | { kind: 'full'; block: number; count: number; dataStart: number; dataEnd: number };

/** Split a write of `length` bytes at `offset` into partial edge blocks and one run of whole blocks. */
export function planWrite(offset: number, length: number, blockSize: number): WriteSegment[] {
  const out: WriteSegment[] = [];
  if (length <= 0) return out;
  const end = offset + length;
  let at = offset;
  const firstBlock = Math.floor(offset / blockSize);
  const lastBlock = Math.floor((end - 1) / blockSize);
  if (offset % blockSize !== 0 || (firstBlock === lastBlock && length < blockSize)) {
    const blockEnd = Math.min((firstBlock + 1) * blockSize, end);
    out.push({ kind: 'partial', block: firstBlock, within: offset - firstBlock * blockSize, dataStart: 0, dataEnd: blockEnd - offset });
    at = blockEnd;
  }
  if (at >= end) return out;
  const tailPartial = end % blockSize !== 0;
  const fullEnd = tailPartial ? Math.floor(end / blockSize) * blockSize : end;
  if (fullEnd > at) {
    out.push({ kind: 'full', block: at / blockSize, count: (fullEnd - at) / blockSize, dataStart: at - offset, dataEnd: fullEnd - offset });
    at = fullEnd;
  }
  if (at < end) {
    out.push({ kind: 'partial', block: at / blockSize, within: 0, dataStart: at - offset, dataEnd: end - offset });
  }
  return out;
}

/** Lay `data` over a copy of `block` at `within` (the merge of a partial-block write). */
export function mergeBlock(block: Uint8Array, data: Uint8Array, within: number): Uint8Array {
  const out = new Uint8Array(block);
  out.set(data, within);
  return out;
}
