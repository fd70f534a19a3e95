// Finding and removing what a crashed engine left behind for a volume: the device symlink, loop devices still
// attached to the volume's FUSE file, and the FUSE mount itself (often dead: "transport endpoint is not
// connected"). A new device for the same volume is made only after this ran, so a restart after kill -9 works.

import { lstat, readFile, readlink, unlink } from 'node:fs/promises';
import { BlockdevError } from './errors.js';
import { exec } from './exec.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Loop devices (e.g. "/dev/loop3") whose backing file is `file` (also when shown as "file (deleted)"). */
export async function loopsBackedBy(file: string, { signal }: { signal?: AbortSignal } = {}): Promise<string[]> {
  const { stdout } = await exec('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], signal ? { signal } : {});
  if (stdout.trim() === '') return [];
  const parsed = JSON.parse(stdout) as { loopdevices?: { name: string; 'back-file'?: string | null }[] };
  return (parsed.loopdevices ?? [])
    .filter((d) => {
      const back = d['back-file'] ?? '';
      return back === file || back === `${file} (deleted)`;
    })
    .map((d) => d.name);
}

/** Mount points as the kernel lists them in /proc/self/mountinfo (octal escapes such as \040 decoded). */
export async function mountPoints(): Promise<Set<string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const decode = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  return new Set(text.split('\n').filter(Boolean).map((l) => decode(l.split(' ')[4] ?? '')));
}

/** Detaches a loop device and waits until the kernel let go of its backing file (detach is deferred while open). */
export async function detachLoop(loop: string, { signal }: { signal?: AbortSignal } = {}): Promise<void> {
  try {
    await exec('losetup', ['--detach', loop], signal ? { signal } : {});
  } catch (err) {
    // Already detached (a second close, or a crashed run's device that autoclear removed) is what we wanted.
    if (!(err instanceof BlockdevError && /No such device|not a block device|No such file/i.test(err.message))) throw err;
  }
  const sys = `/sys/block/${loop.replace(/^\/dev\//, '')}/loop/backing_file`;
  for (let i = 0; i < 100; i++) {
    if (!(await exists(sys))) return;
    await sleep(50);
  }
  throw new BlockdevError('BlockdevTimeout', `losetup --detach ${loop}: the loop device still holds its file after 5 s (is it open elsewhere?)`);
}

/** Unmounts a FUSE mount point; retries while busy (a loop device releasing it), then detaches it lazily. */
export async function unmountFuse(mountPoint: string, { signal }: { signal?: AbortSignal } = {}): Promise<void> {
  let last: unknown;
  for (let i = 0; i < 20; i++) {
    if (!(await mountPoints()).has(mountPoint)) return;
    try {
      await exec('fusermount3', ['-u', mountPoint], signal ? { signal } : {});
      return;
    } catch (err) {
      last = err;
      await sleep(100);
    }
  }
  // Still busy after 2 s: a lazy unmount at least frees the path; the kernel finishes when the last user goes.
  try {
    await exec('fusermount3', ['-u', '-z', mountPoint], signal ? { signal } : {});
  } catch (err) {
    throw new BlockdevError('BlockdevCommandFailed', `Cannot unmount ${mountPoint}: ${(last as Error | undefined)?.message ?? (err as Error).message}`, { cause: err });
  }
}

/**
 * Removes leftovers of an earlier run for one volume: the symlink `link` (when it is a symlink), the loop devices
 * backed by `file`, and a FUSE mount on `file`. Loop devices the symlink points to but that are backed by some
 * other file are left alone: they are not ours.
 */
export async function cleanupStale(link: string, file: string, opts: { signal?: AbortSignal; log?: (line: string) => void } = {}): Promise<void> {
  const sig = opts.signal ? { signal: opts.signal } : {};
  for (const loop of await loopsBackedBy(file, sig)) {
    opts.log?.(`blockdev: detaching ${loop}, left attached to ${file} by an earlier run`);
    await detachLoop(loop, sig);
  }
  if ((await mountPoints()).has(file)) {
    opts.log?.(`blockdev: unmounting ${file}, left mounted by an earlier run`);
    await unmountFuse(file, sig);
  }
  const st = await lstat(link).catch(() => undefined);
  if (st?.isSymbolicLink()) {
    opts.log?.(`blockdev: removing stale link ${link} -> ${await readlink(link).catch(() => '?')}`);
    await unlink(link).catch(ignoreNotFound);
  } else if (st) {
    throw new BlockdevError('BlockdevInvalidArgument', `Cannot create ${link}: something that is not a symlink is there; remove it first`);
  }
}

export async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

export function ignoreNotFound(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}
