// The worker thread behind StreamHasher (stream-hasher.ts): the SHA-512 and the chunk manifest of the bytes a data
// source writes, on another core than the one receiving them. Requests are handled strictly in the order they were
// posted, so a digest or a mark always covers exactly the bytes sent before it. Bytes arrive in shared slots, which
// are handed back (`free`) as soon as they are hashed.

import { createHash, type Hash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { ManifestBuilder, type ChunkManifest } from '../bim/manifest.js';

export type HashThreadRequest =
  | { type: 'update'; slot: number; length: number }
  | { type: 'mark'; id: number }
  | { type: 'rollback'; id: number }
  | { type: 'digest'; id: number }
  | { type: 'manifest'; id: number; ids: { name: string; uuid: string; sha512: string }; size: number }
  | { type: 'rehash'; id: number; path: string; end: number };

export type HashThreadReply =
  | { type: 'free'; slot: number }
  | { type: 'done'; id: number; sha512?: string; manifest?: ChunkManifest }
  | { type: 'error'; id?: number; message: string };

export interface HashThreadData {
  slots: SharedArrayBuffer[];
  chunkSize: number;
}

const READ = 4 * 1024 * 1024;

function serve(): void {
  const port = parentPort;
  if (!port) return;
  const { slots, chunkSize } = workerData as HashThreadData;
  let hash: Hash = createHash('sha512');
  let manifest = new ManifestBuilder(undefined, chunkSize);
  let mark: { hash: Hash; manifest: ManifestBuilder } | undefined;
  const feed = (bytes: Uint8Array) => {
    hash.update(bytes);
    manifest.update(bytes);
  };
  const reply = (r: HashThreadReply) => port.postMessage(r);

  port.on('message', (m: HashThreadRequest) => {
    const id = m.type === 'update' ? undefined : m.id;
    try {
      switch (m.type) {
        case 'update': {
          const slot = slots[m.slot];
          if (!slot) throw new Error(`no slot ${m.slot}`);
          feed(new Uint8Array(slot, 0, m.length));
          reply({ type: 'free', slot: m.slot });
          return;
        }
        case 'mark':
          mark = { hash: hash.copy(), manifest: manifest.copy() };
          break;
        case 'rollback':
          if (!mark) throw new Error('rollback without a mark');
          hash = mark.hash;
          manifest = mark.manifest;
          mark = undefined;
          break;
        case 'digest':
          reply({ type: 'done', id: m.id, sha512: hash.copy().digest('hex') });
          return;
        case 'manifest':
          reply({ type: 'done', id: m.id, manifest: manifest.copy().finish(m.ids, m.size) });
          return;
        case 'rehash': {
          hash = createHash('sha512');
          manifest = new ManifestBuilder(undefined, chunkSize);
          mark = undefined;
          rehash(m.path, m.end, feed);
          break;
        }
      }
      reply({ type: 'done', id: m.id });
    } catch (err) {
      reply({ type: 'error', ...(id === undefined ? {} : { id }), message: err instanceof Error ? err.message : String(err) });
    }
  });
}

/** Feeds bytes [0, end) of the file at `path`, read with blocking reads (this thread does nothing else meanwhile). */
function rehash(path: string, end: number, feed: (bytes: Uint8Array) => void): void {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(READ);
    for (let pos = 0; pos < end; ) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, end - pos), pos);
      if (n === 0) throw new Error(`${path} ended at ${pos} while re-hashing ${end} bytes`);
      feed(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
}

serve();
