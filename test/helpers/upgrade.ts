// Helpers for the upgrade tests (issue 12) on `stratum up`: release files, reads of backing-image managers and
// pods, a volume with data written over NBD and a checker that reads it back, and a watch recorder.

import { createHash } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NbdClient } from '../../src/frontend/nbd/index.js';
import { mulberry32 } from '../../src/util/prng.js';
import { authFor } from './credentials.js';
import { parseNbdUri, type Volumes } from './volumes.js';

export const MiB = 1024 * 1024;
export const BASE = '/apis/longhorn.io/v1beta2/namespaces/longhorn-system';

export interface BimView {
  metadata: { name: string; uid: string };
  spec: { image: string; nodeID: string; diskUUID: string; diskPath: string; backingImages?: Record<string, string> };
  status?: { currentState?: string; apiVersion?: number; apiMinVersion?: number; backingImageFileMap?: Record<string, { state: string; uuid: string; message?: string; progress?: number }> };
}

export interface PodItem {
  metadata: { name: string; labels?: Record<string, string> };
  spec: { nodeName?: string; containers: { image: string }[] };
  status?: { phase?: string };
}

export async function getJson<T>(url: string, path: string): Promise<T> {
  const res = await fetch(`${url}${path}`, { headers: authFor(url) });
  if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

export const bims = async (url: string) => (await getJson<{ items: BimView[] }>(url, `${BASE}/backingimagemanagers`)).items;
export const pods = async (url: string) => (await getJson<{ items: PodItem[] }>(url, '/api/v1/namespaces/longhorn-system/pods')).items;

/** A random raw image of `mib` MiB; its SHA-512. */
export function randomImage(path: string, mib: number, seed: number): { sha512: string; data: Buffer } {
  const data = Buffer.alloc(mib * MiB);
  const rand = mulberry32(seed);
  for (let i = 0; i + 4 <= data.length; i += 4) data.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
  writeFileSync(path, data);
  return { sha512: createHash('sha512').update(data).digest('hex'), data };
}

/** The inode of every copy of `image` (uuid) on the given disks: disk path → inode. */
export function copyInodes(diskPaths: string[], image: string, uuid: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const d of diskPaths) {
    try {
      out.set(d, statSync(join(d, 'backing-images', `${image}-${uuid}`, 'backing')).ino);
    } catch {
      // no copy on this disk
    }
  }
  return out;
}

/** A volume's expected content: the image below, 1 MiB blocks written at chosen offsets over it. */
export class VolumeModel {
  readonly model: Buffer;
  readonly writes: number[] = [];

  constructor(readonly name: string, image: Buffer, size: number) {
    this.model = Buffer.alloc(size);
    image.copy(this.model, 0);
  }

  /** The NBD endpoint, read from the volume once: later reads must not depend on the API (it restarts). */
  #uri: string | undefined;

  async connect(vols: Volumes): Promise<NbdClient> {
    if (this.#uri === undefined) {
      const v = await vols.get(this.name);
      this.#uri = v.status?.endpoint ?? v.status?.nbdEndpoint ?? '';
    }
    const ep = parseNbdUri(this.#uri);
    return NbdClient.connect({ host: ep.host, port: ep.port }, { exportName: ep.exportName });
  }

  /** Writes `count` random 1 MiB blocks (flushed) and records them. */
  async writeRandom(vols: Volumes, count: number, seed: number): Promise<void> {
    const c = await this.connect(vols);
    const rand = mulberry32(seed);
    try {
      for (let i = 0; i < count; i++) {
        const off = Math.floor(rand() * (this.model.length / MiB)) * MiB;
        const block = Buffer.alloc(MiB);
        for (let j = 0; j < MiB; j += 4) block.writeUInt32LE(Math.floor(rand() * 2 ** 32), j);
        await c.write(off, block);
        block.copy(this.model, off);
        this.writes.push(off);
      }
      await c.flush();
    } finally {
      await c.disconnect();
    }
  }

  /** Reads the whole volume and says where it differs from the model (undefined: identical). */
  async verify(vols: Volumes): Promise<string | undefined> {
    const c = await this.connect(vols);
    try {
      for (let off = 0; off < this.model.length; off += 4 * MiB) {
        const got = Buffer.from(await c.read(off, Math.min(4 * MiB, this.model.length - off)));
        if (!got.equals(this.model.subarray(off, off + got.length))) return `${this.name}: bytes at ${off}..${off + got.length} differ from what was written`;
      }
      return undefined;
    } finally {
      await c.disconnect();
    }
  }
}

/** Verifies the volumes again and again until stopped; collects every mismatch or I/O error. */
export function keepVerifying(vols: Volumes, models: VolumeModel[]): { stop(): Promise<{ rounds: number; problems: string[] }> } {
  let stopped = false;
  const problems: string[] = [];
  let rounds = 0;
  const loop = (async () => {
    while (!stopped) {
      for (const m of models) {
        try {
          const p = await m.verify(vols);
          if (p) problems.push(p);
        } catch (err) {
          problems.push(`${m.name}: ${(err as Error).message}`);
        }
      }
      rounds++;
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return { rounds, problems };
    },
  };
}

/** A release file in `dir`; returns its path. */
export function releaseFile(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
