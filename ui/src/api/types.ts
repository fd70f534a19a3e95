// Wire types, from their one home in src/api (type-only imports: nothing of the server is bundled).

export type { BackingImage, BackingImageDiskFileStatus } from '../../../src/api/backing-image.js';
export type { BackingImageDataSource } from '../../../src/api/backing-image-data-source.js';
export type { Volume } from '../../../src/api/volume.js';
export type { Replica } from '../../../src/api/replica.js';
export type { Engine, EngineSnapshotStatus } from '../../../src/api/engine.js';
export type { Node, DiskStatus, DiskSpec } from '../../../src/api/node.js';
export type { CoreEvent } from '../../../src/api/event.js';
export type { Condition, KubeObject } from '../../../src/api/meta.js';

/** A Setting as /v1/settings serves it (value plus its catalogue definition). */
export interface V1Setting {
  name: string;
  value: string;
  applied: boolean;
  definition: { description?: string; type?: string; default?: string; readOnly?: boolean; min?: number; max?: number };
}
