// runEngine: the engine process body, for `stratum engine` (and tests that start it as a child process). Connects
// the volume's replicas, starts the Engine, serves it as an NBD export and exposes the control API, until `signal`
// aborts; then shuts down gracefully: NBD clients drained, replicas flushed, connections closed. With `blockdev`, the
// export is also made a block device (nbdfuse + loop, src/frontend/blockdev) once NBD listens, and removed first on
// shutdown, while NBD still serves it, so the loop device's last writes reach the replicas.

import { NbdLoopDevice } from '../frontend/blockdev/index.js';
import { NbdServer, type NbdListenOptions } from '../frontend/nbd/index.js';
import { ReplicaClient, type ReplicaInfo } from '../replica/index.js';
import { ControlServer, parseEndpoint, type ControlListenOptions } from './control.js';
import { Engine } from './engine.js';
import type { ReplicaBackend } from './types.js';

export interface RunEngineOptions {
  /** Volume name; also the NBD export name. */
  volume: string;
  /** Volume size (replicas of another size are refused); default: what the replicas say. */
  size?: number;
  /** The replicas, by name and address ("host:port" or "unix:/path"). */
  replicas: { name: string; address: string }[];
  /** Where the NBD frontend listens. */
  nbd: NbdListenOptions;
  /** Where the control API listens (omit for none). */
  control?: ControlListenOptions;
  /** Also expose the volume as a block device `<deviceDir>/<volume>` (frontend "blockdev"). */
  blockdev?: { deviceDir: string; fuseDir?: string };
  /** Per-request timeout towards replicas (default 8000 ms). */
  requestTimeoutMs?: number;
  pingIntervalMs?: number;
  shutdownTimeoutMs?: number;
  log?: (line: string) => void;
  /** Called once serving, with the NBD URI and the control address. */
  onReady?: (ready: { engine: Engine; nbdUri: string; control?: { host: string; port: number } | { path: string }; device?: string }) => void;
}

/** A replica that could not be reached at start: the engine lists it as ERR with the reason. */
export function unreachable(address: string, err: unknown): ReplicaBackend {
  const fail = (): Promise<never> => Promise.reject(err);
  return {
    address,
    closed: Promise.resolve(),
    info: fail as () => Promise<ReplicaInfo>,
    ping: fail,
    read: fail,
    write: fail,
    flush: fail,
    trim: fail,
    writeZeroes: fail,
    listExtents: fail,
    readExtent: fail,
    setRevision: fail,
    close: () => Promise.resolve(),
    destroy: () => {},
  };
}

/** Runs until `signal` aborts; resolves after the frontend, the control API and the replica connections closed. */
export async function runEngine(opts: RunEngineOptions, signal: AbortSignal): Promise<void> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const timeoutMs = opts.requestTimeoutMs ?? 8000;
  const backends = await Promise.all(
    opts.replicas.map(async (r) => {
      try {
        return { name: r.name, backend: (await ReplicaClient.connect(parseEndpoint(r.address), { timeoutMs, signal })) as ReplicaBackend };
      } catch (err) {
        if (signal.aborted) throw err;
        log(`engine ${opts.volume}: replica ${r.name} at ${r.address} unreachable: ${(err as Error).message}`);
        return { name: r.name, backend: unreachable(r.address, err) };
      }
    }),
  );
  // The control server is made after the engine, but the engine reports changes from its start on.
  const hooks: { notify?: () => void } = {};
  const engine = await Engine.start({
    volume: opts.volume,
    onChange: () => hooks.notify?.(),
    ...(opts.size === undefined ? {} : { size: opts.size }),
    replicas: backends,
    ...(opts.pingIntervalMs === undefined ? {} : { pingIntervalMs: opts.pingIntervalMs }),
    log,
    signal,
  });
  const nbd = new NbdServer({ onError: (err) => log(`engine ${opts.volume}: nbd: ${err.message}`) });
  const control = new ControlServer(engine, { requestTimeoutMs: timeoutMs, log });
  hooks.notify = () => control.changed();
  let device: NbdLoopDevice | undefined;
  try {
    nbd.addExport(opts.volume, engine, { description: `Stratum volume ${opts.volume}` });
    await nbd.listen(opts.nbd, { signal });
    const controlAddress = opts.control ? await control.listen(opts.control, { signal }) : undefined;
    const nbdUri = nbd.uri(opts.volume);
    if (opts.blockdev) {
      const b = opts.blockdev;
      device = await NbdLoopDevice.create({ volume: opts.volume, nbdUri, deviceDir: b.deviceDir, ...(b.fuseDir ? { fuseDir: b.fuseDir } : {}), size: engine.status().size, log, signal });
    }
    const s = engine.status();
    log(`engine ${opts.volume}: serving ${nbdUri} (${s.size} B, ${s.state}: ${s.replicas.map((r) => `${r.name} ${r.mode}`).join(', ')})`);
    opts.onReady?.({ engine, nbdUri, ...(controlAddress ? { control: controlAddress } : {}), ...(device ? { device: device.path } : {}) });
    if (!signal.aborted) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    const deadline = AbortSignal.timeout(opts.shutdownTimeoutMs ?? 10_000);
    await device?.close();
    await Promise.all([nbd.close({ signal: deadline }), opts.control ? control.close() : Promise.resolve()]);
    await engine.close({ signal: deadline });
  } catch (err) {
    await device?.close().catch((e: unknown) => log(`engine ${opts.volume}: removing the block device: ${(e as Error).message}`));
    engine.destroy(err instanceof Error ? err : undefined);
    throw err;
  } finally {
    await nbd.destroy();
    if (opts.control) control.destroy();
  }
  log(`engine ${opts.volume}: stopped`);
}
