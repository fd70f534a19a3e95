// The worker thread behind WholeFileHasher (follower.ts) and ChunkChecker (chunk-checker.ts): SHA-512 over ranges of
// one file, fed in file order by messages, so a receiver's whole-file checksum runs on another core than the one
// moving the bytes; or the SHA-256 of single chunks, in any order, apart from that running SHA-512. Ranges are read
// with blocking reads (this thread does nothing else), each piece hashed while it is still in this core's cache; zero
// ranges are hashed from a zero buffer and never read.

import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

export type HashWorkerRequest =
  | { type: 'data'; offset: number; length: number }
  | { type: 'zero'; length: number }
  | { type: 'end' }
  | { type: 'chunk'; id: number; offset: number; length: number };
export type HashWorkerReply =
  | { type: 'hashed'; bytes: number; read: number }
  | { type: 'digest'; sha512: string }
  | { type: 'chunk'; id: number; sha256: string }
  | { type: 'error'; message: string; id?: number };

/** Read and hashed at a time: small enough to stay in the core's L2 cache between the copy and the hash. */
const PIECE = 256 * 1024;

function serve(path: string): void {
  const port = parentPort;
  if (!port) return;
  const fd = openSync(path, 'r');
  const hash = createHash('sha512');
  const buf = Buffer.allocUnsafe(PIECE);
  const zero = Buffer.alloc(PIECE);
  const reply = (r: HashWorkerReply) => port.postMessage(r);
  const read = (offset: number, length: number, update: (piece: Buffer) => void) => {
    for (let pos = offset, end = offset + length; pos < end; ) {
      const n = readSync(fd, buf, 0, Math.min(PIECE, end - pos), pos);
      if (n === 0) throw new Error(`${path} ended at ${pos} while reading bytes up to ${end}`);
      update(buf.subarray(0, n));
      pos += n;
    }
  };
  port.on('message', (m: HashWorkerRequest) => {
    try {
      if (m.type === 'chunk') {
        const h = createHash('sha256');
        read(m.offset, m.length, (piece) => h.update(piece));
        reply({ type: 'chunk', id: m.id, sha256: h.digest('hex') });
      } else if (m.type === 'zero') {
        for (let left = m.length; left > 0; left -= PIECE) hash.update(zero.subarray(0, Math.min(PIECE, left)));
        reply({ type: 'hashed', bytes: m.length, read: 0 });
      } else if (m.type === 'data') {
        read(m.offset, m.length, (piece) => hash.update(piece));
        reply({ type: 'hashed', bytes: m.length, read: m.length });
      } else {
        closeSync(fd);
        reply({ type: 'digest', sha512: hash.digest('hex') });
      }
    } catch (err) {
      reply({ type: 'error', message: err instanceof Error ? err.message : String(err), ...(m.type === 'chunk' ? { id: m.id } : {}) });
    }
  });
}

serve((workerData as { path: string }).path);
