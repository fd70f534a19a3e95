// Growing a volume's filesystem to its device after an expansion (volumes are expanded offline: the device is larger
// at the next attach). Done at mount time, before mounting, for ext2/3/4: `e2fsck -f -p` then `resize2fs DEVICE`.
// Offline rather than online (resize2fs on the mounted filesystem) because the device is ours alone at that moment
// (the volume is attached to this node only, and not mounted yet), resize2fs itself asks for a fresh forced check
// before an offline grow, and a filesystem e2fsck cannot repair on its own (`-p` exits with bit 4) is neither grown
// nor mounted: growing a damaged filesystem can make it worse. xfs grows only while mounted: `xfs_growfs` runs after
// the mount.

import { stat } from 'node:fs/promises';
import { AgentError } from './errors.js';

export type Exec = (cmd: string, args: string[], signal: AbortSignal) => Promise<{ code: number; stdout: string; stderr: string }>;

/** Bytes of a block device (`blockdev --getsize64`), or of a regular file (an image, in tests). */
export async function deviceBytes(exec: Exec, device: string, signal: AbortSignal): Promise<number> {
  const st = await stat(device);
  if (!st.isBlockDevice()) return st.size;
  const r = await exec('blockdev', ['--getsize64', device], signal);
  const n = Number(r.stdout.trim());
  if (r.code !== 0 || !Number.isSafeInteger(n)) throw new AgentError('VolumeMountFailed', `Cannot read the size of ${device}: blockdev exited with ${r.code}: ${r.stderr.trim()}`);
  return n;
}

/** The size of an ext2/3/4 filesystem from `dumpe2fs -h` output (block count × block size), or undefined. */
export function ext4Bytes(dumpe2fsHeader: string): number | undefined {
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)\\s*$`, 'm').exec(dumpe2fsHeader)?.[1] ?? NaN);
  const bytes = field('Block count') * field('Block size');
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
}

/**
 * Grows the ext2/3/4 filesystem on `device` (not mounted) to the device's size when the device is larger; returns
 * what it did for the log, or undefined when there was nothing to do.
 */
export async function growExtFilesystem(exec: Exec, device: string, signal: AbortSignal): Promise<string | undefined> {
  const head = await exec('dumpe2fs', ['-h', device], signal);
  const fs = ext4Bytes(head.stdout);
  if (head.code !== 0 || fs === undefined) throw new AgentError('VolumeMountFailed', `Cannot read the filesystem size on ${device}: dumpe2fs exited with ${head.code}: ${head.stderr.trim()}`);
  const dev = await deviceBytes(exec, device, signal);
  // Less than one 4 KiB block of difference is not worth a check of the whole filesystem.
  if (dev - fs < 4096) return undefined;
  // e2fsck -p: 0 clean, 1 errors corrected, 2 corrected and reboot advised (not for an unmounted device); 4 and up:
  // errors left, or it failed.
  const fsck = await exec('e2fsck', ['-f', '-p', device], signal);
  if (fsck.code >= 4) {
    throw new AgentError('VolumeMountFailed', `The filesystem on ${device} grew to ${dev} bytes but needs a manual check first: e2fsck -f -p exited with ${fsck.code}: ${(fsck.stderr || fsck.stdout).trim()}; run e2fsck -f on it (the volume attached without a pod) and start the pod again`);
  }
  const r = await exec('resize2fs', [device], signal);
  if (r.code !== 0) throw new AgentError('VolumeMountFailed', `Cannot grow the filesystem on ${device} from ${fs} to ${dev} bytes: resize2fs exited with ${r.code}: ${r.stderr.trim()}`);
  return `grew the filesystem on ${device} from ${fs} to ${dev} bytes`;
}
