// Progress of long transfers on stderr: a bar with bytes, rate and ETA on a terminal (cli-progress), one plain
// line every few seconds otherwise (logs, CI), so output stays readable either way.

import cliProgress from 'cli-progress';
import { humanBytes } from '../util/bytes.js';

export class Progress {
  readonly #label: string;
  readonly #total: number;
  readonly #start: number;
  readonly #began = Date.now();
  readonly #bar: cliProgress.SingleBar | undefined;
  #value: number;
  #lastLine = 0;

  constructor(label: string, total: number, start = 0) {
    this.#label = label;
    this.#total = total;
    this.#start = start;
    this.#value = start;
    if (process.stderr.isTTY) {
      this.#bar = new cliProgress.SingleBar(
        {
          format: `${label} [{bar}] {percentage}% | {done} / {all} | {speed}/s | ETA {eta_formatted}`,
          stream: process.stderr,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      this.#bar.start(total, start, this.#payload());
    }
  }

  #rate(): number {
    const secs = (Date.now() - this.#began) / 1000;
    return secs > 0 ? (this.#value - this.#start) / secs : 0;
  }

  #payload() {
    return { done: humanBytes(this.#value), all: humanBytes(this.#total), speed: humanBytes(this.#rate()) };
  }

  add(n: number): void {
    this.set(this.#value + n);
  }

  set(v: number): void {
    this.#value = v;
    if (this.#bar) {
      this.#bar.update(Math.min(v, this.#total), this.#payload());
      return;
    }
    if (Date.now() - this.#lastLine < 2000) return;
    this.#lastLine = Date.now();
    this.#line();
  }

  #line(): void {
    const rate = this.#rate();
    const left = this.#total - this.#value;
    const eta = rate > 0 ? `${Math.ceil(left / rate)}s` : '?';
    const pct = this.#total > 0 ? Math.floor((100 * this.#value) / this.#total) : 100;
    process.stderr.write(`${this.#label} ${humanBytes(this.#value)} / ${humanBytes(this.#total)} (${pct}%), ${humanBytes(rate)}/s, ETA ${eta}\n`);
  }

  done(): void {
    if (this.#bar) this.#bar.stop();
    else this.#line();
  }
}
