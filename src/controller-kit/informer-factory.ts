// Shares one informer per kind between all controllers of a process, so N controllers interested in Replicas
// cost one list+watch and one cache, not N.

import type { KubeObject } from '../api/meta.js';
import type { Store } from '../store/types.js';
import { realClock, type Clock } from './clock.js';
import { Informer } from './informer.js';
import { consoleLogger, type Logger } from './log.js';

export interface InformerFactoryOptions {
  store: Store;
  /** Only this namespace for every informer; default all. */
  namespace?: string;
  clock?: Clock;
  logger?: Logger;
}

export class InformerFactory {
  readonly #opts: InformerFactoryOptions;
  readonly #informers = new Map<string, Informer>();
  readonly #runs: Promise<void>[] = [];
  #signal: AbortSignal | undefined;

  constructor(opts: InformerFactoryOptions) {
    this.#opts = opts;
  }

  /**
   * The informer for `kind`, created on first use. Once the factory is started, a new informer starts at once.
   * Every caller for one kind gets the same instance, so they must agree on `T`.
   */
  informerFor<T extends KubeObject = KubeObject>(kind: string): Informer<T> {
    let informer = this.#informers.get(kind);
    if (informer === undefined) {
      informer = new Informer({
        store: this.#opts.store,
        kind,
        clock: this.#opts.clock ?? realClock,
        logger: this.#opts.logger ?? consoleLogger,
        ...(this.#opts.namespace ? { namespace: this.#opts.namespace } : {}),
      });
      this.#informers.set(kind, informer);
      if (this.#signal !== undefined && !this.#signal.aborted) this.#start(informer, this.#signal);
    }
    return informer as unknown as Informer<T>;
  }

  /** Kinds with an informer. */
  kinds(): string[] {
    return [...this.#informers.keys()];
  }

  /**
   * Run every informer (including ones requested later) until `signal` aborts; resolves after all of them
   * stopped. Call once.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#signal !== undefined) throw new Error('Cannot run the informer factory: it was started already');
    this.#signal = signal;
    for (const informer of this.#informers.values()) this.#start(informer, signal);
    if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    // Informers requested while we waited pushed their runs too; all of them end on the same signal.
    await Promise.all(this.#runs);
  }

  /** Resolve once every informer created so far has synced; rejects with `signal.reason` when aborted first. */
  async waitForSync(signal?: AbortSignal): Promise<void> {
    await Promise.all([...this.#informers.values()].map((i) => i.waitForSync(signal)));
  }

  #start(informer: Informer, signal: AbortSignal): void {
    // run() only rejects when misused (started twice); surface that in the logs rather than as an unhandled
    // rejection that would kill the process.
    this.#runs.push(
      informer.run(signal).catch((err: unknown) => {
        (this.#opts.logger ?? consoleLogger).error(`Informer for ${informer.kind} failed`, { error: String(err) });
      }),
    );
  }
}
