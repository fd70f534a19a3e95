// One image reader per backing file, shared by every replica on a node that reads it: the instance manager hosts
// many replicas of volumes made from the same image on the same disk, and each reader keeps caches (qcow2 L2
// tables, decompressed clusters). Sharing keeps that memory per image, not per replica. Readers are counted: the
// file is closed when the last replica using it closes.

import type { ImageReader } from '../imagefmt/index.js';

interface Entry {
  reader: Promise<ImageReader>;
  users: number;
}

export class SharedBackingReaders {
  readonly #byPath = new Map<string, Entry>();

  /** The shared reader of `path`, opened with `open` by the first user. Its close() releases this use only. */
  async acquire(path: string, open: () => Promise<ImageReader>): Promise<ImageReader> {
    let entry = this.#byPath.get(path);
    if (!entry) {
      entry = { reader: open(), users: 0 };
      this.#byPath.set(path, entry);
      const e = entry;
      // A failed open is forgotten at once, so the next replica tries again.
      e.reader.catch(() => {
        if (this.#byPath.get(path) === e) this.#byPath.delete(path);
      });
    }
    entry.users++;
    let reader: ImageReader;
    try {
      reader = await entry.reader;
    } catch (err) {
      entry.users--;
      throw err;
    }
    const e = entry;
    let released = false;
    return {
      format: reader.format,
      virtualSize: reader.virtualSize,
      read: (buf, offset, options) => reader.read(buf, offset, options),
      zeroExtents: (options) => reader.zeroExtents(options),
      close: async () => {
        if (released) return;
        released = true;
        if (--e.users > 0) return;
        if (this.#byPath.get(path) === e) this.#byPath.delete(path);
        await reader.close();
      },
    };
  }

  /** Backing files open now (tests, status). */
  get openCount(): number {
    return this.#byPath.size;
  }
}
