// A bounded buffer of a child's last output lines: memory stays fixed however chatty the child is, and a partial
// line is held until its newline arrives (or the stream ends).

export class LineRing {
  readonly #max: number;
  readonly #lines: string[] = [];
  #partial = '';

  constructor(max = 1000) {
    this.#max = max;
  }

  /** Adds a chunk of text; calls `onLine` for each line it completes. */
  push(chunk: string, onLine?: (line: string) => void): void {
    const parts = (this.#partial + chunk).split('\n');
    this.#partial = parts.pop() ?? '';
    // A child printing megabytes without a newline must not grow the buffer either.
    if (this.#partial.length > 64 * 1024) {
      parts.push(this.#partial);
      this.#partial = '';
    }
    for (const line of parts) {
      this.#lines.push(line);
      if (this.#lines.length > this.#max) this.#lines.shift();
      onLine?.(line);
    }
  }

  /** Flushes a trailing line without newline (at exit). */
  end(onLine?: (line: string) => void): void {
    if (this.#partial !== '') this.push('\n', onLine);
  }

  /** The last `n` lines (all held when omitted). */
  tail(n?: number): string[] {
    return n === undefined ? [...this.#lines] : this.#lines.slice(Math.max(0, this.#lines.length - n));
  }

  /** The last non-empty line, for error messages. */
  last(): string | undefined {
    for (let i = this.#lines.length - 1; i >= 0; i--) if (this.#lines[i]!.trim() !== '') return this.#lines[i]!.trim();
    return undefined;
  }
}
