// Test helpers for the engine's tests (not exported from index.ts): in-process replicas that are real (a
// LayeredReplica behind a ReplicaServer on a loopback port, reached through a ReplicaClient), each wrapped in a
// FaultDevice so a test can stall or fail one; and a byte model of the volume.

import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LayeredReplica, ReplicaClient, ReplicaServer } from '../replica/index.js';
import { FaultDevice, Rng } from '../replica/testing.js';

export { Rng, testSeed } from '../replica/testing.js';

export interface TestReplica {
  name: string;
  dir: string;
  store: LayeredReplica;
  device: FaultDevice;
  server: ReplicaServer;
  port: number;
  /** A new client to this replica (the engine takes ownership of what it is given). */
  connect(timeoutMs?: number): Promise<ReplicaClient>;
  stop(): Promise<void>;
}

export class Fixture {
  readonly root: string;
  readonly backing: Uint8Array;
  readonly size: number;
  readonly replicas: TestReplica[] = [];

  private constructor(root: string, backing: Uint8Array, size: number) {
    this.root = root;
    this.backing = backing;
    this.size = size;
  }

  /** A temp root with a random raw backing image of `backingSize` bytes ("disk" directories get a copy each). */
  static async create(size: number, backingSize: number, seed: number): Promise<Fixture> {
    const root = await mkdtemp(join(tmpdir(), 'stratum-engine-'));
    const backing = new Rng(seed).bytes(backingSize);
    await writeFile(join(root, 'backing.raw'), backing);
    return new Fixture(root, backing, size);
  }

  /** Start replica `name` on its own "disk": a directory with its own copy of the backing file. */
  async replica(name: string, blockSize = 4096): Promise<TestReplica> {
    const disk = join(this.root, `disk-${name}`);
    const dir = join(disk, 'replicas', name);
    await mkdir(disk, { recursive: true });
    await copyFile(join(this.root, 'backing.raw'), join(disk, 'backing'));
    const store = await LayeredReplica.create(dir, { name, size: this.size, blockSize, backing: { name: 'bi', uuid: 'u1', path: '../../backing' } });
    const device = new FaultDevice(store);
    const server = new ReplicaServer(device);
    const addr = await server.listen({ port: 0 });
    const port = 'port' in addr ? addr.port : 0;
    const r: TestReplica = {
      name,
      dir,
      store,
      device,
      server,
      port,
      connect: (timeoutMs = 2000) => ReplicaClient.connect({ port }, { timeoutMs }),
      stop: async () => {
        await server.destroy();
        await store.close().catch(() => {});
      },
    };
    this.replicas.push(r);
    return r;
  }

  /** The volume's initial content: the backing image padded with zeros. */
  initialModel(): Uint8Array {
    const m = new Uint8Array(this.size);
    m.set(this.backing.subarray(0, this.size));
    return m;
  }

  async cleanup(): Promise<void> {
    for (const r of this.replicas) await r.stop();
    await rm(this.root, { recursive: true, force: true });
  }
}

/** Index of the first differing byte, or -1. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  const i = Buffer.from(a.buffer, a.byteOffset, a.byteLength).compare(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  if (i === 0) return -1;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return k;
  return -1;
}
