// A bounded single-consumer async queue: producers push synchronously, one consumer iterates with for-await.
// Used to hand committed changes to live watchers without letting a slow watcher grow memory without bound.

export class EventQueue<T> implements AsyncIterable<T> {
  readonly #limit: number;
  #items: T[] = [];
  #head = 0;
  #ended = false;
  #error: unknown = undefined;
  #wake: (() => void) | undefined;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Returns false (and keeps nothing) when the queue is full. */
  push(item: T): boolean {
    if (this.#ended) return true;
    if (this.#items.length - this.#head >= this.#limit) return false;
    this.#items.push(item);
    this.#notify();
    return true;
  }

  end(): void {
    this.#ended = true;
    this.#notify();
  }

  fail(err: unknown): void {
    this.#error = err;
    this.end();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      while (this.#head < this.#items.length) {
        const item = this.#items[this.#head] as T;
        this.#items[this.#head] = undefined as T;
        this.#head++;
        if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
          this.#items = this.#items.slice(this.#head);
          this.#head = 0;
        }
        yield item;
      }
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) return;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }
}
