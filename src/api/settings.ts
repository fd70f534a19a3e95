// The catalogue of Settings (the `Setting` resources in longhorn-system): name, default, type, bounds and meaning.
// Names and defaults are Longhorn's (types/setting.go) unless marked `stratum: true`; Stratum's additions carry
// the knobs Longhorn hard-codes (heartbeat timeout, copy retry backoff, download URL policy).

import { ModelError } from './errors.js';

export type SettingType = 'int' | 'bool' | 'string' | 'deprecated';

export interface SettingDefinition {
  name: string;
  /** Default value, as stored in `Setting.value` (always a string). */
  default: string;
  type: SettingType;
  /** Inclusive bounds for `int` settings. */
  min?: number;
  max?: number;
  /** Allowed values for enumerated `string` settings. */
  options?: readonly string[];
  /** Unit of an `int` setting, for help texts. */
  unit?: 'seconds' | 'minutes' | 'hours' | 'percent' | 'MiB/s';
  /** Set by Stratum itself (from the release, see src/release): every API refuses user changes; only an upgrade does. */
  readOnly: boolean;
  description: string;
  /** True when the setting is Stratum's addition and does not exist in Longhorn. */
  stratum: boolean;
}

function def(d: Omit<SettingDefinition, 'readOnly' | 'stratum'> & Partial<SettingDefinition>): SettingDefinition {
  return { readOnly: false, stratum: false, ...d };
}

export const SETTINGS: readonly SettingDefinition[] = [
  // Backing images.
  def({ name: 'backing-image-cleanup-wait-interval', default: '60', type: 'int', min: 0, unit: 'minutes',
    description: 'How long an unused backing image copy is kept on a disk before it is cleaned up.' }),
  def({ name: 'backing-image-recovery-wait-interval', default: '300', type: 'int', min: 0, unit: 'seconds',
    description: 'How long all copies of a downloaded backing image must stay failed before it is downloaded again.' }),
  def({ name: 'concurrent-backing-image-replenish-per-node-limit', default: '5', type: 'int', min: 0,
    description: 'Copy syncs in progress per node at most; 0 disables replenishing (the first copy is still made).' }),
  def({ name: 'default-min-number-of-backing-image-copies', default: '1', type: 'int', min: 1,
    description: 'minNumberOfCopies given to a backing image created without one.' }),
  def({ name: 'default-backing-image-manager-image', default: 'stratum-bim:v1', type: 'string', readOnly: true,
    description: 'Image of the backing-image-manager pods; managers of other images are retired after an upgrade.' }),
  def({ name: 'backing-image-copy-retry-backoff-min', default: '60', type: 'int', min: 1, unit: 'seconds',
    stratum: true, description: 'First wait before a failed backing image copy is synced again.' }),
  def({ name: 'backing-image-copy-retry-backoff-max', default: '300', type: 'int', min: 1, unit: 'seconds',
    stratum: true, description: 'Longest wait between retries of a failed backing image copy.' }),
  def({ name: 'backing-image-scrub-interval', default: '168', type: 'int', min: 0, unit: 'hours', stratum: true,
    description: 'How often each ready backing image copy is read again and checked against its SHA-512; changed chunks are repaired from another copy. 0 turns scrubbing off.' }),
  def({ name: 'backing-image-scrub-bandwidth', default: '64', type: 'int', min: 1, unit: 'MiB/s', stratum: true,
    description: 'How fast a scrub reads a backing image copy (one copy at a time per disk), so volumes on the disk keep their I/O.' }),
  def({ name: 'allow-private-download-urls', default: 'false', type: 'bool', stratum: true,
    description: 'Allow download-type backing images from loopback, link-local and private network addresses.' }),
  def({ name: 'replica-file-sync-http-client-timeout', default: '30', type: 'int', min: 5, max: 120,
    unit: 'seconds', description: 'HTTP client timeout of replica file syncs, also used by export-from-volume.' }),
  def({ name: 'backup-concurrent-limit', default: '2', type: 'int', min: 1,
    description: 'Default concurrent-limit of restore-type backing images.' }),

  // Volumes, replicas and scheduling.
  def({ name: 'default-replica-count', default: '3', type: 'int', min: 1, max: 20,
    description: 'numberOfReplicas given to a volume created without one.' }),
  def({ name: 'default-data-locality', default: 'disabled', type: 'string',
    options: ['disabled', 'best-effort', 'strict-local'],
    description: 'dataLocality given to a volume created without one.' }),
  def({ name: 'default-data-path', default: '/var/lib/longhorn/', type: 'string',
    description: 'Path of the default disk registered on a node that has no disks yet.' }),
  def({ name: 'replica-soft-anti-affinity', default: 'false', type: 'bool',
    description: 'Allow replicas of one volume on the same node when no other node fits.' }),
  def({ name: 'replica-zone-soft-anti-affinity', default: 'true', type: 'bool',
    description: 'Allow replicas of one volume in the same zone when no other zone fits.' }),
  def({ name: 'replica-disk-soft-anti-affinity', default: 'true', type: 'bool',
    description: 'Allow replicas of one volume on the same disk when no other disk fits.' }),
  def({ name: 'storage-over-provisioning-percentage', default: '100', type: 'int', min: 0, unit: 'percent',
    description: 'Scheduled storage allowed on a disk, as a percentage of its usable size.' }),
  def({ name: 'storage-minimal-available-percentage', default: '25', type: 'int', min: 0, max: 100,
    unit: 'percent', description: 'A disk below this share of free space takes no new replicas.' }),
  def({ name: 'allow-empty-node-selector-volume', default: 'true', type: 'bool',
    description: 'Allow volumes and backing images without a node selector on nodes that have tags.' }),
  def({ name: 'allow-empty-disk-selector-volume', default: 'true', type: 'bool',
    description: 'Allow volumes and backing images without a disk selector on disks that have tags.' }),

  // Nodes, instance managers and upgrades.
  def({ name: 'default-instance-manager-image', default: 'stratum-im:v1', type: 'string', readOnly: true,
    description: 'Image of the instance-manager pods that host replicas and engines.' }),
  def({ name: 'default-engine-image', default: 'stratum-engine:v1', type: 'string', readOnly: true,
    description: 'Engine image new volumes use; an upgrade moves volumes to it (see the per-node limit below).' }),
  def({ name: 'concurrent-automatic-engine-upgrade-per-node-limit', default: '0', type: 'int', min: 0,
    description: 'Volumes per node moved to the default engine image at a time; 0 disables automatic upgrade.' }),
  def({ name: 'node-down-timeout', default: '30', type: 'int', min: 1, unit: 'seconds', stratum: true,
    description: 'How long a node may miss heartbeats before its Ready condition turns False.' }),
];

