// Pod logs: each instance's stdout+stderr go straight into `logs/<n>.log` (the process holds the descriptor, so
// logging goes on while the agent is down). Reading streams the file with bounded memory: `tailLines` is found
// by scanning backwards in chunks, and `follow` polls for appended bytes until the instance has ended.

import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pause } from './sleep.js';

const CHUNK = 64 * 1024;

export interface LogSource {
  file: string;
  /** True once the instance writing the file has ended (nothing more will be appended). */
  ended(): boolean;
}

/** Byte offset at which the last `lines` lines of the file start (a trailing newline does not start a line). */
export async function tailOffset(fh: FileHandle, size: number, lines: number): Promise<number> {
  if (lines <= 0) return size;
  let count = 0;
  let pos = size;
  const buf = Buffer.alloc(CHUNK);
  while (pos > 0) {
    const start = Math.max(0, pos - CHUNK);
    const { bytesRead } = await fh.read(buf, 0, pos - start, start);
    for (let i = bytesRead - 1; i >= 0; i--) {
      if (buf[i] !== 0x0a || start + i === size - 1) continue;
      if (++count === lines) return start + i + 1;
    }
    pos = start;
  }
  return 0;
}

export interface LogStreamOptions {
  follow: boolean;
  tailLines?: number | undefined;
  signal: AbortSignal;
  pollMs?: number;
}

/** The log as a stream; an instance that never wrote anything (or never started) gives an empty one. */
export function logStream(src: LogSource, o: LogStreamOptions): Readable {
  return Readable.from(readLog(src, o), { objectMode: false });
}

async function* readLog(src: LogSource, o: LogStreamOptions): AsyncGenerator<Buffer> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(src.file, 'r');
  } catch {
    if (!o.follow) return;
  }
  try {
    // Following a file that does not exist yet: wait for the instance to create it.
    while (fh === undefined) {
      if (src.ended() || !(await pause(o.pollMs ?? 250, o.signal))) return;
      fh = await open(src.file, 'r').catch(() => undefined);
    }
    const size = (await fh.stat()).size;
    let pos = o.tailLines === undefined ? 0 : await tailOffset(fh, size, o.tailLines);
    for (;;) {
      if (o.signal.aborted) return;
      // Read `ended` before reading, so bytes written just before the end are still sent.
      const endedBefore = src.ended();
      const buf = Buffer.alloc(CHUNK);
      const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
      if (bytesRead > 0) {
        pos += bytesRead;
        yield buf.subarray(0, bytesRead);
        continue;
      }
      if (!o.follow || endedBefore) return;
      if (!(await pause(o.pollMs ?? 250, o.signal))) return;
    }
  } finally {
    await fh?.close();
  }
}
