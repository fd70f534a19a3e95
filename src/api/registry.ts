// The list of every kind Stratum serves and the lookups the API server, store and CLI need: by kind, by
// (group, plural) for URLs, by any name a kubectl user might type (`lhbi`, `backingimage`,
// `backingimages.longhorn.io`), and conversion of other served versions to the storage version.

import { backingImageInfo } from './backing-image.js';
import { backingImageDataSourceInfo } from './backing-image-data-source.js';
import { backingImageManagerInfo } from './backing-image-manager.js';
import { engineInfo } from './engine.js';
import { engineImageInfo } from './engine-image.js';
import { ModelError } from './errors.js';
import { eventInfo } from './event.js';
import { instanceManagerInfo } from './instance-manager.js';
import type { KindInfo } from './kind.js';
import { leaseInfo } from './lease.js';
import type { KubeObject } from './meta.js';
import { nodeInfo } from './node.js';
import { podInfo } from './pod.js';
import { replicaInfo } from './replica.js';
import { persistentVolumeInfo } from './persistent-volume.js';
import { persistentVolumeClaimInfo } from './persistent-volume-claim.js';
import { serviceInfo } from './service.js';
import { settingInfo } from './setting-resource.js';
import { statefulSetInfo } from './stateful-set.js';
import { storageClassInfo } from './storage-class.js';
import { volumeInfo } from './volume.js';

const KINDS: readonly KindInfo[] = [
  backingImageInfo,
  backingImageDataSourceInfo,
  backingImageManagerInfo,
  volumeInfo,
  engineInfo,
  replicaInfo,
  nodeInfo,
  settingInfo,
  engineImageInfo,
  instanceManagerInfo,
  podInfo,
  eventInfo,
  leaseInfo,
  storageClassInfo,
  persistentVolumeClaimInfo,
  persistentVolumeInfo,
  statefulSetInfo,
  serviceInfo,
];

const byKind = new Map(KINDS.map((k) => [k.kind, k]));
const byGroupPlural = new Map(KINDS.map((k) => [`${k.group}/${k.plural}`, k]));

/** Every lower-case name that resolves to a kind; core kinds are listed first so they win any clash. */
const byAlias = new Map<string, KindInfo>();
for (const k of [...KINDS].sort((a, b) => Number(a.group !== '') - Number(b.group !== ''))) {
  const names = [k.plural, k.singular, k.kind.toLowerCase(), ...k.shortNames];
  const qualified = k.group === '' ? [] : [k.plural, k.singular, k.kind.toLowerCase()].flatMap((n) => [
    `${n}.${k.group}`,
    `${n}.${k.version}.${k.group}`,
  ]);
  for (const n of [...names, ...qualified].map((x) => x.toLowerCase())) if (!byAlias.has(n)) byAlias.set(n, k);
}

/** Every kind, in a stable order (Longhorn kinds, then core). */
export function allKinds(): readonly KindInfo[] {
  return KINDS;
}

/**
 * The kind for a kind name (`BackingImage`, exact) or for what a user typed, case-insensitively, as kubectl
 * resolves it: a short name (`lhbi`, `po`), singular, plural, kind, or any of those qualified by group
 * (`backingimages.longhorn.io`) or by version and group (`backingimages.v1beta2.longhorn.io`).
 */
export function findKind(name: string): KindInfo | undefined {
  return byKind.get(name) ?? byAlias.get(name.toLowerCase());
}

/** The kind served at `/apis/<group>/<version>/.../<plural>` (group '' for core `/api/v1`). */
export function findKindByResource(group: string, plural: string): KindInfo | undefined {
  return byGroupPlural.get(`${group}/${plural}`);
}

/** `longhorn.io/v1beta2` for Longhorn kinds, `v1` for core kinds. Throws ModelError `UnknownKind`. */
export function apiVersionOf(kind: string | KindInfo): string {
  const info = typeof kind === 'string' ? byKind.get(kind) : kind;
  if (info === undefined) throw new ModelError('UnknownKind', `Unknown kind "${String(kind)}"`);
  return info.group === '' ? info.version : `${info.group}/${info.version}`;
}

function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const i = apiVersion.lastIndexOf('/');
  return i < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, i), version: apiVersion.slice(i + 1) };
}

/** Every version served for `info`, storage version first. */
export function servedVersions(info: KindInfo): string[] {
  return [info.version, ...(info.otherVersions ?? []).map((v) => v.version)];
}

/** The kind for an object's apiVersion and kind, if that version is served (storage or other). */
export function kindForObject(apiVersion: string, kind: string): KindInfo | undefined {
  const info = byKind.get(kind);
  if (info === undefined) return undefined;
  const { group, version } = splitApiVersion(apiVersion);
  return group === info.group && servedVersions(info).includes(version) ? info : undefined;
}

/**
 * Returns `obj` in the storage version of `info`: unchanged when it already is, converted (a new object) when it
 * is another served version. Throws ModelError `UnsupportedVersion` for anything else.
 */
export function convertToStorage(info: KindInfo, obj: KubeObject): KubeObject {
  const { group, version } = splitApiVersion(obj.apiVersion);
  if (group === info.group && version === info.version) return obj;
  const other = group === info.group ? info.otherVersions?.find((v) => v.version === version) : undefined;
  if (other === undefined) {
    throw new ModelError(
      'UnsupportedVersion',
      `Cannot accept ${info.kind} "${obj.metadata.name ?? ''}": apiVersion "${obj.apiVersion}" is not served ` +
        `(served: ${servedVersions(info).map((v) => (info.group === '' ? v : `${info.group}/${v}`)).join(', ')})`,
    );
  }
  const converted = other.toStorage(obj);
  converted.apiVersion = apiVersionOf(info);
  return converted;
}
