// Reads a raw backing image: the file's bytes are the guest's bytes. The file size is the virtual size and must be
// a multiple of 512 (checked by openImageReaderOnSource before this is built).

import { checkReadArgs, extentRange, ReaderLifecycle, type ImageExtent, type ImageReader, type ZeroExtentsOptions } from './image-reader.js';
import type { ByteSource, SignalOptions } from './source.js';

export class RawReader implements ImageReader {
  readonly format = 'raw' as const;
  readonly virtualSize: number;
  readonly #source: ByteSource;
  readonly #life = new ReaderLifecycle();

  constructor(source: ByteSource) {
    this.#source = source;
    this.virtualSize = source.size;
  }

  read(buf: Uint8Array, offset: number, { signal }: SignalOptions = {}): Promise<void> {
    checkReadArgs(buf, offset);
    return this.#life.run('read', async () => {
      signal?.throwIfAborted();
      const inImage = Math.max(0, Math.min(buf.length, this.virtualSize - offset));
      const got = inImage > 0 ? await this.#source.read(buf.subarray(0, inImage), offset) : 0;
      buf.fill(0, got);
    });
  }

  zeroExtents(options: ZeroExtentsOptions = {}): Promise<ImageExtent[]> {
    extentRange(options, this.virtualSize); // same argument checks as qcow2
    // Node has no SEEK_HOLE/SEEK_DATA, so a raw file's holes are not known without reading it.
    return this.#life.run('list zero extents', () => Promise.resolve([]));
  }

  close(): Promise<void> {
    return this.#life.close(() => this.#source.close());
  }
}
