// A release: the images a Stratum version runs its data plane on, with their versions and API ranges, and the API
// ranges its manager speaks towards each data-plane component. The file is an image catalog (src/agent/images.ts)
// with three more keys:
//
//   release: 1.1.0                          # the release's version (the manager's, shown by `stratum version`)
//   manager:
//     apis:                                 # API ranges the manager of this release speaks, per component
//       backing-image-manager: { min: 1, max: 2 }
//       instance-manager: { min: 2, max: 2 }
//       engine: { min: 1, max: 1 }
//   defaults:                               # the default image of each component (the default-*-image settings)
//     backing-image-manager: stratum-bim:v2
//     instance-manager: stratum-im:v1
//     engine: stratum-engine:v1
//   images:                                 # catalog entries, as in an --images file (`from` may name any entry)
//     - { name: stratum-bim:v2, from: stratum-bim:v1, version: 2.0.0, apiVersion: 2, apiMinVersion: 1 }
//
// Every key but `release` may be left out: what is missing is the built-in release's.

import { parse as parseYaml } from 'yaml';
import { addEntries, BUILTIN_IMAGES, parseCatalog, resolveEntries, type CatalogContext, type ImageEntry, type RawImageEntry } from '../agent/images.js';
import { ReleaseError } from './errors.js';

/** Components whose images a release chooses, and the setting holding each one's default image. */
export const RELEASE_COMPONENTS = {
  'backing-image-manager': 'default-backing-image-manager-image',
  'instance-manager': 'default-instance-manager-image',
  engine: 'default-engine-image',
} as const;
export type ReleaseComponent = keyof typeof RELEASE_COMPONENTS;
export const COMPONENT_NAMES = Object.keys(RELEASE_COMPONENTS) as ReleaseComponent[];

export interface ApiRange {
  min: number;
  max: number;
}

export interface Release {
  version: string;
  apis: Record<ReleaseComponent, ApiRange>;
  defaults: Record<ReleaseComponent, string>;
  /** The release's own catalog entries, as written. */
  images: RawImageEntry[];
}

/**
 * The release built into this code: what a cluster runs before any upgrade. The ranges are what the controllers
 * speak (backing-image manager API 1; instance manager API 2: instances in-process, engine control under
 * /v1/engines; engine API 1).
 */
export const BUILTIN_RELEASE: Release = {
  version: '1.0.0',
  apis: {
    'backing-image-manager': { min: 1, max: 1 },
    'instance-manager': { min: 2, max: 2 },
    engine: { min: 1, max: 1 },
  },
  defaults: {
    'backing-image-manager': 'stratum-bim:v1',
    'instance-manager': 'stratum-im:v1',
    engine: 'stratum-engine:v1',
  },
  images: [],
};

export function isComponent(c: string): c is ReleaseComponent {
  return c in RELEASE_COMPONENTS;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Parses a release document; `source` names it in messages. Shape errors only: see validate.ts for the rest. */
export function parseRelease(text: string, source: string): Release {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ReleaseError('InvalidRelease', `${source} is not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!isRecord(doc)) throw new ReleaseError('InvalidRelease', `${source} must be an object with "release", "manager", "defaults" and "images"`);
  const known = ['release', 'manager', 'defaults', 'images'];
  for (const k of Object.keys(doc)) {
    if (!known.includes(k)) throw new ReleaseError('InvalidRelease', `${source}: unknown key "${k}" (known: ${known.join(', ')})`);
  }
  const version = doc['release'];
  if ((typeof version !== 'string' && typeof version !== 'number') || String(version).trim() === '') {
    throw new ReleaseError('InvalidRelease', `${source}: "release" is required: the release's version, such as 1.1.0`);
  }
  const apis = { ...BUILTIN_RELEASE.apis };
  const manager = doc['manager'] ?? {};
  if (!isRecord(manager)) throw new ReleaseError('InvalidRelease', `${source}: "manager" must be an object with "apis"`);
  for (const k of Object.keys(manager)) {
    if (k !== 'apis' && k !== 'version') throw new ReleaseError('InvalidRelease', `${source}: manager.${k}: unknown key (known: apis, version)`);
  }
  const given = manager['apis'] ?? {};
  if (!isRecord(given)) throw new ReleaseError('InvalidRelease', `${source}: manager.apis must map components to {min, max}`);
  for (const [c, r] of Object.entries(given)) {
    const where = `${source}: manager.apis.${c}`;
    if (!isComponent(c)) throw new ReleaseError('InvalidRelease', `${where}: unknown component "${c}" (known: ${COMPONENT_NAMES.join(', ')})`);
    if (!isRecord(r) || !isApi(r['min']) || !isApi(r['max'])) throw new ReleaseError('InvalidRelease', `${where}: must be {min: N, max: N} with non-negative integers`);
    if (r['min'] > r['max']) throw new ReleaseError('InvalidRelease', `${where}: min ${r['min']} is above max ${r['max']}`);
    apis[c] = { min: r['min'], max: r['max'] };
  }
  const defaults = { ...BUILTIN_RELEASE.defaults };
  const d = doc['defaults'] ?? {};
  if (!isRecord(d)) throw new ReleaseError('InvalidRelease', `${source}: "defaults" must map components to image names`);
  for (const [c, image] of Object.entries(d)) {
    const where = `${source}: defaults.${c}`;
    if (!isComponent(c)) throw new ReleaseError('InvalidRelease', `${where}: unknown component "${c}" (known: ${COMPONENT_NAMES.join(', ')})`);
    if (typeof image !== 'string' || image === '') throw new ReleaseError('InvalidRelease', `${where}: must be an image name`);
    defaults[c] = image;
  }
  let images: RawImageEntry[] = [];
  if (doc['images'] !== undefined) {
    try {
      images = parseCatalog(JSON.stringify({ images: doc['images'] }), source);
    } catch (err) {
      throw new ReleaseError('InvalidRelease', (err as Error).message, { cause: err });
    }
  }
  return { version: String(version), apis, defaults, images };
}

function isApi(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

/**
 * The catalog a release runs on: `base` (built-in plus --images files) with the release's entries added. Errors
 * (an unknown `from`, a range upside down) name the entry.
 */
export function releaseCatalog(rel: Release, base: readonly ImageEntry[] | undefined, source: string, ctx: CatalogContext): ImageEntry[] {
  const start = base ?? resolveEntries([...BUILTIN_IMAGES], [], 'built-in', ctx);
  try {
    return addEntries(start, rel.images, source, ctx);
  } catch (err) {
    throw new ReleaseError('InvalidRelease', (err as Error).message, { cause: err });
  }
}
