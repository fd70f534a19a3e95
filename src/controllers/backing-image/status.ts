// Computes a BackingImage's status from its sources of truth: the data source (for the first file, until it is
// handed over) and the backing-image managers of the disks in `spec.diskFileSpecMap`. Pure: the controller reads,
// calls this, and writes once if anything changed.

import { parseManifestAnchor, type BackingImage, type BackingImageDiskFileStatus, type BackingImageStatus } from '../../api/backing-image.js';
import type { BackingImageDataSource } from '../../api/backing-image-data-source.js';
import type { BackingImageFileInfo } from '../../api/backing-image-manager.js';
import type { DeepReadonly } from '../../api/meta.js';

export interface StatusInputs {
  bi: DeepReadonly<BackingImage>;
  bids: DeepReadonly<BackingImageDataSource> | undefined;
  /** Disk UUID → this image's file as reported by that disk's (default-image) manager. */
  files: ReadonlyMap<string, DeepReadonly<BackingImageFileInfo>>;
  /** Disk UUID → state of that disk's default-image manager (`running`, `starting`, ...). */
  managers?: ReadonlyMap<string, string>;
  now: Date;
}

const stamp = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

export function computeStatus(inp: StatusInputs): BackingImageStatus {
  const { bi, bids, files, now } = inp;
  const prev = bi.status ?? {};
  const uuid = prev.uuid ?? '';
  const status: BackingImageStatus = structuredClone(prev) as BackingImageStatus;
  const transferred = bids?.spec?.fileTransferred === true;
  const bidsDisk = bids?.spec?.diskUUID;
  const bidsState = bids?.status?.currentState ?? '';

  // The image's checksum: the expected one, else the first file's; it never changes once set.
  if (!status.checksum) {
    const expected = bi.spec?.checksum?.trim().toLowerCase();
    const fromSource = (bidsState === 'ready-for-transfer' || bidsState === 'ready') ? bids?.status?.checksum : undefined;
    const fromCopy = [...files.values()].find((f) => f.state === 'ready' && f.uuid === uuid && f.currentChecksum)?.currentChecksum;
    const first = expected || fromSource || fromCopy;
    if (first) status.checksum = first;
  }
  // The chunk manifest's anchor: only from the data source, which built the manifest in the pass that produced the
  // checksum. A copy's manifest may have come from a peer and was never checked chunk by chunk.
  if (!status.chunkManifestDigest && status.checksum && (bidsState === 'ready-for-transfer' || bidsState === 'ready') && bids?.status?.checksum === status.checksum) {
    const anchor = bids.status.runningParameters?.['chunkManifestDigest'] ?? '';
    if (parseManifestAnchor(anchor)) status.chunkManifestDigest = anchor;
  }

  const map: Record<string, BackingImageDiskFileStatus> = {};
  for (const disk of Object.keys(bi.spec?.diskFileSpecMap ?? {})) {
    const file = files.get(disk);
    const fileUsable = file && file.uuid === uuid;
    let next: BackingImageDiskFileStatus | undefined;
    if (!transferred && disk === bidsDisk && !(fileUsable && file.state === 'ready')) {
      next = { state: bidsState, progress: bids?.status?.progress ?? 0, message: bids?.status?.message ?? '' };
    } else if (fileUsable) {
      next = { state: file.state ?? '', progress: file.progress ?? 0, message: file.message ?? '', ...(file.state === 'ready' && file.verifiedAt ? { verifiedAt: file.verifiedAt } : {}), ...(file.state === 'ready' && file.scrubRequest ? { scrubRequest: file.scrubRequest } : {}) };
      if (file.state === 'ready' && status.checksum && file.currentChecksum && file.currentChecksum !== status.checksum) {
        next = {
          state: 'failed',
          progress: 0,
          message: `checksum mismatch: the image's checksum is ${status.checksum} but this copy has ${file.currentChecksum}`,
        };
      }
    }
    if (!next && transferred && inp.managers?.get(disk) === 'running') {
      // The manager runs and has no file: it is about to sync one, or nothing can be synced. A missing copy
      // with no ready copy anywhere must not look like work in progress forever: it is failed, which the
      // recovery (a new download after backing-image-recovery-wait-interval) acts on.
      const anyReady = [...files.values()].some((f) => f.state === 'ready' && f.uuid === uuid);
      next = anyReady
        ? { state: 'pending', progress: 0, message: 'waiting to sync from a ready copy' }
        : { state: 'failed', progress: 0, message: 'the copy is missing on this disk and no ready copy exists to sync it from' };
    }
    if (!next) continue;
    next.dataEngine = 'v1';
    const before = prev.diskFileStatusMap?.[disk];
    next.lastStateTransitionTime =
      before && before.state === next.state && before.lastStateTransitionTime ? before.lastStateTransitionTime : stamp(now);
    map[disk] = next;
  }
  status.diskFileStatusMap = map;

  // Sizes: from the data source while it is the only file, then from any ready copy.
  const ready = [...files.values()].find((f) => f.state === 'ready' && f.uuid === uuid);
  const size = ready?.size ?? bids?.status?.size;
  if (size && !status.size) status.size = size;
  if (ready?.virtualSize && !status.virtualSize) status.virtualSize = ready.virtualSize;
  if (ready?.realSize) status.realSize = ready.realSize;
  return status;
}

/** States that count as a healthy copy for replenishing (Longhorn: missing counts as healthy). */
export function isUnhealthy(state: string | undefined): boolean {
  return state === 'failed' || state === 'failed-and-cleanup' || state === 'unknown';
}
