// One image reader per backing file, shared by every replica on a node that reads it: the instance manager hosts
// many replicas of volumes made from the same image on the same disk, and each reader keeps caches (qcow2 L1 and L2
// tables, decompressed clusters). Sharing keeps that memory per image, not per replica. Readers are counted: the
// file is closed when the last replica using it closes.
//
// The file at a backing path can change under its readers in two ways, both to bytes verified against the image's
// SHA-512: the backing-image manager repairs chunks of it in place (a scrub, bim/scrub.ts), or it fails the copy and
// syncs it again (a new file at the same path). Data reads see the first at once through the page cache; the
// reader's cached tables do not, and the second is another file altogether. So at most every `checkMs`, a read also
// looks at the path (in the background: the read itself never waits), and when what is there is no longer the file
// the reader opened, a new reader takes over: later reads go to it, the old one closes once its reads are done. A
// path that is missing for a while (a copy being synced again) keeps the old reader; so does a file that does not
// open as an image of the same format and size.

import { stat } from 'node:fs/promises';
import type { ImageReader } from '../imagefmt/index.js';

interface FileIdentity {
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
}

interface Entry {
  /** The reader as first opened (shared by concurrent first acquirers). */
  opening: Promise<ImageReader>;
  /** The reader reads go to, once open. */
  current: ImageReader | undefined;
  identity: FileIdentity | undefined;
  users: number;
  checkedAt: number;
  checking: boolean;
  open: () => Promise<ImageReader>;
}

async function identityOf(path: string): Promise<FileIdentity | undefined> {
  try {
    const st = await stat(path, { bigint: true });
    return { ino: st.ino, size: st.size, mtimeNs: st.mtimeNs };
  } catch {
    return undefined;
  }
}

const same = (a: FileIdentity | undefined, b: FileIdentity | undefined) => !!a && !!b && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs;

export class SharedBackingReaders {
  readonly #byPath = new Map<string, Entry>();
  readonly #checkMs: number;

  /** `checkMs`: how often at most a read looks whether the file at its path changed (default 5 s). */
  constructor(opts: { checkMs?: number } = {}) {
    this.#checkMs = opts.checkMs ?? 5000;
  }

  /** The shared reader of `path`, opened with `open` by the first user. Its close() releases this use only. */
  async acquire(path: string, open: () => Promise<ImageReader>): Promise<ImageReader> {
    let entry = this.#byPath.get(path);
    if (!entry) {
      // The identity is taken before the file is opened: taken after, it could be that of a file written over the
      // opened one meanwhile, which would then never be noticed. (A change in between costs one needless reopen.)
      const identity = identityOf(path);
      const e: Entry = { opening: identity.then(() => open()), current: undefined, identity: undefined, users: 0, checkedAt: Date.now(), checking: false, open };
      void identity.then((id) => void (e.identity ??= id));
      this.#byPath.set(path, e);
      // A failed open is forgotten at once, so the next replica tries again.
      e.opening.catch(() => {
        if (this.#byPath.get(path) === e) this.#byPath.delete(path);
      });
      entry = e;
    }
    entry.users++;
    let first: ImageReader;
    try {
      first = await entry.opening;
    } catch (err) {
      entry.users--;
      throw err;
    }
    const e = entry;
    e.current ??= first;
    let released = false;
    const reader = (): ImageReader => {
      if (Date.now() - e.checkedAt >= this.#checkMs && !e.checking) this.#revalidate(path, e);
      return e.current ?? first;
    };
    return {
      format: first.format,
      virtualSize: first.virtualSize,
      read: (buf, offset, options) => reader().read(buf, offset, options),
      zeroExtents: (options) => reader().zeroExtents(options),
      close: async () => {
        if (released) return;
        released = true;
        if (--e.users > 0) return;
        if (this.#byPath.get(path) === e) this.#byPath.delete(path);
        await (e.current ?? first).close();
      },
    };
  }

  /** Looks at the file at `path`; when it is another file than the reader's, a new reader takes over. */
  #revalidate(path: string, e: Entry): void {
    e.checking = true;
    e.checkedAt = Date.now();
    void (async () => {
      const now = await identityOf(path);
      if (!now || same(now, e.identity) || !e.current) return;
      let fresh: ImageReader;
      try {
        fresh = await e.open();
      } catch {
        return; // not an image (yet): keep reading the file open now
      }
      const old = e.current;
      if (e.users === 0 || fresh.format !== old.format || fresh.virtualSize !== old.virtualSize) {
        await fresh.close();
        return;
      }
      e.current = fresh;
      e.identity = now;
      await old.close(); // after the reads it has in flight
    })()
      .catch(() => undefined)
      .finally(() => {
        e.checking = false;
      });
  }

  /** Backing files open now (tests, status). */
  get openCount(): number {
    return this.#byPath.size;
  }
}