const byName = new Map(SETTINGS.map((s) => [s.name, s]));

export function settingDefinition(name: string): SettingDefinition | undefined {
  return byName.get(name);
}

/** The default value of a known setting, or undefined for an unknown name. */
export function settingDefault(name: string): string | undefined {
  return byName.get(name)?.default;
}

const DATA_ENGINES = ['v1', 'v2'];

/**
 * Why `value` is not acceptable for setting `name`, or undefined when it is. Longhorn also accepts a JSON object
 * keyed by data engine (`{"v1":"3","v2":"1"}`); each member is then checked.
 */
export function validateSettingValue(name: string, value: string): string | undefined {
  const d = byName.get(name);
  if (d === undefined) return `unknown setting "${name}"`;
  if (d.type !== 'string' && value.trimStart().startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      return `value ${JSON.stringify(value)} is neither a plain value nor a valid JSON object`;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      return 'a per-data-engine value must be a JSON object such as {"v1":"…"}';
    }
    for (const [engine, v] of Object.entries(parsed)) {
      if (!DATA_ENGINES.includes(engine)) return `unknown data engine "${engine}" (expected v1 or v2)`;
      if (typeof v !== 'string') return `value for data engine ${engine} must be a string`;
      const err = checkPlain(d, v);
      if (err !== undefined) return `${engine}: ${err}`;
    }
    return undefined;
  }
  return checkPlain(d, value);
}

function checkPlain(d: SettingDefinition, value: string): string | undefined {
  switch (d.type) {
    case 'deprecated':
      return undefined;
    case 'bool':
      return value === 'true' || value === 'false' ? undefined : `value ${JSON.stringify(value)} must be "true" or "false"`;
    case 'int': {
      if (!/^-?[0-9]+$/.test(value)) return `value ${JSON.stringify(value)} must be an integer`;
      const n = Number(value);
      if (d.min !== undefined && n < d.min) return `value ${n} must be at least ${d.min}`;
      if (d.max !== undefined && n > d.max) return `value ${n} must be at most ${d.max}`;
      return undefined;
    }
    case 'string':
      if (d.options !== undefined && !d.options.includes(value)) {
        return `value ${JSON.stringify(value)} must be one of ${d.options.map((o) => JSON.stringify(o)).join(', ')}`;
      }
      if (d.readOnly && value.trim() === '') return 'value must not be empty';
      return undefined;
  }
}

/** Picks the value for one data engine out of a possibly per-engine setting value. */
export function settingValueFor(value: string, dataEngine = 'v1'): string {
  if (!value.trimStart().startsWith('{')) return value;
  try {
    const parsed = JSON.parse(value) as Record<string, unknown>;
    const v = parsed[dataEngine];
    return typeof v === 'string' ? v : value;
  } catch {
    return value;
  }
}

/**
 * Reads an integer setting through `lookup` (e.g. DefaultingContext.setting), falling back to the catalogue
 * default when unset or unparsable, so a bad stored value can never turn into NaN in a controller.
 */
export function settingInt(name: string, lookup: (name: string) => string | undefined, dataEngine = 'v1'): number {
  const raw = lookup(name);
  if (raw !== undefined && validateSettingValue(name, raw) === undefined) {
    const n = Number(settingValueFor(raw, dataEngine));
    if (Number.isInteger(n)) return n;
  }
  const fallback = Number(settingDefault(name));
  if (!Number.isInteger(fallback)) throw new ModelError('UnknownSetting', `Setting "${name}" is not a known integer setting`);
  return fallback;
}

/** Reads a boolean setting the same way as settingInt. */
export function settingBool(name: string, lookup: (name: string) => string | undefined, dataEngine = 'v1'): boolean {
  const raw = lookup(name);
  if (raw !== undefined && validateSettingValue(name, raw) === undefined) {
    return settingValueFor(raw, dataEngine) === 'true';
  }
  const fallback = settingDefault(name);
  if (fallback !== 'true' && fallback !== 'false') {
    throw new ModelError('UnknownSetting', `Setting "${name}" is not a known boolean setting`);
  }
  return fallback === 'true';
}
