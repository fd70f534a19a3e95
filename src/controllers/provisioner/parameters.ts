// A `driver.longhorn.io` StorageClass's parameters, as Longhorn's CSI driver reads them, turned into the Volume
// they ask for and the BackingImage source they describe. Pure functions, so the rules are unit-tested apart.

import type { BackingImage, BackingImageSourceType } from '../../api/backing-image.js';
import { BACKING_IMAGE_SOURCE_TYPES } from '../../api/backing-image.js';
import type { VolumeSpec } from '../../api/volume.js';

export const LONGHORN_PROVISIONER = 'driver.longhorn.io';

export interface ClassParameters {
  numberOfReplicas?: number;
  staleReplicaTimeout?: number;
  fsType: string;
  backingImage?: string;
  /** Present when the class can create its backing image on demand. */
  source?: { type: BackingImageSourceType; parameters: Record<string, string>; checksum?: string };
  diskSelector: string[];
  nodeSelector: string[];
}

/** Splits Longhorn's comma-separated tag lists (`"ssd,fast"`). */
function tags(v: string | undefined): string[] {
  return (v ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
}

function positiveInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`parameter ${name} must be a non-negative integer, got "${v}"`);
  return n;
}

/** Reads a class's parameters. Throws Error naming the parameter for values that cannot be used. */
export function parseClassParameters(p: Readonly<Record<string, string>>): ClassParameters {
  const out: ClassParameters = { fsType: p['fsType'] || 'ext4', diskSelector: tags(p['diskSelector']), nodeSelector: tags(p['nodeSelector']) };
  const replicas = positiveInt('numberOfReplicas', p['numberOfReplicas']);
  if (replicas !== undefined) out.numberOfReplicas = replicas;
  const stale = positiveInt('staleReplicaTimeout', p['staleReplicaTimeout']);
  if (stale !== undefined) out.staleReplicaTimeout = stale;
  if (!['ext4', 'xfs'].includes(out.fsType)) throw new Error(`parameter fsType must be ext4 or xfs, got "${out.fsType}"`);
  if (p['backingImage']) out.backingImage = p['backingImage'];
  const type = p['backingImageDataSourceType'];
  if (type) {
    if (!out.backingImage) throw new Error('parameter backingImageDataSourceType is set but backingImage is not');
    if (!(BACKING_IMAGE_SOURCE_TYPES as readonly string[]).includes(type)) {
      throw new Error(`parameter backingImageDataSourceType must be one of ${BACKING_IMAGE_SOURCE_TYPES.join(', ')}, got "${type}"`);
    }
    let parameters: Record<string, string> = {};
    const raw = p['backingImageDataSourceParameters'];
    if (raw) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch (err) {
        throw new Error(`parameter backingImageDataSourceParameters is not JSON: ${(err as Error).message}`);
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || Object.values(parsed).some((v) => typeof v !== 'string')) {
        throw new Error('parameter backingImageDataSourceParameters must be a JSON object of strings, e.g. {"url": "https://…"}');
      }
      parameters = parsed as Record<string, string>;
    }
    out.source = { type: type as BackingImageSourceType, parameters, ...(p['backingImageChecksum'] ? { checksum: p['backingImageChecksum'].trim().toLowerCase() } : {}) };
  }
  return out;
}

/**
 * The first field in which the class's data source differs from an existing image's source, or undefined when it
 * matches (or the class names none: it then uses the image as it is). Fields: `backingImageDataSourceType`,
 * `backingImageDataSourceParameters.<key>`, `backingImageChecksum`.
 */
export function sourceMismatch(
  source: ClassParameters['source'],
  image: { readonly spec?: { readonly sourceType?: string; readonly sourceParameters?: Readonly<Record<string, string>>; readonly checksum?: string } },
): { field: string; class: string; image: string } | undefined {
  if (source === undefined) return undefined;
  const spec = image.spec ?? {};
  if ((spec.sourceType ?? '') !== source.type) return { field: 'backingImageDataSourceType', class: source.type, image: spec.sourceType ?? '' };
  const have = spec.sourceParameters ?? {};
  for (const key of [...new Set([...Object.keys(source.parameters), ...Object.keys(have)])].sort()) {
    // Defaults the image added on create (export type, encryption) are not a difference the class asked for.
    if (!(key in source.parameters)) continue;
    if (have[key] !== source.parameters[key]) {
      return { field: `backingImageDataSourceParameters.${key}`, class: source.parameters[key] ?? '', image: have[key] ?? '' };
    }
  }
  if (source.checksum !== undefined && source.checksum !== (spec.checksum ?? '')) {
    return { field: 'backingImageChecksum', class: source.checksum, image: spec.checksum ?? '' };
  }
  return undefined;
}

/** The BackingImage a class creates on demand. */
export function backingImageFor(name: string, namespace: string, source: NonNullable<ClassParameters['source']>): BackingImage {
  return {
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'BackingImage',
    metadata: { name, namespace },
    spec: { sourceType: source.type, sourceParameters: { ...source.parameters }, ...(source.checksum ? { checksum: source.checksum } : {}) },
  };
}

/** The Volume spec for a claim of `bytes` on a class with these parameters. */
export function volumeSpecFor(params: ClassParameters, bytes: number): VolumeSpec {
  return {
    size: String(bytes),
    frontend: 'blockdev',
    ...(params.numberOfReplicas ? { numberOfReplicas: params.numberOfReplicas } : {}),
    ...(params.staleReplicaTimeout !== undefined ? { staleReplicaTimeout: params.staleReplicaTimeout } : {}),
    ...(params.backingImage ? { backingImage: params.backingImage } : {}),
    ...(params.diskSelector.length ? { diskSelector: params.diskSelector } : {}),
    ...(params.nodeSelector.length ? { nodeSelector: params.nodeSelector } : {}),
  };
}
