// An engine hosted in the instance manager: the volume's Engine over its replicas (in-process for replicas on this
// node, the node replica listeners of other nodes for the rest), exported on the instance manager's one NBD
// listener under the volume's name, optionally as a block device (nbdfuse + loop), with its control API served by
// the instance manager under /v1/engines/{name}. The export serves a SwappableDevice over the engine, so that a
// live engine upgrade (swapEngine) replaces the engine under open NBD connections (docs/upgrade.md).

import { Engine } from '../engine/engine.js';
import { EngineControl } from '../engine/control.js';
import { unreachable } from '../engine/run.js';
import { NbdLoopDevice } from '../frontend/blockdev/index.js';
import { SwappableDevice } from '../frontend/nbd/index.js';
import { ImError } from './errors.js';
import { HostedInstance, messageOf } from './instance.js';
import type { EngineSpec } from './spec.js';

export class EngineInstance extends HostedInstance {
  #engine: Engine | undefined;
  #control: EngineControl | undefined;
  #exported = false;
  #device: NbdLoopDevice | undefined;
  #front: SwappableDevice | undefined;
  /** The engine image it runs (issue 12): the spec's, then the one of the last swap. */
  #image: string | undefined;

  get #spec(): EngineSpec {
    if (this.spec.type !== 'engine') throw new Error('not an engine');
    return this.spec.engine;
  }

  /** The control surface (status, watch, replicas) while running. */
  get control(): EngineControl | undefined {
    return this.state === 'running' ? this.#control : undefined;
  }

  /** Starts an engine over `replicas` (unreachable ones join as ERR) and its control surface. */
  async #startEngine(replicas: readonly { name: string; address: string }[], signal: AbortSignal): Promise<{ engine: Engine; control: EngineControl }> {
    const e = this.#spec;
    const log = (line: string) => this.say(line);
    const timeoutMs = this.ctx.replicaTimeoutMs;
    const connect = (name: string, address: string) => this.ctx.hub.connect(name, address, { timeoutMs, signal });
    const backends = await Promise.all(
      replicas.map(async (r) => {
        try {
          return { name: r.name, backend: await connect(r.name, r.address) };
        } catch (err) {
          if (signal.aborted) throw err;
          log(`replica ${r.name} at ${r.address} unreachable: ${messageOf(err)}`);
          return { name: r.name, backend: unreachable(r.address, err) };
        }
      }),
    );
    const hooks: { notify?: () => void } = {};
    const engine = await Engine.start({ volume: e.volume, size: e.size, replicas: backends, onChange: () => hooks.notify?.(), log, signal });
    // The NBD export stays (controllers and tests read through it); a frontend for users must not see data change.
    const revertRefused = () => (e.frontend !== 'none' ? `it is attached with frontend ${e.frontend}; detach it and attach it without a frontend (disableFrontend)` : undefined);
    const control = new EngineControl(engine, { requestTimeoutMs: timeoutMs, connectReplica: (n, a) => this.ctx.hub.connect(n, a, { timeoutMs }), revertRefused, log });
    hooks.notify = () => control.changed();
    return { engine, control };
  }

  protected async open(signal: AbortSignal): Promise<void> {
    const e = this.#spec;
    const log = (line: string) => this.say(line);
    const { engine, control } = await this.#startEngine(e.replicas, signal);
    this.#engine = engine;
    this.#control = control;
    this.#image = e.image;
    this.#front = new SwappableDevice(engine);
    this.ctx.nbd.addExport(e.volume, this.#front, { description: `Stratum volume ${e.volume}` });
    this.#exported = true;
    if (e.frontend === 'blockdev') {
      this.#device = await NbdLoopDevice.create({ volume: e.volume, nbdUri: this.ctx.nbd.uri(e.volume), deviceDir: e.deviceDir ?? '/dev/longhorn', size: e.size, log, signal });
    }
    const s = engine.status();
    this.say(`serving ${this.ctx.nbd.uri(e.volume)} (${s.size} B, ${s.state}: ${s.replicas.map((r) => `${r.name} ${r.mode}`).join(', ')})`);
  }

  /**
   * A live engine upgrade: the frontend holds new requests, the in-flight ones complete, the engine is flushed and
   * closed (its replicas stay open: they are instances of their own), a new engine starts over the replicas that
   * were RW, and the held requests go to it. If the new engine cannot start, the old replica set is started again
   * the same way and the error is returned: the volume keeps its image.
   */
  async swapEngine(image: string, signal: AbortSignal): Promise<{ image: string; heldMs: number }> {
    const front = this.#front;
    if (this.state !== 'running' || !front || !this.#engine) throw new ImError('Conflict', `Engine "${this.name}" is not running (${this.state})`);
    if (this.#image === image) return { image, heldMs: 0 };
    const t0 = Date.now();
    await front.swap(async (_current, serve) => {
      const old = this.#engine;
      if (!old) throw new ImError('Conflict', `Engine "${this.name}" is not running`);
      await old.flush({ signal });
      const members = old.status().replicas.filter((r) => r.mode === 'RW').map((r) => ({ name: r.name, address: r.address }));
      this.#control?.endWatches();
      await old.close({ signal }).catch((err: unknown) => {
        this.say(`closing the engine for the swap: ${messageOf(err)}`);
        old.destroy();
      });
      let next: { engine: Engine; control: EngineControl };
      try {
        next = await this.#startEngine(members, signal);
      } catch (err) {
        this.say(`the engine of image ${image} did not start (${messageOf(err)}); starting the previous one again`);
        const back = await this.#startEngine(members, AbortSignal.timeout(this.ctx.startTimeoutMs));
        this.#engine = back.engine;
        this.#control = back.control;
        serve(back.engine);
        throw new ImError('Internal', `Engine "${this.name}": the engine of image ${image} did not start: ${messageOf(err)}; the previous engine serves again`);
      }
      this.#engine = next.engine;
      this.#control = next.control;
      serve(next.engine);
    });
    const from = this.#image;
    this.#image = image;
    const heldMs = Date.now() - t0;
    this.say(`engine swapped live from image ${from ?? '(unnamed)'} to ${image}: requests held ${heldMs} ms`);
    this.changed();
    return { image, heldMs };
  }

  protected async close(reason: Error, signal: AbortSignal): Promise<void> {
    const volume = this.#spec.volume;
    // The block device first, while NBD still serves it, so the loop device's last writes reach the replicas.
    await this.#device?.close().catch((err: unknown) => this.say(`removing the block device: ${messageOf(err)}`));
    this.#device = undefined;
    if (this.#exported) await this.ctx.nbd.removeExport(volume, { signal }).catch((err: unknown) => this.say(`removing the NBD export: ${messageOf(err)}`));
    this.#exported = false;
    this.#control?.endWatches();
    if (this.#engine) {
      await this.#engine.close({ signal }).catch((err: unknown) => {
        this.say(`closing the engine: ${messageOf(err)}`);
        this.#engine?.destroy(reason);
      });
    }
    this.#engine = undefined;
  }

  protected endpoints() {
    const e = this.#spec;
    return { nbd: this.ctx.nbd.uri(e.volume), control: this.ctx.apiAddress, ...(this.#device ? { device: this.#device.path } : {}), ...(this.#image ? { image: this.#image } : {}) };
  }
}
