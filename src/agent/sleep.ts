// Abortable waiting, shared by the agent's loops: `sleep` rejects with the signal's reason like
// timers/promises, `pause` resolves false instead (for loops that simply end when aborted).

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, ms));
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Waits `ms`; false when `signal` aborted first. */
export function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  return sleep(ms, signal).then(
    () => true,
    () => false,
  );
}

/**
 * A wake-up flag for a loop that sleeps between turns: `kick()` ends the current `wait` at once, or the next one
 * if the loop is busy. A kick is never lost; at worst the loop takes one extra (cheap) turn.
 */
export class Waker {
  #kicked = false;
  #wake: (() => void) | undefined;

  kick(): void {
    this.#kicked = true;
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /** Resolves on a kick, after `ms` (when given) or when `signal` aborts; never rejects. */
  wait(ms: number | undefined, signal: AbortSignal): Promise<void> {
    if (this.#kicked || signal.aborted) {
      this.#kicked = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      const timer = ms === undefined ? undefined : setTimeout(done, Math.max(0, ms));
      this.#wake = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
