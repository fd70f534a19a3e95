// An engine hosted in the instance manager: the volume's Engine over its replicas (in-process for replicas on this
// node, the node replica listeners of other nodes for the rest), exported on the instance manager's one NBD
// listener under the volume's name, optionally as a block device (nbdfuse + loop), with its control API served by
// the instance manager under /v1/engines/{name}.

import { Engine } from '../engine/engine.js';
import { EngineControl } from '../engine/control.js';
import { unreachable } from '../engine/run.js';
import { NbdLoopDevice } from '../frontend/blockdev/index.js';
import { HostedInstance, messageOf } from './instance.js';
import type { EngineSpec } from './spec.js';

export class EngineInstance extends HostedInstance {
  #engine: Engine | undefined;
  #control: EngineControl | undefined;
  #exported = false;
  #device: NbdLoopDevice | undefined;

  get #spec(): EngineSpec {
    if (this.spec.type !== 'engine') throw new Error('not an engine');
    return this.spec.engine;
  }

  /** The control surface (status, watch, replicas) while running. */
  get control(): EngineControl | undefined {
    return this.state === 'running' ? this.#control : undefined;
  }

  protected async open(signal: AbortSignal): Promise<void> {
    const e = this.#spec;
    const log = (line: string) => this.say(line);
    const timeoutMs = this.ctx.replicaTimeoutMs;
    const connect = (name: string, address: string) => this.ctx.hub.connect(name, address, { timeoutMs, signal });
    const backends = await Promise.all(
      e.replicas.map(async (r) => {
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
    this.#engine = engine;
    const control = new EngineControl(engine, { requestTimeoutMs: timeoutMs, connectReplica: (n, a) => this.ctx.hub.connect(n, a, { timeoutMs }), log });
    this.#control = control;
    hooks.notify = () => control.changed();
    this.ctx.nbd.addExport(e.volume, engine, { description: `Stratum volume ${e.volume}` });
    this.#exported = true;
    if (e.frontend === 'blockdev') {
      this.#device = await NbdLoopDevice.create({ volume: e.volume, nbdUri: this.ctx.nbd.uri(e.volume), deviceDir: e.deviceDir ?? '/dev/longhorn', size: e.size, log, signal });
    }
    const s = engine.status();
    this.say(`serving ${this.ctx.nbd.uri(e.volume)} (${s.size} B, ${s.state}: ${s.replicas.map((r) => `${r.name} ${r.mode}`).join(', ')})`);
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
    return { nbd: this.ctx.nbd.uri(e.volume), control: this.ctx.apiAddress, ...(this.#device ? { device: this.#device.path } : {}) };
  }
}
