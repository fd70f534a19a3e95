// What `stratum up` does when one of its processes (a manager or a node agent) exits while the cluster is meant to
// be running: it starts it again, as systemd's Restart=always or a kubelet would, after a backoff that doubles from
// 1 s to 30 s while it keeps failing and starts over once it ran a minute. Pods outlive their agent and a restarted
// agent adopts them; a restarted manager reads its state from its store. `--no-supervise` turns this off (tests
// that simulate a node or manager outage kill these processes on purpose).

export interface SupervisorOptions {
  enabled: boolean;
  log: (line: string) => void;
  firstDelayMs?: number;
  maxDelayMs?: number;
  /** A process that ran this long before it exited was healthy: its next restart waits the first delay again. */
  healthyMs?: number;
}

export class Supervisor {
  readonly #o: Required<SupervisorOptions>;
  readonly #failures = new Map<string, number>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #stopped = false;

  constructor(o: SupervisorOptions) {
    this.#o = { firstDelayMs: 1000, maxDelayMs: 30_000, healthyMs: 60_000, ...o };
  }

  /**
   * `name` (started at `startedAt`, logging to `log`) exited on its own with `how` (`code 1`, `SIGKILL`): says so,
   * and unless supervision is off or stopped, calls `restart` after the backoff.
   */
  exited(name: string, how: string, log: string, startedAt: number, restart: () => void): void {
    if (!this.#o.enabled || this.#stopped) {
      this.#o.log(`stratum up: ${name} exited (${how}); see ${log}`);
      return;
    }
    const failures = Date.now() - startedAt >= this.#o.healthyMs ? 0 : (this.#failures.get(name) ?? 0);
    this.#failures.set(name, failures + 1);
    const delay = Math.min(this.#o.firstDelayMs * 2 ** failures, this.#o.maxDelayMs);
    this.#o.log(`stratum up: ${name} exited (${how}); restarting it in ${delay / 1000} s${failures > 0 ? ` (restart ${failures + 1} in a row)` : ''}; see ${log}`);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#stopped) return;
      try {
        restart();
      } catch (err) {
        this.#o.log(`stratum up: could not restart ${name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }, delay);
    this.#timers.add(timer);
  }

  /** No more restarts (shutting down). */
  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }
}
