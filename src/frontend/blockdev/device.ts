// NbdLoopDevice: a block device for an NBD export where kernel NBD is absent. nbdfuse exposes the export as one
// file (a "naked" mount over a placeholder regular file), losetup turns that file into /dev/loopN, and a symlink
// <deviceDir>/<volume> → /dev/loopN gives it the stable Longhorn-style name. close() undoes it in reverse order.
//
//   /dev/longhorn/vol ──symlink──► /dev/loopN ──loop──► <fuseDir>/vol.fuse ──FUSE──► nbdfuse ──NBD──► engine

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readlink, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BlockdevError } from './errors.js';
import { exec } from './exec.js';
import { cleanupStale, detachLoop, ignoreNotFound, mountPoints, unmountFuse } from './stale.js';

export interface NbdLoopDeviceOptions {
  volume: string;
  /** The export to serve, e.g. nbd://127.0.0.1:10809/vol. */
  nbdUri: string;
  /** Where the symlink named after the volume goes (created when missing), e.g. /dev/longhorn. */
  deviceDir: string;
  /** Where the FUSE placeholder files go (default `<deviceDir>/.fuse`). */
  fuseDir?: string;
  /** Expected size in bytes; the device is made only once the FUSE file shows it. */
  size?: number;
  /** Open the loop device's file with O_DIRECT (default true): no second page cache between loop and FUSE. */
  directIo?: boolean;
  /** How long nbdfuse may take to expose the file (default 15 s). */
  readyTimeoutMs?: number;
  log?: (line: string) => void;
  signal?: AbortSignal;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Why the blockdev frontend cannot work here (undefined when it can): for error messages and test skips. */
export async function blockdevUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'the blockdev frontend needs root (losetup, FUSE mounts)';
  for (const dev of ['/dev/loop-control', '/dev/fuse']) {
    if (!(await stat(dev).then((s) => s.isCharacterDevice(), () => false))) return `${dev} is absent`;
  }
  for (const tool of ['nbdfuse', 'losetup', 'fusermount3']) {
    try {
      await exec(tool, ['--version']);
    } catch (err) {
      if (err instanceof BlockdevError && err.code === 'BlockdevUnavailable') return `${tool} is not installed`;
    }
  }
  return undefined;
}

function checkVolume(volume: string): void {
  if (volume === '' || volume === '.' || volume === '..' || volume.includes('/') || volume.includes('\0')) {
    throw new BlockdevError('BlockdevInvalidArgument', `volume name ${JSON.stringify(volume)} cannot name a device file`);
  }
}

export class NbdLoopDevice {
  /** The stable path: `<deviceDir>/<volume>`, a symlink to the loop device. */
  readonly path: string;
  readonly #file: string;
  readonly #log: (line: string) => void;
  #loop: string | undefined;
  #fuse: ChildProcess | undefined;
  #fuseExited: Promise<void> = Promise.resolve();
  #fuseStderr = '';
  #closing: Promise<void> | undefined;

  private constructor(path: string, file: string, log: (line: string) => void) {
    this.path = path;
    this.#file = file;
    this.#log = log;
  }

  /** The loop device (e.g. /dev/loop3). */
  get loop(): string {
    return this.#loop ?? '';
  }

