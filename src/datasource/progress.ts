// Progress of one transfer in absolute terms: bytes done, percent when the size is known, rate over a sliding
// window, and ETA. Time comes from an injected `now()` so tests drive it. Bytes that were already on disk when
// the process started (a resumed transfer) count towards done but not towards the rate.

export interface ProgressSnapshot {
  processedSize: number;
  size: number | undefined;
  /** 0–100, floored; 99 at most until `complete()`, since verification still follows the last byte. */
  progress: number;
  /** Bytes per second over the window; 0 until two samples are at least `minSpanMs` apart. */
  rate: number;
  /** Seconds left at the current rate; undefined without a size or a rate. */
  etaSeconds: number | undefined;
}

export interface ProgressOptions {
  now?: () => number;
  /** The rate is measured over samples at most this old. */
  windowMs?: number;
  /** A rate over a shorter span is too noisy to report. */
  minSpanMs?: number;
}

interface Sample {
  t: number;
  bytes: number;
}

export class ProgressMeter {
  readonly #now: () => number;
  readonly #windowMs: number;
  readonly #minSpanMs: number;
  #samples: Sample[] = [];
  #processed = 0;
  #size: number | undefined;
  #complete = false;

  constructor(opts: ProgressOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#windowMs = opts.windowMs ?? 10_000;
    this.#minSpanMs = opts.minSpanMs ?? 500;
  }

  get processedSize(): number {
    return this.#processed;
  }

  get size(): number | undefined {
    return this.#size;
  }

  setSize(size: number | undefined): void {
    this.#size = size;
  }

  /** Starts (or restarts) counting at `bytes` without a rate: a resume point or a restart from 0. */
  reset(bytes: number): void {
    this.#processed = bytes;
    this.#complete = false;
    this.#samples = [{ t: this.#now(), bytes }];
  }

  /** Records that `bytes` are done in total. A value below the last one is a restart: the window starts over. */
  update(bytes: number): void {
    if (bytes < this.#processed) {
      this.reset(bytes);
      return;
    }
    this.#processed = bytes;
    const t = this.#now();
    const last = this.#samples[this.#samples.length - 1];
    // One sample per 100 ms is plenty for a 10 s window and keeps the array small at any chunk rate.
    if (last !== undefined && t - last.t < 100 && this.#samples.length > 1) last.bytes = bytes;
    else this.#samples.push({ t, bytes });
    this.#trim(t);
  }

  complete(): void {
    this.#complete = true;
    if (this.#size === undefined) this.#size = this.#processed;
  }

  snapshot(): ProgressSnapshot {
    const t = this.#now();
    this.#trim(t);
    const rate = this.#rate(t);
    const size = this.#size;
    let progress = 0;
    if (this.#complete) progress = 100;
    else if (size !== undefined && size > 0) progress = Math.min(99, Math.floor((this.#processed / size) * 100));
    let etaSeconds: number | undefined;
    if (this.#complete) etaSeconds = 0;
    else if (size !== undefined && rate > 0) etaSeconds = Math.max(0, Math.ceil((size - this.#processed) / rate));
    return { processedSize: this.#processed, size, progress, rate: this.#complete ? 0 : Math.round(rate), etaSeconds };
  }

  #rate(t: number): number {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (first === undefined || last === undefined) return 0;
    // A transfer that stopped moving has rate 0, even though the window still holds its last burst.
    const span = t - first.t;
    if (span < this.#minSpanMs || last.bytes === first.bytes || t - last.t >= this.#windowMs) return 0;
    return ((last.bytes - first.bytes) * 1000) / span;
  }

  #trim(t: number): void {
    // Keep the newest sample older than the window as the baseline, so the window is always fully covered.
    while (this.#samples.length > 2 && (this.#samples[1]?.t ?? t) <= t - this.#windowMs) this.#samples.shift();
  }
}
