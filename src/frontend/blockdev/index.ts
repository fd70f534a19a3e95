// blockdev frontend: a volume as a block device path (Longhorn's `blockdev` frontend). Kernel NBD is not assumed:
// the NBD export is exposed by nbdfuse as a file, turned into a loop device, and named <deviceDir>/<volume> by a
// symlink. Needs root, /dev/loop-control, /dev/fuse, nbdfuse, losetup and fusermount3 (blockdevUnavailable() says
// which is missing).

export { NbdLoopDevice, blockdevUnavailable } from './device.js';
export type { NbdLoopDeviceOptions } from './device.js';
export { BlockdevError, isBlockdevError } from './errors.js';
export type { BlockdevErrorCode } from './errors.js';
export { cleanupStale } from './stale.js';
