// Disks of a node: the `--disk PATH[:tag,tag]` flags, the identity file Longhorn keeps on each disk, and the
// `status.diskStatus` entry the agent reports for it.
//
// Identity: `PATH/longhorn-disk.cfg` holds `{"diskName": …, "diskUUID": …}` as in Longhorn. It is created once
// and reused across agent restarts; its UUID is what the Node records. When the file disagrees with the
// recorded UUID (the path now points at another filesystem, or the file was replaced), the disk is reported not
// Ready instead of silently becoming "the same disk" with other data.

import { randomUUID } from 'node:crypto';
import { readFile, rename, stat, statfs, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import type { Condition } from '../api/meta.js';
import { DiskCondition, type DiskSpec, type DiskStatus } from '../api/node.js';
import { setCondition } from '../api/node-contract.js';
import { DISK_CONFIG_FILE } from '../api/disk-layout.js';
import { AgentError } from './errors.js';

export { DISK_CONFIG_FILE };

export interface DiskFlag {
  path: string;
  /** Undefined when the flag gave none (then the Node's tags are left as they are). */
  tags: string[] | undefined;
}

/** `PATH[:tag,tag]`: the last ':' starts the tags when what follows has no '/'. */
export function parseDiskFlag(text: string, cwd = process.cwd()): DiskFlag {
  const i = text.lastIndexOf(':');
  const hasTags = i > 0 && !text.slice(i + 1).includes('/');
  const path = hasTags ? text.slice(0, i) : text;
  if (path === '') throw new AgentError('InvalidArgument', `--disk "${text}" names no path`);
  const tags = hasTags ? text.slice(i + 1).split(',').map((t) => t.trim()).filter(Boolean) : undefined;
  for (const t of tags ?? []) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(t)) throw new AgentError('InvalidArgument', `--disk "${text}": tag "${t}" may only hold letters, digits, '.', '_' and '-'`);
  }
  return { path: isAbsolute(path) ? resolve(path) : resolve(cwd, path), tags };
}

export interface DiskConfig {
  diskName: string;
  diskUUID: string;
}

