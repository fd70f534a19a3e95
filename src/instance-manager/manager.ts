// The instance table of one node: creates instances (idempotently), stops and forgets them, and tells
// subscribers about every change. It owns the instances: close() stops them all before the manager exits.

import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LOCK_FILE } from '../replica/store.js';
import { describeHolder, FileLock } from '../util/file-lock.js';
import { EngineInstance } from './engine-instance.js';
import { ImError } from './errors.js';
import type { HostContext, HostedInstance, Instance } from './instance.js';
import { ReplicaInstance } from './replica-instance.js';
import { checkOnDisk, sameSpec, type CreateRequest } from './spec.js';

export type WatchEvent = { type: 'SNAPSHOT'; instances: Instance[] } | { type: 'ADDED' | 'MODIFIED' | 'DELETED'; instance: Instance };

export class InstanceManager {
  readonly #ctx: HostContext;
  readonly #instances = new Map<string, HostedInstance>();
  readonly #listeners = new Set<(ev: WatchEvent) => void>();
  #closing = false;

  constructor(ctx: HostContext) {
    this.#ctx = ctx;
  }

  list(): Instance[] {
    return [...this.#instances.values()].map((p) => p.info()).sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): Instance {
    return this.#find(name).info();
  }

  /** The running engine `name` (its control surface), or a NotFound / Conflict error saying why not. */
  engine(name: string): EngineInstance {
    const p = this.#find(name);
    if (!(p instanceof EngineInstance)) throw new ImError('NotFound', `Instance "${name}" is not an engine`);
    return p;
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
    if (req.spec.type === 'engine') {
      const volume = req.spec.engine.volume;
      const other = [...this.#instances.values()].find((i) => i.spec.type === 'engine' && i.spec.engine.volume === volume);
      if (other) throw new ImError('Conflict', `Cannot create engine "${req.name}": engine "${other.name}" serves volume ${volume} here already`);
    }
    let announced = false;
    const onChange = () => {
      if (announced) this.#emit({ type: 'MODIFIED', instance: p.info() });
    };
    const p: HostedInstance = req.spec.type === 'replica' ? new ReplicaInstance(req.name, req.spec, this.#ctx, onChange) : new EngineInstance(req.name, req.spec, this.#ctx, onChange);
    this.#instances.set(req.name, p);
    announced = true;
    const instance = p.info();
    this.#emit({ type: 'ADDED', instance });
    void p.start();
    return { created: true, instance };
  }

  /** Stops the instance (gracefully, within the stop timeout), removes a replica's dir when asked, forgets it. */
  async delete(name: string, { cleanup = false }: { cleanup?: boolean } = {}): Promise<Instance> {
    const p = this.#find(name);
    await p.stop();
    if (cleanup && p.spec.type === 'replica') {
      const dir = p.spec.replica.dir;
      await this.removeReplicaData(dir);
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
    // The spec check made it absolute, normalised and inside a data root; this is the last line of defence.
    if (!dir.startsWith('/') || dir.split('/').includes('..')) throw new ImError('InvalidArgument', `Refusing to remove ${dir}: not a normalised absolute path`);
    await checkOnDisk({ type: 'replica', replica: { dir, size: 1 } }, this.#ctx.dataRoots.list);
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
    // Open anywhere (another instance manager of this node, whatever its image)? Its lock says so.
    const lock = entries.includes(LOCK_FILE) ? await FileLock.tryAcquire(join(dir, LOCK_FILE), `${this.#ctx.holder}, removing ${dir}`) : undefined;
    if (lock && !(lock instanceof FileLock)) throw new ImError('Conflict', `Refusing to remove ${dir}: the replica is open by ${describeHolder(lock.heldBy)}`);
    try {
      await rm(dir, { recursive: true, force: true });
    } catch (err) {
      throw new ImError('Internal', `Cannot remove the replica directory ${dir}: ${(err as Error).message}`, { cause: err });
    } finally {
      await lock?.release();
    }
    return true;
  }

  /** First a SNAPSHOT of every instance, then each change. Returns the unsubscribe function. */
  subscribe(listener: (ev: WatchEvent) => void): () => void {
    listener({ type: 'SNAPSHOT', instances: this.list() });
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Refuses new instances and stops every instance gracefully; they stay listed as stopped. */
  async close(): Promise<void> {
    this.#closing = true;
    // Engines first, so their last flushes still find the replicas up.
    const all = [...this.#instances.values()];
    await Promise.all(all.filter((p) => p.spec.type === 'engine').map((p) => p.stop()));
    await Promise.all(all.map((p) => p.stop()));
  }

  #find(name: string): HostedInstance {
    const p = this.#instances.get(name);
    if (!p) throw new ImError('NotFound', `No instance "${name}" on this instance manager`);
    return p;
  }

  #emit(ev: WatchEvent): void {
    for (const l of this.#listeners) l(ev);
  }
}
