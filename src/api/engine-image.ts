// EngineImage (longhorn.io/v1beta2, `lhei`): an image that provides engines and replicas, deployed on nodes and
// reference-counted by the volumes that use it. Two engine images side by side is how live upgrades are done.

import { createHash } from 'node:crypto';
import { ageColumn, immutableField, specOf, stringField } from './common.js';
import type { FieldError, KindInfo } from './kind.js';
import { LONGHORN_GROUP, LONGHORN_VERSION, type Condition, type KubeObject } from './meta.js';
import { bool, conditionsSchema, int, mapOf, obj, resourceSchema, str } from './schema.js';

export const ENGINE_IMAGE_STATES = ['deploying', 'deployed', 'incompatible', 'error'] as const;
export type EngineImageState = (typeof ENGINE_IMAGE_STATES)[number];

export interface EngineImageSpec {
  image: string;
}

export interface EngineImageStatus {
  ownerID?: string;
  state?: EngineImageState | '';
  refCount?: number;
  noRefSince?: string;
  conditions?: Condition[] | null;
  nodeDeploymentMap?: Record<string, boolean> | null;
  incompatible?: boolean;
  version?: string;
  gitCommit?: string;
  buildDate?: string;
  cliAPIVersion?: number;
  cliAPIMinVersion?: number;
  controllerAPIVersion?: number;
  controllerAPIMinVersion?: number;
  dataFormatVersion?: number;
  dataFormatMinVersion?: number;
}

export type EngineImage = KubeObject<EngineImageSpec, EngineImageStatus>;

/** The EngineImage object of an image: `ei-` and the first 8 hex digits of its SHA-256 (as Longhorn names them). */
export function engineImageName(image: string): string {
  return `ei-${createHash('sha256').update(image).digest('hex').slice(0, 8)}`;
}

const schema = resourceSchema({
  description: 'EngineImage is an image that provides engines and replicas.',
  spec: obj({ image: str({ minLength: 1 }) }, { required: ['image'] }),
  status: obj(
    {
      ownerID: str(),
      state: str(),
      refCount: int(),
      noRefSince: str(),
      conditions: conditionsSchema,
      nodeDeploymentMap: mapOf(bool(), { nullable: true }),
      incompatible: bool(),
      version: str(),
      gitCommit: str(),
      buildDate: str(),
      cliAPIVersion: int(),
      cliAPIMinVersion: int(),
      controllerAPIVersion: int(),
      controllerAPIMinVersion: int(),
      dataFormatVersion: int(),
      dataFormatMinVersion: int(),
    },
    { preserveUnknown: true },
  ),
  required: ['spec'],
});

function validate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  if (old === undefined) return [];
  // Volumes reference an engine image by its image string; changing it under them would swap their binaries.
  return immutableField('spec.image', stringField(specOf(o), 'image'), stringField(specOf(old), 'image'));
}

export const engineImageInfo: KindInfo = {
  group: LONGHORN_GROUP,
  version: LONGHORN_VERSION,
  kind: 'EngineImage',
  listKind: 'EngineImageList',
  plural: 'engineimages',
  singular: 'engineimage',
  shortNames: ['lhei'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'Incompatible', jsonPath: '.status.incompatible', type: 'boolean', description: 'Compatibility of the engine image' },
    { name: 'State', jsonPath: '.status.state', type: 'string', description: 'State of the engine image' },
    { name: 'Image', jsonPath: '.spec.image', type: 'string', description: 'The Longhorn engine image' },
    { name: 'RefCount', jsonPath: '.status.refCount', type: 'integer', description: 'Number of resources using the engine image' },
    { name: 'BuildDate', jsonPath: '.status.buildDate', type: 'date', description: 'The build date of the engine image' },
    ageColumn,
  ],
  schema,
  validate,
};
