// The worker thread behind WholeFileHasher (follower.ts): SHA-512 over ranges of one file, fed in file order by
// messages, so a receiver's whole-file checksum runs on another core than the one moving the bytes. Ranges are read
// with blocking reads (this thread does nothing else); zero ranges are hashed from a zero buffer and never read.

import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

export type HashWorkerRequest = { type: 'data'; offset: number; length: number } | { type: 'zero'; length: number } | { type: 'end' };
export type HashWorkerReply = { type: 'hashed'; bytes: number; read: number } | { type: 'digest'; sha512: string } | { type: 'error'; message: string };

const PIECE = 4 * 1024 * 1024;

function serve(path: string): void {
  const port = parentPort;
  if (!port) return;
  const fd = openSync(path, 'r');
  const hash = createHash('sha512');
  const buf = Buffer.allocUnsafe(PIECE);
  const zero = Buffer.alloc(PIECE);
  const reply = (r: HashWorkerReply) => port.postMessage(r);
  port.on('message', (m: HashWorkerRequest) => {
    try {
      if (m.type === 'zero') {
        for (let left = m.length; left > 0; left -= PIECE) hash.update(zero.subarray(0, Math.min(PIECE, left)));
        reply({ type: 'hashed', bytes: m.length, read: 0 });
      } else if (m.type === 'data') {
        for (let pos = m.offset, end = m.offset + m.length; pos < end; ) {
          const n = readSync(fd, buf, 0, Math.min(PIECE, end - pos), pos);
          if (n === 0) throw new Error(`${path} ended at ${pos} while reading bytes up to ${end}`);
          hash.update(buf.subarray(0, n));
          pos += n;
        }
        reply({ type: 'hashed', bytes: m.length, read: m.length });
      } else {
        closeSync(fd);
        reply({ type: 'digest', sha512: hash.digest('hex') });
      }
    } catch (err) {
      reply({ type: 'error', message: err instanceof Error ? err.message : String(err) });
    }
  });
}

serve((workerData as { path: string }).path);
