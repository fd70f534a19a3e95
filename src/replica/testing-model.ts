// Test helper (not exported from index.ts): the content model that crash tests check a reopened replica against.
//
// Overlapping mutations are applied in the order they were issued (the store's range lock), so every 512-byte
// sector goes through a sequence of values, one per mutation that touched it. After a crash, a sector may hold the
// value left by the last mutation the crash must not lose (acknowledged, for a process crash; acknowledged and
// then flushed, for a power loss), or the value of any mutation issued after that one (it may or may not have been
// applied), and nothing else: never bytes that were never its content (a sparse head's zeros, say).

import type { ReplicaStore } from './store.js';
import type { Rng } from './testing.js';

export const SECTOR = 512;

/** A mutation as the workload generators of the crash tests describe it. */
export type ModelOp = { kind: 'write'; offset: number; data: Uint8Array } | { kind: 'zero'; offset: number; length: number };

/** A random mutation: a write (any offset and length up to 12 KiB, so partial blocks merge), or a zeroing. */
export function randomOp(rng: Rng, size: number): ModelOp {
  const offset = rng.int(size - 1);
  const length = 1 + rng.int(Math.min(12 * 1024, size - offset));
  return rng.int(4) === 0 ? { kind: 'zero', offset, length } : { kind: 'write', offset, data: rng.bytes(length) };
}

/** Send `op` to `store`; a zeroing is a trim or a write-zeroes at random. */
export function issueOp(store: Pick<ReplicaStore, 'write' | 'trim' | 'writeZeroes'>, op: ModelOp, fua: boolean, rng: Rng): Promise<void> {
  if (op.kind === 'write') return store.write(op.offset, op.data, { fua });
  return rng.int(2) === 0 ? store.trim(op.offset, op.length, { fua }) : store.writeZeroes(op.offset, op.length, { fua });
}

export class SectorModel {
  /** The content with every issued mutation applied. */
  content: Uint8Array;
  /** Per sector: the mutations that touched it (−1: the initial content) and the value each left. */
  readonly #history: { op: number; value: Uint8Array }[][] = [];

  constructor(initial: Uint8Array) {
    this.content = new Uint8Array(initial);
    for (let s = 0; s * SECTOR < initial.length; s++) this.#history.push([{ op: -1, value: initial.slice(s * SECTOR, (s + 1) * SECTOR) }]);
  }

  /** Mutation number `op` was issued. */
  apply(op: number, m: ModelOp): void {
    const length = m.kind === 'write' ? m.data.length : m.length;
    if (m.kind === 'write') this.content.set(m.data, m.offset);
    else this.content.fill(0, m.offset, m.offset + length);
    for (let s = Math.floor(m.offset / SECTOR); s * SECTOR < m.offset + length; s++) {
      this.#history[s]!.push({ op, value: this.content.slice(s * SECTOR, (s + 1) * SECTOR) });
    }
  }

  /**
   * The first sector of `got` that holds a value it may not hold when the mutations in `kept` must survive, with
   * a description; undefined when every sector is allowed.
   */
  firstBad(got: Uint8Array, kept: ReadonlySet<number>): string | undefined {
    for (let s = 0; s < this.#history.length; s++) {
      const h = this.#history[s]!;
      let from = 0;
      for (let i = h.length - 1; i > 0; i--) {
        if (kept.has(h[i]!.op)) {
          from = i;
          break;
        }
      }
      const g = got.subarray(s * SECTOR, (s + 1) * SECTOR);
      if (!h.slice(from).some((e) => Buffer.compare(g, e.value) === 0)) {
        const zeros = g.every((b) => b === 0) ? ' (all zeros)' : '';
        return `sector ${s} (byte ${s * SECTOR})${zeros} is none of the values since mutation ${h[from]!.op}, the last one that must survive`;
      }
    }
    return undefined;
  }
}

/**
 * What a client may rely on, as mutations settle: `acked` (survive a process crash) and `durable` (acknowledged
 * before a flush that completed, or a FUA mutation: survive a power loss).
 */
export class AckTracker {
  readonly acked = new Set<number>();
  readonly durable = new Set<number>();

  ack(op: number, fua: boolean): void {
    this.acked.add(op);
    if (fua) this.durable.add(op);
  }

  /** Call when a flush is issued; call the returned function when it completed. */
  flushIssued(): () => void {
    const covered = [...this.acked];
    return () => {
      for (const op of covered) this.durable.add(op);
    };
  }

  snapshot(): { acked: Set<number>; durable: Set<number> } {
    return { acked: new Set(this.acked), durable: new Set(this.durable) };
  }
}
