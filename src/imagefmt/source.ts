// Positioned byte sources under the image readers: a read-only file (FileHandle.read with explicit positions, no
// whole-file buffering) or an in-memory buffer (tests, fuzzing). Also reads and validates a qcow2 header from one.

import { open, type FileHandle } from 'node:fs/promises';
import { ImageFormatError } from './errors.js';
import { checkQcow2Layout, parseQcow2Header, QCOW2_MAX_CLUSTER_BITS, QCOW2_MIN_CLUSTER_BITS, type Qcow2Header } from './qcow2-header.js';

export interface ByteSource {
  /** Size in bytes, taken once when the source is opened: backing files are read-only. */
  readonly size: number;
  /** Fill `buf` from `position`; returns the number of bytes read, fewer than `buf.length` only at the end. */
  read(buf: Uint8Array, position: number): Promise<number>;
  close(): Promise<void>;
}

export interface SignalOptions {
  signal?: AbortSignal | undefined;
}

/** Open `path` read-only as a ByteSource. It must be a regular file. */
export async function openFileSource(path: string, { signal }: SignalOptions = {}): Promise<ByteSource> {
  signal?.throwIfAborted();
  const handle = await open(path, 'r');
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new ImageFormatError('NotAFile', `image ${JSON.stringify(path)} is not a regular file`);
    signal?.throwIfAborted();
    return new FileSource(handle, st.size);
  } catch (err) {
    await handle.close();
    throw err;
  }
}

class FileSource implements ByteSource {
  readonly #handle: FileHandle;
  readonly size: number;

  constructor(handle: FileHandle, size: number) {
    this.#handle = handle;
    this.size = size;
  }

  async read(buf: Uint8Array, position: number): Promise<number> {
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await this.#handle.read(buf, done, buf.length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  close(): Promise<void> {
    return this.#handle.close();
  }
}

/** A ByteSource over bytes in memory (the bytes are not copied). */
export function bufferSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read(buf, position) {
      const chunk = bytes.subarray(Math.min(position, bytes.length), Math.min(position + buf.length, bytes.length));
      buf.set(chunk);
      return Promise.resolve(chunk.length);
    },
    close: () => Promise.resolve(),
  };
}

/** qcow2 v3 fixed header up to and including the compression type, rounded to 8. */
const HEADER_PROBE = 112;

/**
 * Read and validate the qcow2 header of `source`: the fixed header first (to learn the cluster size), then the
 * whole first cluster, where the header extensions live. At most 2 MiB is read.
 */
export async function readQcow2Header(source: ByteSource, { signal }: SignalOptions = {}): Promise<Qcow2Header> {
  const probe = new Uint8Array(Math.min(source.size, HEADER_PROBE));
  await source.read(probe, 0);
  signal?.throwIfAborted();
  let buf = probe;
  if (probe.length >= 24) {
    const bits = new DataView(probe.buffer, probe.byteOffset, probe.byteLength).getUint32(20);
    // Out-of-range cluster_bits are left for parseQcow2Header to refuse with its own message.
    if (bits >= QCOW2_MIN_CLUSTER_BITS && bits <= QCOW2_MAX_CLUSTER_BITS && Math.min(source.size, 2 ** bits) > probe.length) {
      buf = new Uint8Array(Math.min(source.size, 2 ** bits));
      await source.read(buf, 0);
      signal?.throwIfAborted();
    }
  }
  const header = parseQcow2Header(buf);
  checkQcow2Layout(header, source.size);
  return header;
}
