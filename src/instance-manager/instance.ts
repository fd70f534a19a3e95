// One hosted instance: a replica or an engine running inside the instance manager's process (replica-instance.ts,
// engine-instance.ts), and its state. Nothing is restarted here: the controllers see an error and decide.
//
//   starting ──opened/serving──► running ──stop()──► stopping ──closed──► stopped
//      │                            │
//      └──open failed / timeout─────┴──fault (disk error, exception)──────► error
//
// A failure inside one instance (a thrown error, a failing disk, a peer that hangs) ends in that instance's
// `error` state with a message; it never escapes to the process, so every other instance keeps serving.

import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { NbdServer } from '../frontend/nbd/index.js';
import type { SharedBackingReaders } from '../replica/shared-backing.js';
import { isNoSpace } from '../util/disk.js';
import { describeHolder, FileLock } from '../util/file-lock.js';
import { ImError } from './errors.js';
import { LineRing } from './line-ring.js';
import type { ReplicaHub } from './replica-hub.js';
import type { DataRoots } from './data-roots.js';
import type { InstanceSpec } from './spec.js';

export type InstanceState = 'starting' | 'running' | 'stopping' | 'stopped' | 'error';

/** What the API shows of an instance. */
export interface Instance {
  name: string;
  type: InstanceSpec['type'];
  state: InstanceState;
  /** The process hosting it (the instance manager's): a kill of this pid ends every instance of the node. */
  pid: number;
  /** Replica: where it serves ("host:port" of the node's replica listener; OPEN names the replica). */
  address?: string;
  /** Engine: the NBD URI, the control API ("host:port" of the instance manager's API), the block device path. */
  nbd?: string;
  control?: string;
  device?: string;
  /** Engine: the engine image it runs (after a live swap, the new one). */
  image?: string;
  errorMsg?: string;
  startedAt: string;
  /**
   * This incarnation: a new one for each create. Its state only moves forward (starting, running, stopping, stopped
   * or error), so a status that recorded a later state of the same uid knows an earlier report is stale.
   */
  uid: string;
  spec: InstanceSpec;
}

/** What every instance of one instance manager shares. */
export interface HostContext {
  hub: ReplicaHub;
  nbd: NbdServer;
  /** "host:port" of the instance manager's API (engines' control API lives under it). */
  apiAddress: string;
  backingReaders: SharedBackingReaders;
  /** Where instance-name locks live: one per node, shared by every instance manager of the node. */
  lockDir: string;
  /** Replica directories are inside one of these (checked again, symlinks resolved, before anything is removed). */
  dataRoots: DataRoots;
  /** Who holds locks, in words ("instance manager im-x on node-1"). */
  holder: string;
  /** A start that takes longer is abandoned and the instance is `error`. */
  startTimeoutMs: number;
  stopTimeoutMs: number;
  /** Per-request timeout towards replicas. */
  replicaTimeoutMs: number;
  log: (line: string) => void;
}

export abstract class HostedInstance {
  readonly name: string;
  readonly spec: InstanceSpec;
  readonly log: LineRing;
  protected readonly ctx: HostContext;
  readonly #startedAt = new Date().toISOString();
  readonly #uid = randomUUID();
  readonly #onChange: () => void;
  readonly #abort = new AbortController();
  #state: InstanceState = 'starting';
  #errorMsg: string | undefined;
  #nameLock: FileLock | undefined;
  #started: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #closed: Promise<void> | undefined;

  constructor(name: string, spec: InstanceSpec, ctx: HostContext, onChange: () => void) {
    this.name = name;
    this.spec = spec;
    this.ctx = ctx;
    this.log = new LineRing(1000);
    this.#onChange = onChange;
  }

  get state(): InstanceState {
    return this.#state;
  }

  /** Opens or serves the instance; never rejects (a failure is the `error` state). */
  start(): Promise<void> {
    this.#started ??= this.#start();
    return this.#started;
  }

