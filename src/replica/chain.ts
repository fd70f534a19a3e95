// The snapshot chain of a replica directory: which layers exist, how they stack, and which one is the live head.
// `chain.json` is the single commit point of every chain change (snapshot, revert, delete, purge, a rebuilt
// chain): it is replaced atomically (temp file, fdatasync, rename, directory fsync), and every other file a change
// writes is either written before the commit and harmless while uncommitted, or removed after it and ignored while
// still there (docs/replica-protocol.md, "Snapshots"). A directory without `chain.json` is one head, layer 0, with
// no snapshots: the layout before snapshots existed, unchanged.
//
// Files by layer: layer 0 keeps the directory's own names (`head.img`, `map.ckpt`, …); layer N > 0 prefixes them
// with `layer-N.`. A frozen (snapshot) layer keeps its data file `head.img` and has `snap.map`, its block states in
// the map-checkpoint encoding; a head layer has the data file, the map checkpoint and journal, the pending map log
// and (N > 0) its own `replica.json`.

import { corrupt } from './errors.js';
import { CHECKPOINT_FILE, JOURNAL_FILE } from './map-format.js';
import { HEAD_FILE, META_FILE } from './meta.js';
import type { StorageDir } from './storage.js';

export const CHAIN_FILE = 'chain.json';
/** A frozen layer's block states (map-checkpoint encoding). */
export const SNAP_MAP_FILE = 'snap.map';
/** The name the live head has in snapshot lists (Longhorn's). */
export const VOLUME_HEAD = 'volume-head';

export interface ChainLayer {
  /** Layer id: names its files; never reused within a directory. */
  id: number;
  /** Snapshot name, unique in the chain. */
  name: string;
  /** The layer below, or null when the backing image (or nothing) is below. */
  parent: number | null;
  createdAt: string;
  /** Deleted while it had children: kept until a purge merges it into its one child. */
  removed: boolean;
  userCreated: boolean;
  labels: Record<string, string>;
  /** The replica's revision counter when the snapshot was taken. */
  revision: number;
  /** Set on a chain being copied by a rebuild, until its layers are complete (a crash leaves it unusable). */
  building?: boolean;
}

export interface Chain {
  version: 1;
  /** The live head's layer id. */
  head: number;
  /** The snapshot under the head, or null. */
  headParent: number | null;
  nextId: number;
  /** Frozen layers, oldest first. */
  layers: ChainLayer[];
}

export const EMPTY_CHAIN: Chain = { version: 1, head: 0, headParent: null, nextId: 1, layers: [] };

export function encodeChain(c: Chain): Uint8Array {
  return Buffer.from(`${JSON.stringify(c, null, 2)}\n`, 'utf8');
}

export function decodeChain(bytes: Uint8Array): Chain {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw corrupt(CHAIN_FILE, 0, `not JSON (${(err as Error).message})`);
  }
  const c = raw as Partial<Chain> | null;
  if (typeof c !== 'object' || c === null || c.version !== 1 || !Array.isArray(c.layers) || typeof c.head !== 'number' || typeof c.nextId !== 'number') {
    throw corrupt(CHAIN_FILE, 0, 'not a version 1 chain (head, nextId and layers are required)');
  }
  const ids = new Set<number>();
  for (const l of c.layers) {
    if (typeof l?.id !== 'number' || typeof l.name !== 'string' || ids.has(l.id) || l.id === c.head || l.id >= c.nextId) {
      throw corrupt(CHAIN_FILE, 0, `layer ${JSON.stringify(l?.id)} is invalid or repeated`);
    }
    ids.add(l.id);
  }
  const parentOk = (p: unknown) => p === null || (typeof p === 'number' && ids.has(p));
  if (!parentOk(c.headParent ?? null) || !c.layers.every((l) => parentOk(l.parent))) throw corrupt(CHAIN_FILE, 0, 'a parent names no layer of the chain');
  return { version: 1, head: c.head, headParent: c.headParent ?? null, nextId: c.nextId, layers: c.layers };
}

/** Layer ids from `id` down to the bottom of the chain (empty for null). */
export function ancestry(chain: Chain, id: number | null): number[] {
  const out: number[] = [];
  const byId = new Map(chain.layers.map((l) => [l.id, l]));
  for (let at = id; at !== null; ) {
    const l = byId.get(at);
    if (!l || out.includes(at)) throw corrupt(CHAIN_FILE, 0, `layer ${at} is missing from the chain or in a cycle`);
    out.push(at);
    at = l.parent;
  }
  return out;
}

/** Children of layer `id`: snapshot layers, and VOLUME_HEAD when the head sits on it. */
export function childrenOf(chain: Chain, id: number): string[] {
  const out = chain.layers.filter((l) => l.parent === id).map((l) => l.name);
  if (chain.headParent === id) out.push(VOLUME_HEAD);
  return out;
}

export function layerPrefix(id: number): string {
  return id === 0 ? '' : `layer-${id}.`;
}

/** Files only a head layer has (removed once it is frozen). */
export function headOnlyFiles(id: number): string[] {
  const p = layerPrefix(id);
  const names = [CHECKPOINT_FILE, JOURNAL_FILE, `${CHECKPOINT_FILE}.tmp`, `${JOURNAL_FILE}.tmp`, 'pending.0', 'pending.1'].map((n) => p + n);
  // Layer 0's replica.json is the directory's: it describes the replica, whatever layer is the head.
  if (id !== 0) names.push(p + META_FILE, `${p}${META_FILE}.tmp`);
  return names;
}

/** Every file a layer may have. */
export function allLayerFiles(id: number): string[] {
  const p = layerPrefix(id);
  return [...headOnlyFiles(id), p + HEAD_FILE, p + SNAP_MAP_FILE, `${p}${SNAP_MAP_FILE}.tmp`];
}

/** `storage` seen through a layer's prefix: the head's ReplicaStore opens its usual names there. */
export function layerStorage(storage: StorageDir, id: number): StorageDir {
  const p = layerPrefix(id);
  if (p === '') return storage;
  return {
    location: `${storage.location} (layer ${id})`,
    open: (name, opts) => storage.open(p + name, opts),
    readFile: (name) => storage.readFile(p + name),
    writeFileAtomic: (name, data) => storage.writeFileAtomic(p + name, data),
    syncDir: () => storage.syncDir(),
    remove: (name) => storage.remove(p + name),
  };
}
