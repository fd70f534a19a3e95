// longhorn.io/v1beta1 BackingImage, accepted on write and converted to v1beta2 (the seed test plans still use it).
// v1beta1 had `spec.disks` (disk UUID → empty struct) where v1beta2 has `spec.diskFileSpecMap`, and a deprecated
// `spec.imageURL` that v1beta2 expresses as a download source. Longhorn's own converter (v1.8) appears to write
// into a nil map, so this one is written from the field semantics rather than ported.

import type { KubeObject } from './meta.js';
import { LONGHORN_API_VERSION } from './meta.js';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** v1beta1 status fields that v1beta2 dropped: per-disk download state and progress moved into diskFileStatusMap. */
const DROPPED_STATUS = ['diskDownloadStateMap', 'diskDownloadProgressMap'];

export function backingImageV1beta1ToV1beta2(input: KubeObject): KubeObject {
  const src = structuredClone(input);
  const out: KubeObject = { ...src, apiVersion: LONGHORN_API_VERSION };

  if (isRecord(src.spec)) {
    const spec: Record<string, unknown> = { ...src.spec };
    const disks = spec['disks'];
    delete spec['disks'];
    const fileSpecs: Record<string, unknown> = isRecord(spec['diskFileSpecMap']) ? { ...spec['diskFileSpecMap'] } : {};
    if (isRecord(disks)) {
      // A v1beta1 disk entry carries no per-disk settings, so each becomes an empty file spec.
      for (const diskUUID of Object.keys(disks)) fileSpecs[diskUUID] ??= {};
    }
    if (isRecord(disks) || 'diskFileSpecMap' in spec) spec['diskFileSpecMap'] = fileSpecs;

    const imageURL = spec['imageURL'];
    delete spec['imageURL'];
    if (typeof imageURL === 'string' && imageURL !== '') {
      const sourceType = spec['sourceType'];
      if (sourceType === undefined || sourceType === '' || sourceType === 'download') {
        spec['sourceType'] = 'download';
        const params: Record<string, unknown> = isRecord(spec['sourceParameters']) ? { ...spec['sourceParameters'] } : {};
        // An explicit sourceParameters.url is the newer way to say the same thing, so it wins.
        if (typeof params['url'] !== 'string' || params['url'] === '') params['url'] = imageURL;
        spec['sourceParameters'] = params;
      }
    }
    out.spec = spec;
  }

  if (isRecord(src.status)) {
    const status: Record<string, unknown> = { ...src.status };
    for (const k of DROPPED_STATUS) delete status[k];
    out.status = status;
  }
  return out;
}

export const backingImageV1beta1 = { version: 'v1beta1', toStorage: backingImageV1beta1ToV1beta2 };