  async #start(): Promise<void> {
    const deadline = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.ctx.startTimeoutMs)]);
    try {
      const lock = await FileLock.tryAcquire(join(this.ctx.lockDir, `${this.name}.lock`), `${this.ctx.holder}, ${this.spec.type} ${this.name}`);
      if (!(lock instanceof FileLock)) {
        throw new ImError('Conflict', `Cannot start ${this.spec.type} "${this.name}": an instance of that name runs on this node already, in ${describeHolder(lock.heldBy)}`);
      }
      this.#nameLock = lock;
      await this.open(deadline);
      if (this.#abort.signal.aborted) return;
      this.#set('running');
    } catch (err) {
      if (this.#abort.signal.aborted) return; // stopped while starting: stop() reports it
      const why = deadline.aborted ? `did not start within ${this.ctx.startTimeoutMs / 1000} s` : messageOf(err);
      // Opening writes (the block map's checkpoint): a full disk keeps even a replica whose data is whole from starting.
      const full = isNoSpace(err) && this.spec.type === 'replica'
        ? `; the disk holding ${this.spec.replica.dir} is full: free space on it (delete or move a volume off it), and the replica is taken back`
        : '';
      this.fail(`${this.spec.type} ${this.name} could not start: ${why}${full}`);
    }
  }

  /** Opens the replica or starts the engine. Called once. */
  protected abstract open(signal: AbortSignal): Promise<void>;
  /** Closes what open() made (whatever part of it exists). Must not throw. */
  protected abstract close(reason: Error, signal: AbortSignal): Promise<void>;
  /** Fields of the API view that only the kind knows (address, nbd, device). */
  protected abstract endpoints(): Pick<Instance, 'address' | 'nbd' | 'control' | 'device' | 'image'>;

  info(): Instance {
    return {
      name: this.name,
      type: this.spec.type,
      state: this.#state,
      pid: process.pid,
      ...(this.#state === 'running' ? this.endpoints() : {}),
      ...(this.#errorMsg === undefined ? {} : { errorMsg: this.#errorMsg }),
      startedAt: this.#startedAt,
      uid: this.#uid,
      spec: this.spec,
    };
  }

  /** Stops the instance (gracefully, bounded by the stop timeout); resolves once it is closed. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      const wasFailed = this.#state === 'error';
      if (!wasFailed) this.#set('stopping');
      this.#abort.abort(new ImError('Closing', `${this.spec.type} ${this.name} is stopping`));
      await this.#started;
      await this.#closeOnce(new ImError('Closing', `${this.spec.type} ${this.name} stopped`));
      if (!wasFailed && this.#state !== 'error') this.#set('stopped');
    })();
    return this.#stopping;
  }

  /** Something inside the instance failed: it goes `error` with `message`, and what it served is closed. */
  protected fail(message: string): void {
    if (this.#state === 'error' || this.#state === 'stopped') return;
    this.#errorMsg = message;
    this.say(message);
    this.#set('error');
    this.#abort.abort(new ImError('Internal', message));
    // Only once start() settled: closing under a running open() would race it.
    void (this.#started ?? Promise.resolve()).then(() => this.#closeOnce(new ImError('Internal', message)));
  }

  /** close() once, then the name lock: the name is free for another instance manager only after everything closed. */
  #closeOnce(reason: Error): Promise<void> {
    this.#closed ??= (async () => {
      try {
        await this.close(reason, AbortSignal.timeout(this.ctx.stopTimeoutMs));
      } catch (err) {
        this.say(`closing: ${messageOf(err)}`);
      }
      await this.#nameLock?.release();
    })();
    return this.#closed;
  }

  /** A line of this instance's log (GET …/log) and of the instance manager's stderr. */
  protected say(line: string): void {
    this.log.push(`${line}\n`, (l) => this.ctx.log(`[${this.name}] ${l}`));
  }

  /** Something shown in info() changed without a state change (watchers are told). */
  protected changed(): void {
    this.#onChange();
  }

  #set(state: InstanceState): void {
    this.#state = state;
    this.#onChange();
  }
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
