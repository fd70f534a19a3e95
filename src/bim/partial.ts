// The partial file of a sync and the map that vouches for its chunks: created at full size as one hole, or reopened
// with its persisted map when that map was made for the same manifest; and the checkpointer that persists received
// chunks in batches (fdatasync of the data first, then the map).

import { open, stat, type FileHandle } from 'node:fs/promises';
import { ChunkMap, readChunkMap, writeChunkMap } from './chunkmap.js';
import { removeIfExists } from './fsutil.js';
import { chunkCount, manifestDigest, type ChunkManifest } from './manifest.js';

export interface CheckpointPolicy {
  /** Persist the chunk map after this many received chunks, or `checkpointMs` after the first unpersisted one. */
  checkpointChunks: number;
  checkpointMs: number;
}

/** The persisted chunk map when the partial file and it were made for this manifest (a sync can resume), else undefined. */
export async function resumablePartial(partial: string, mapPath: string, manifest: ChunkManifest): Promise<ChunkMap | undefined> {
  const old = await readChunkMap(mapPath);
  const size = await stat(partial).then((s) => s.size, () => -1);
  const same = old?.matches({ chunkSize: manifest.chunkSize, fileSize: manifest.size, digest: manifestDigest(manifest) }) === true && size === manifest.size;
  return same ? old : undefined;
}

export async function openPartial(
  partial: string,
  mapPath: string,
  manifest: ChunkManifest,
): Promise<{ fh: FileHandle; map: ChunkMap; resumed: boolean }> {
  const old = await resumablePartial(partial, mapPath, manifest);
  if (old) return { fh: await open(partial, 'r+'), map: old, resumed: true };
  // Start over: an empty file extended to full size is all hole; zero chunks are never written.
  await removeIfExists(mapPath);
  const fh = await open(partial, 'w+', 0o644);
  try {
    await fh.truncate(manifest.size);
    await fh.datasync();
    const map = new ChunkMap({ chunkSize: manifest.chunkSize, fileSize: manifest.size, count: chunkCount(manifest.size, manifest.chunkSize), digest: manifestDigest(manifest) });
    await writeChunkMap(mapPath, map);
    return { fh, map, resumed: false };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** Persists received chunks in batches: fsync the data first, then the map that vouches for it. */
export class Checkpointer {
  readonly #fh: FileHandle;
  readonly #map: ChunkMap;
  readonly #path: string;
  readonly #policy: CheckpointPolicy;
  #pending: number[] = [];
  #chain: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  error: unknown;

  constructor(fh: FileHandle, map: ChunkMap, path: string, policy: CheckpointPolicy) {
    this.#fh = fh;
    this.#map = map;
    this.#path = path;
    this.#policy = policy;
  }

  add(i: number): void {
    this.#pending.push(i);
    if (this.#pending.length >= this.#policy.checkpointChunks) void this.flush().catch(() => undefined);
    else this.#timer ??= setTimeout(() => void this.flush().catch(() => undefined), this.#policy.checkpointMs);
  }

  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const next = this.#chain.then(async () => {
      if (this.#pending.length === 0) return;
      const batch = this.#pending.splice(0);
      await this.#fh.datasync();
      for (const i of batch) this.#map.set(i);
      await writeChunkMap(this.#path, this.#map);
    });
    this.#chain = next.catch((err: unknown) => {
      this.error ??= err;
    });
    return next;
  }
}

