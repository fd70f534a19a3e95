// Which disks must hold a copy of a backing image (`spec.diskFileSpecMap`), decided in one pure function:
//   1. the data source's disk while the first file is being prepared;
//   2. every disk where a replica uses the image;
//   3. one more healthy copy per pass while fewer than minNumberOfCopies are healthy (best disk by failure domain,
//      then free space; the copy must leave more than storage-minimal-available-percentage of its disk free);
//   4. minus copies no replica has used for `backing-image-cleanup-wait-interval`, never going below
//      minNumberOfCopies (Longhorn's ready / in-progress / failed floor);
//   5. minus evicted copies (the copy's own evictionRequested, its disk's or node's, or a disk no node has): they do not count as healthy,
//      so step 3 makes copies elsewhere (a ready evicted copy is still a source), and each is removed once no replica
//      uses it and minNumberOfCopies copies are ready on other disks.
// It also maintains `status.diskLastRefAtMap` (when each unused copy was last used).

import type { BackingImage, BackingImageDiskFileSpec, BackingImageDiskFileStatus } from '../../api/backing-image.js';
import type { BackingImageDataSource } from '../../api/backing-image-data-source.js';
import type { DeepReadonly } from '../../api/meta.js';
import { minimalAvailableBytes, rankDisks, type DiskCandidate } from '../scheduling.js';
import { isUnhealthy } from './status.js';

export interface CopyInputs {
  bi: DeepReadonly<BackingImage>;
  bids: DeepReadonly<BackingImageDataSource> | undefined;
  /** The freshly computed per-disk file states. */
  fileStatus: Readonly<Record<string, BackingImageDiskFileStatus>>;
  /** Disks where some replica uses this image. */
  usedDisks: ReadonlySet<string>;
  candidates: readonly DiskCandidate[];
  /** Disk UUID → node name, for every known disk. */
  nodeOfDisk: ReadonlyMap<string, string>;
  /** Disks whose disk or node asks for eviction (`evictionRequested`). */
  evictingDisks?: ReadonlySet<string>;
  minCopies: number;
  /** `storage-minimal-available-percentage`: a new copy must leave more than this share of its disk free. */
  minimalAvailablePercent?: number;
  replenishEnabled: boolean;
  cleanupWaitMs: number;
  now: Date;
}

export interface CopyDecision {
  diskFileSpecMap: Record<string, BackingImageDiskFileSpec>;
  diskLastRefAtMap: Record<string, string>;
  added: { disk: string; why: string }[];
  removed: { disk: string; why: string }[];
  /** When the next unused copy becomes old enough to clean up. */
  requeueAfterMs: number | undefined;
}

type Bucket = 'ready' | 'handling' | 'failed';
const bucketOf = (s: string | undefined): Bucket =>
  s === 'ready' || s === 'ready-for-transfer' ? 'ready' : s === 'failed' || s === 'failed-and-cleanup' ? 'failed' : 'handling';

export function decideCopies(inp: CopyInputs): CopyDecision {
  const { bi, bids, fileStatus, usedDisks, now } = inp;
  const map: Record<string, BackingImageDiskFileSpec> = structuredClone({ ...(bi.spec?.diskFileSpecMap ?? {}) }) as Record<string, BackingImageDiskFileSpec>;
  const added: CopyDecision['added'] = [];
  const removed: CopyDecision['removed'] = [];
  const transferred = bids?.spec?.fileTransferred === true;
  const sourceDisk = !transferred ? bids?.spec?.diskUUID : undefined;
  const add = (disk: string, why: string) => {
    if (map[disk]) return;
    map[disk] = { dataEngine: 'v1' };
    added.push({ disk, why });
  };

  if (sourceDisk) add(sourceDisk, 'the first file is prepared there');
  for (const disk of usedDisks) add(disk, 'a replica uses the image there');

  const min = Math.max(1, inp.minCopies);
  // A disk no node has any more (removed before this check existed, or by hand) is as good as evicted.
  const evicted = (d: string) => map[d]?.evictionRequested === true || inp.evictingDisks?.has(d) === true || !inp.nodeOfDisk.has(d);
  if (transferred && inp.replenishEnabled) {
    const healthy = Object.keys(map).filter((d) => !isUnhealthy(fileStatus[d]?.state) && !evicted(d));
    // With no healthy copy, an evicted ready one is still a source to copy from.
    const source = healthy.length > 0 || Object.keys(map).some((d) => fileStatus[d]?.state === 'ready');
    if (source && healthy.length < min) {
      const nodesWithCopy = new Set(Object.keys(map).map((d) => inp.nodeOfDisk.get(d) ?? ''));
      const size = bi.status?.size ?? 0;
      const roomy = inp.candidates.filter((c) => c.free - size > minimalAvailableBytes(c, inp.minimalAvailablePercent ?? 0));
      const best = rankDisks(roomy, {
        nodeSelector: bi.spec?.nodeSelector,
        diskSelector: bi.spec?.diskSelector,
        excludeDisks: new Set(Object.keys(map)),
        avoidNodes: nodesWithCopy,
      })[0];
      if (best) add(best.diskUUID, `${healthy.length} healthy of minNumberOfCopies ${min}`);
    }
  }

  if (transferred) {
    const readyElsewhere = Object.keys(map).filter((d) => !evicted(d) && fileStatus[d]?.state === 'ready').length;
    for (const disk of Object.keys(map)) {
      if (!evicted(disk) || usedDisks.has(disk) || readyElsewhere < min) continue;
      delete map[disk];
      const why = inp.nodeOfDisk.has(disk) ? 'evicted' : 'no node has this disk';
      removed.push({ disk, why: `${why}: ${readyElsewhere} ready cop${readyElsewhere === 1 ? 'y is' : 'ies are'} on other disks` });
    }
  }

  // When each copy was last used; used copies have no entry.
  const lastRef: Record<string, string> = {};
  const stamp = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  for (const disk of Object.keys(map)) {
    if (usedDisks.has(disk)) continue;
    lastRef[disk] = bi.status?.diskLastRefAtMap?.[disk] ?? stamp;
  }

  let requeueAfterMs: number | undefined;
  if (transferred) {
    const count: Record<Bucket, number> = { ready: 0, handling: 0, failed: 0 };
    for (const d of Object.keys(map)) count[bucketOf(fileStatus[d]?.state)]++;
    // Failed copies go first, then in-progress ones, then ready ones: the floor protects the useful ones longest.
    const order: Bucket[] = ['failed', 'handling', 'ready'];
    const unused = Object.keys(lastRef).sort((a, b) => order.indexOf(bucketOf(fileStatus[a]?.state)) - order.indexOf(bucketOf(fileStatus[b]?.state)));
    for (const disk of unused) {
      const since = Date.parse(lastRef[disk] ?? '');
      const due = since + inp.cleanupWaitMs - now.getTime();
      if (due > 0) {
        requeueAfterMs = requeueAfterMs === undefined ? due : Math.min(requeueAfterMs, due);
        continue;
      }
      const b = bucketOf(fileStatus[disk]?.state);
      const keep = b === 'ready' ? count.ready : b === 'handling' ? count.ready + count.handling : count.ready + count.handling + count.failed;
      if (min >= keep) continue;
      delete map[disk];
      delete lastRef[disk];
      count[b]--;
      removed.push({ disk, why: `unused for ${Math.round((now.getTime() - since) / 60000)} min (backing-image-cleanup-wait-interval)` });
    }
  }
  return { diskFileSpecMap: map, diskLastRefAtMap: lastRef, added, removed, requeueAfterMs };
}
