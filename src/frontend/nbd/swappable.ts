// A block device that can be replaced under live NBD connections: the engine swap of a live engine upgrade
// (docs/upgrade.md). Requests pass a gate and are counted in flight. `swap` closes the gate (new requests wait in
// memory; NBD has no "try later", so a client sees latency, never an error), waits until the in-flight requests
// of the current device completed, lets `change` turn the current device into the next one (flush and close the
// old, start the new), and opens the gate again: the waiting requests run on the new device, in arrival order.
// A `change` that throws leaves whatever device it last returned through `serve` (or the old one) in place.
// The write payload held while the gate is closed is bounded (`maxHeldBytes`, 64 MiB by default, over all
// connections): beyond it `admit` refuses, and the NBD connection leaves the request unstarted and pauses its
// socket (backpressure) until the gate opens, instead of buffering more.

import type { BlockDevice } from './device.js';

export const DEFAULT_MAX_HELD_BYTES = 64 * 1024 * 1024;

export class SwappableDevice implements BlockDevice {
  #dev: BlockDevice;
  #inflight = 0;
  #gate: Promise<void> | undefined;
  #drained: (() => void) | undefined;
  readonly #maxHeld: number;
  #held = 0;
  #peakHeld = 0;
  /** Connections told "not now" by `admit`, woken when the held bytes drop. */
  #waiters: (() => void)[] = [];

  constructor(device: BlockDevice, opts: { maxHeldBytes?: number } = {}) {
    this.#dev = device;
    this.#maxHeld = opts.maxHeldBytes ?? DEFAULT_MAX_HELD_BYTES;
  }

  /** Write payload waiting at the closed gate now, and the most there ever was. */
  get heldBytes(): { now: number; peak: number } {
    return { now: this.#held, peak: this.#peakHeld };
  }

  /**
   * Flow control (BlockDevice.admit): room while the gate is open, or while the held payload stays within the bound.
   * One write always fits when nothing is held, or a write larger than the bound could never pass.
   */
  admit(bytes: number, wake: () => void): boolean {
    if (!this.#gate || this.#held === 0 || this.#held + bytes <= this.#maxHeld) return true;
    this.#waiters.push(wake);
    return false;
  }

  get size(): number {
    return this.#dev.size;
  }

  get readOnly(): boolean {
    return this.#dev.readOnly ?? false;
  }

  get multiConn(): boolean {
    return this.#dev.multiConn ?? false;
  }

  /** The device requests go to now. */
  get current(): BlockDevice {
    return this.#dev;
  }

  /** Whether a swap holds requests right now. */
  get holding(): boolean {
    return this.#gate !== undefined;
  }

  async #run<T>(fn: (d: BlockDevice) => Promise<T>): Promise<T> {
    while (this.#gate) await this.#gate;
    this.#inflight++;
    try {
      return await fn(this.#dev);
    } finally {
      if (--this.#inflight === 0) this.#drained?.();
    }
  }

  read(offset: number, length: number, opts: { signal?: AbortSignal }): Promise<Uint8Array> {
    return this.#run((d) => d.read(offset, length, opts));
  }

  write(offset: number, data: Uint8Array, opts: { fua: boolean; signal?: AbortSignal }): Promise<void> {
    if (!this.#gate) return this.#run((d) => d.write(offset, data, opts));
    // Counted from now (synchronously, so that the next `admit` sees it) until it passes the gate.
    this.#held += data.length;
    this.#peakHeld = Math.max(this.#peakHeld, this.#held);
    let counted = true;
    const release = () => {
      if (!counted) return;
      counted = false;
      this.#held -= data.length;
      this.#wakeWaiters();
    };
    return this.#run((d) => {
      release();
      return d.write(offset, data, opts);
    }).finally(release);
  }

  #wakeWaiters(): void {
    if (this.#gate && this.#held >= this.#maxHeld) return;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  flush(opts: { signal?: AbortSignal }): Promise<void> {
    return this.#run((d) => d.flush(opts));
  }

  trim(offset: number, length: number, opts: { fua: boolean; signal?: AbortSignal }): Promise<void> {
    return this.#run((d) => d.trim(offset, length, opts));
  }

  writeZeroes(offset: number, length: number, opts: { fua: boolean; noHole: boolean; signal?: AbortSignal }): Promise<void> {
    return this.#run((d) => d.writeZeroes(offset, length, opts));
  }

  /**
   * Holds new requests, waits for the in-flight ones, then runs `change(current, serve)`; `serve(d)` makes `d` the
   * device (call it with the new device, or with a restarted old one when the new one failed). The size must not
   * change. Resolves or rejects as `change` does; the gate opens either way.
   */
  async swap(change: (current: BlockDevice, serve: (d: BlockDevice) => void) => Promise<void>): Promise<void> {
    if (this.#gate) throw new Error('a swap is already in progress');
    let open!: () => void;
    this.#gate = new Promise<void>((r) => (open = r));
    try {
      if (this.#inflight > 0) await new Promise<void>((r) => (this.#drained = r));
      this.#drained = undefined;
      await change(this.#dev, (d) => {
        if (d.size !== this.#dev.size) throw new Error(`a swapped device must keep the size ${this.#dev.size}, not ${d.size}`);
        this.#dev = d;
      });
    } finally {
      this.#gate = undefined;
      open();
      this.#wakeWaiters();
    }
  }
}
