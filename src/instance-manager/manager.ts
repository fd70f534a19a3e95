// The instance table of one node: creates instances (idempotently), stops and forgets them, and tells
// subscribers about every change. It owns the children: close() stops them all before the manager exits.

import { readdir, rm } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { ImError } from './errors.js';
import { InstanceProcess, type Instance } from './instance.js';
import { childArgs, sameSpec, type CreateRequest } from './spec.js';

export type WatchEvent = { type: 'SNAPSHOT'; instances: Instance[] } | { type: 'ADDED' | 'MODIFIED' | 'DELETED'; instance: Instance };

export interface ManagerOptions {
  /** The address children listen on (port 0 each). */
  host: string;
  /** How to run the CLI: [process.execPath, <repo>/dist/src/cli/main.js]. */
  command: readonly string[];
  /** A child that printed no ready line within this is killed and marked error (default 60 s). */
  readyTimeoutMs?: number;
  /** SIGTERM → SIGKILL grace on stop (default 10 s). */
  stopGraceMs?: number;
  /** Lines of each child's stderr kept for GET …/log (default 1000). */
  logLines?: number;
  /** Where the children's stderr lines go, prefixed by the instance name (default: this process's stderr). */
  log?: (line: string) => void;
}

export class InstanceManager {
  readonly #opts: ManagerOptions;
  readonly #instances = new Map<string, InstanceProcess>();
  readonly #listeners = new Set<(ev: WatchEvent) => void>();
  #closing = false;

  constructor(opts: ManagerOptions) {
    this.#opts = opts;
  }

  list(): Instance[] {
    return [...this.#instances.values()].map((p) => p.info()).sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): Instance {
    return this.#find(name).info();
  }

  logTail(name: string, lines?: number): string[] {
    return this.#find(name).log.tail(lines);
  }

  /** Starts the instance; `created` is false when the same spec already runs (or starts) under that name. */
  create(req: CreateRequest): { created: boolean; instance: Instance } {
    if (this.#closing) throw new ImError('Closing', `Cannot create instance "${req.name}": the instance manager is shutting down`);
    const existing = this.#instances.get(req.name);
    if (existing) {
      if (!sameSpec(existing.spec, req.spec)) throw new ImError('Conflict', `Cannot create instance "${req.name}": one of that name exists with another spec`);
      if (existing.state !== 'starting' && existing.state !== 'running') {
        throw new ImError('Conflict', `Cannot create instance "${req.name}": it exists in state ${existing.state}; DELETE it first`);
      }
      return { created: false, instance: existing.info() };
    }
    const log = this.#opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
    let announced = false;
    const p: InstanceProcess = new InstanceProcess(req.name, req.spec, {
      command: this.#opts.command,
      args: childArgs(req.name, req.spec, this.#opts.host),
      readyTimeoutMs: this.#opts.readyTimeoutMs ?? 60_000,
      stopGraceMs: this.#opts.stopGraceMs ?? 10_000,
      logLines: this.#opts.logLines ?? 1000,
      onLog: (line) => log(`[${req.name}] ${line}`),
      // A change before the ADDED event (a spawn failure reported synchronously) is folded into it.
      onChange: () => {
        if (announced) this.#emit({ type: 'MODIFIED', instance: p.info() });
      },
    });
    this.#instances.set(req.name, p);
    announced = true;
    const instance = p.info();
    this.#emit({ type: 'ADDED', instance });
    return { created: true, instance };
  }

  /** Stops the instance (SIGTERM, SIGKILL after the grace), removes a replica's dir when asked, forgets it. */
  async delete(name: string, { cleanup = false }: { cleanup?: boolean } = {}): Promise<Instance> {
    const p = this.#find(name);
    await p.stop();
    if (cleanup && p.spec.type === 'replica') {
      const dir = p.spec.replica.dir;
      // The spec check made it absolute and normalised; this is the last line of defence before rm -rf.
      if (!dir.startsWith('/') || dir === '/' || dir.split('/').includes('..')) {
        throw new ImError('InvalidArgument', `Refusing to remove ${JSON.stringify(dir)}: not an absolute directory below /`);
      }
      try {
        await rm(dir, { recursive: true, force: true });
      } catch (err) {
        throw new ImError('Internal', `Cannot remove the directory ${dir} of replica "${name}": ${(err as Error).message}`, { cause: err });
      }
    }
    const final = p.info();
    if (this.#instances.get(name) === p) {
      this.#instances.delete(name);
      this.#emit({ type: 'DELETED', instance: final });
    }
    return final;
  }

  /**
   * Removes the data directory of a replica that no longer runs (a detached volume's replica being deleted). Only
   * `<disk>/replicas/<dir>` holding a replica (its replica.json) or nothing is removed, and never one an instance
   * of this manager still uses. `dir` was checked by `checkPath`. Returns whether something was removed.
   */
  async removeReplicaData(dir: string): Promise<boolean> {
    if (basename(dirname(dir)) !== 'replicas') throw new ImError('InvalidArgument', `Refusing to remove ${dir}: not a directory under a disk's replicas/`);
    const user = [...this.#instances.values()].find((p) => p.spec.type === 'replica' && p.spec.replica.dir === dir && p.info().state !== 'stopped' && p.info().state !== 'error');
    if (user) throw new ImError('Conflict', `Refusing to remove ${dir}: replica "${user.name}" is ${user.info().state} on it`);
    let entries: string[];
    try {
      entries = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw new ImError('Internal', `Cannot read ${dir}: ${(err as Error).message}`, { cause: err });
    }
    if (entries.length > 0 && !entries.includes('replica.json')) throw new ImError('InvalidArgument', `Refusing to remove ${dir}: it holds no replica (no replica.json)`);
    await rm(dir, { recursive: true, force: true });
    return true;
  }

  /** First a SNAPSHOT of every instance, then each change. Returns the unsubscribe function. */
  subscribe(listener: (ev: WatchEvent) => void): () => void {
    listener({ type: 'SNAPSHOT', instances: this.list() });
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Refuses new instances and stops every child gracefully; they stay listed as stopped. */
  async close(): Promise<void> {
    this.#closing = true;
    // Engines first, so their last flushes still find the replicas up (a signal to the whole pod group cannot
    // keep this order, but a stop of the manager alone can).
    const all = [...this.#instances.values()];
    await Promise.all(all.filter((p) => p.spec.type === 'engine').map((p) => p.stop()));
    await Promise.all(all.map((p) => p.stop()));
  }

  #find(name: string): InstanceProcess {
    const p = this.#instances.get(name);
    if (!p) throw new ImError('NotFound', `No instance "${name}" on this instance manager`);
    return p;
  }

  #emit(ev: WatchEvent): void {
    for (const l of this.#listeners) l(ev);
  }
}