/** Reads the disk's identity file; undefined when absent, throws when unreadable or malformed. */
export async function readDiskConfig(path: string): Promise<DiskConfig | undefined> {
  let text: string;
  try {
    text = await readFile(join(path, DISK_CONFIG_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const v = JSON.parse(text) as Partial<DiskConfig>;
  if (typeof v.diskUUID !== 'string' || v.diskUUID === '') throw new Error(`${DISK_CONFIG_FILE} has no diskUUID`);
  return { diskName: typeof v.diskName === 'string' ? v.diskName : '', diskUUID: v.diskUUID };
}

export async function writeDiskConfig(path: string, cfg: DiskConfig): Promise<void> {
  const tmp = join(path, `${DISK_CONFIG_FILE}.tmp-${process.pid}`);
  await writeFile(tmp, JSON.stringify(cfg));
  await rename(tmp, join(path, DISK_CONFIG_FILE));
}

/** What looking at a disk found: its identity and space, or why it cannot be used. */
export type DiskProbe =
  | { ok: true; uuid: string; maximum: number; available: number }
  | { ok: false; reason: string; message: string; uuid?: string };

/**
 * Looks at a disk: creates its identity file when the Node has no UUID for it yet, checks it against the
 * recorded UUID otherwise, and measures its space with statfs.
 */
export async function probeDisk(o: { nodeName: string; diskName: string; path: string; recordedUUID: string | undefined }): Promise<DiskProbe> {
  const where = `disk ${o.diskName} (${o.path}) on ${o.nodeName}`;
  const st = await stat(o.path).catch(() => undefined);
  if (!st?.isDirectory()) {
    return { ok: false, reason: 'DiskNotFound', message: `${where}: the path does not exist or is not a directory; create it or fix spec.disks.${o.diskName}.path` };
  }
  let cfg: DiskConfig | undefined;
  try {
    cfg = await readDiskConfig(o.path);
  } catch (err) {
    return { ok: false, reason: 'NoDiskInfo', message: `${where}: cannot read ${DISK_CONFIG_FILE}: ${(err as Error).message}; restore the file or remove the disk and add it again` };
  }
  if (cfg === undefined) {
    if (o.recordedUUID) {
      return {
        ok: false,
        reason: 'DiskFilesystemChanged',
        uuid: o.recordedUUID,
        message: `${where}: ${DISK_CONFIG_FILE} is missing but the node recorded diskUUID ${o.recordedUUID}; the path may now be another ` +
          `filesystem (an unmounted disk?): mount the original disk, or remove ${o.diskName} from spec.disks and add it again`,
      };
    }
    cfg = { diskName: o.diskName, diskUUID: randomUUID() };
    try {
      await writeDiskConfig(o.path, cfg);
    } catch (err) {
      return { ok: false, reason: 'NoDiskInfo', message: `${where}: cannot write ${DISK_CONFIG_FILE}: ${(err as Error).message}` };
    }
  } else if (o.recordedUUID && cfg.diskUUID !== o.recordedUUID) {
    return {
      ok: false,
      reason: 'DiskFilesystemChanged',
      uuid: o.recordedUUID,
      message: `${where}: ${DISK_CONFIG_FILE} holds diskUUID ${cfg.diskUUID} but the node recorded ${o.recordedUUID}; the path now points at ` +
        `another disk or the file was replaced: restore the original disk, or remove ${o.diskName} from spec.disks and add it again`,
    };
  }
  try {
    const fs = await statfs(o.path);
    return { ok: true, uuid: cfg.diskUUID, maximum: fs.blocks * fs.bsize, available: fs.bavail * fs.bsize };
  } catch (err) {
    return { ok: false, reason: 'NoDiskInfo', uuid: cfg.diskUUID, message: `${where}: statfs failed: ${(err as Error).message}` };
  }
}

export interface DiskStatusInput {
  nodeName: string;
  diskName: string;
  spec: DiskSpec;
  old: DiskStatus | undefined;
  probe: DiskProbe;
  /** Setting storage-minimal-available-percentage. */
  minimalAvailablePercent: number;
  now: string;
}

/**
 * The disk's status entry: the agent's fields over what others wrote (scheduledReplica, scheduledBackingImage
 * and storageScheduled belong to the schedulers and are kept).
 */
export function diskStatusFor(i: DiskStatusInput): DiskStatus {
  const where = `disk ${i.diskName} (${i.spec.path ?? ''}) on ${i.nodeName}`;
  const out: DiskStatus = {
    ...i.old,
    diskName: i.diskName,
    diskPath: i.spec.path ?? '',
    diskType: i.spec.diskType ?? 'filesystem',
    diskDriver: i.old?.diskDriver ?? '',
    diskUUID: i.probe.ok ? i.probe.uuid : (i.probe.uuid ?? i.old?.diskUUID ?? ''),
    storageAvailable: i.probe.ok ? i.probe.available : 0,
    storageMaximum: i.probe.ok ? i.probe.maximum : (i.old?.storageMaximum ?? 0),
    storageScheduled: i.old?.storageScheduled ?? 0,
    scheduledReplica: i.old?.scheduledReplica ?? {},
    scheduledBackingImage: i.old?.scheduledBackingImage ?? {},
  };
  let conds: Condition[] = (i.old?.conditions ?? []).map((c) => ({ ...c }));
  if (!i.probe.ok) {
    conds = setCondition(conds, { type: DiskCondition.ready, status: 'False', reason: i.probe.reason, message: i.probe.message }, i.now);
    conds = setCondition(conds, { type: DiskCondition.schedulable, status: 'False', reason: 'DiskNotReady', message: `${where} is not ready` }, i.now);
  } else {
    conds = setCondition(conds, { type: DiskCondition.ready, status: 'True', reason: '', message: `${where} is ready` }, i.now);
    const usable = (i.probe.maximum * i.minimalAvailablePercent) / 100;
    if (i.probe.available <= usable) {
      conds = setCondition(conds, {
        type: DiskCondition.schedulable,
        status: 'False',
        reason: 'DiskPressure',
        message: `${where} has ${gib(i.probe.available)} available of ${gib(i.probe.maximum)}, not above ` +
          `storage-minimal-available-percentage ${i.minimalAvailablePercent}%: free space or lower the setting`,
      }, i.now);
    } else {
      conds = setCondition(conds, { type: DiskCondition.schedulable, status: 'True', reason: '', message: `${where} is schedulable` }, i.now);
    }
  }
  out.conditions = conds;
  return out;
}

/**
 * Marks every disk after the first that reports the same UUID as another disk of the node (two paths into one
 * filesystem would count its space twice).
 */
export function flagDuplicateDisks(probes: Map<string, DiskProbe>): void {
  const seen = new Map<string, string>();
  for (const [name, p] of probes) {
    if (!p.ok) continue;
    const first = seen.get(p.uuid);
    if (first === undefined) {
      seen.set(p.uuid, name);
      continue;
    }
    probes.set(name, {
      ok: false,
      reason: 'DiskFilesystemChanged',
      uuid: p.uuid,
      message: `disk ${name} is the same disk as ${first} (both hold diskUUID ${p.uuid}); remove one of them from spec.disks`,
    });
  }
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}