  /** Makes the device; on failure, whatever was set up is undone before the error is thrown. */
  static async create(opts: NbdLoopDeviceOptions): Promise<NbdLoopDevice> {
    checkVolume(opts.volume);
    const fuseDir = opts.fuseDir ?? join(opts.deviceDir, '.fuse');
    const dev = new NbdLoopDevice(join(opts.deviceDir, opts.volume), join(fuseDir, `${opts.volume}.fuse`), opts.log ?? (() => {}));
    try {
      await dev.#setUp(opts);
    } catch (err) {
      await dev.close().catch((e: unknown) => dev.#log(`blockdev ${opts.volume}: cleanup after failed create: ${(e as Error).message}`));
      throw err;
    }
    return dev;
  }

  async #setUp(opts: NbdLoopDeviceOptions): Promise<void> {
    const sig = opts.signal ? { signal: opts.signal } : {};
    await mkdir(opts.deviceDir, { recursive: true });
    await mkdir(join(this.#file, '..'), { recursive: true });
    await cleanupStale(this.path, this.#file, { ...sig, log: this.#log });
    await writeFile(this.#file, '');
    this.#startNbdfuse(opts.nbdUri);
    await this.#waitMounted(opts.size, opts.readyTimeoutMs ?? 15_000, opts.signal);
    const direct = opts.directIo ?? true;
    const { stdout } = await exec('losetup', ['--find', '--show', ...(direct ? ['--direct-io=on'] : []), this.#file], sig);
    this.#loop = stdout.trim();
    if (!this.#loop.startsWith('/dev/')) throw new BlockdevError('BlockdevCommandFailed', `losetup --find --show ${this.#file} printed ${JSON.stringify(stdout)}, not a device`);
    await symlink(this.#loop, this.path);
    this.#log(`blockdev ${opts.volume}: ${this.path} -> ${this.#loop} (${this.#file} over ${opts.nbdUri})`);
  }

  #startNbdfuse(uri: string): void {
    // Own process group: a signal to the engine's group (a pod stop) must not end nbdfuse before the loop device
    // is flushed and detached; close() ends it in order. A kill -9 of the engine leaves it for cleanupStale.
    const child = spawn('nbdfuse', [this.#file, uri], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    this.#fuse = child;
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.#fuseStderr = (this.#fuseStderr + d).slice(-4096);
    });
    this.#fuseExited = new Promise((resolve) => {
      child.once('error', (err) => {
        this.#fuseStderr += `\n${err.message}`;
        resolve();
      });
      child.once('exit', () => resolve());
    });
  }

  async #waitMounted(size: number | undefined, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    const child = this.#fuse!;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      signal?.throwIfAborted();
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
        await this.#fuseExited;
        throw new BlockdevError('BlockdevCommandFailed', `nbdfuse ${this.#file} exited before exposing the export: ${this.#fuseStderr.trim() || `exit ${child.exitCode ?? child.signalCode}`}`);
      }
      if ((await mountPoints()).has(this.#file)) {
        const st = await stat(this.#file).catch(() => undefined);
        if (st && (size === undefined ? st.size > 0 : st.size === size)) return;
        if (st && size !== undefined && st.size > 0 && st.size !== size) {
          throw new BlockdevError('BlockdevInvalidArgument', `nbdfuse ${this.#file} shows ${st.size} bytes, the volume has ${size}`);
        }
      }
      await sleep(25);
    }
    throw new BlockdevError('BlockdevTimeout', `nbdfuse did not expose ${this.#file} within ${timeoutMs} ms${this.#fuseStderr ? `: ${this.#fuseStderr.trim()}` : ''}`);
  }

  /** Removes the symlink, detaches the loop device, unmounts, waits for nbdfuse. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#tearDown();
    return this.#closing;
  }

  async #tearDown(): Promise<void> {
    // Only our own link: another engine of the same volume may have replaced it after a crash of this one.
    const target = await readlink(this.path).catch(() => undefined);
    if (target !== undefined && target === this.#loop) await unlink(this.path).catch(ignoreNotFound);
    if (this.#loop) await detachLoop(this.#loop);
    await unmountFuse(this.#file);
    const fuse = this.#fuse;
    if (fuse && fuse.pid !== undefined) {
      // nbdfuse exits by itself once unmounted; one that does not (hung on a dead server) is killed.
      let timer: NodeJS.Timeout | undefined;
      const exited = await Promise.race([this.#fuseExited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 5000)))]);
      clearTimeout(timer);
      if (!exited) {
        this.#log(`blockdev: nbdfuse ${this.#file} still runs 5 s after its unmount; killing it`);
        fuse.kill('SIGKILL');
        await this.#fuseExited;
      }
    }
    await rm(this.#file, { force: true });
  }
}
