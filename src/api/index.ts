// The resource model: kinds (types, schemas, defaults, validation, conversion), the registry of kinds, the
// settings catalogue. Everything other folders need from src/api is exported here.

export * from './meta.js';
export * from './kind.js';
export * from './errors.js';
export * from './field-errors.js';
export * from './names.js';
// Schema builders and the validate-hook helpers stay internal; only what other folders act on is exported.
export { INT_OR_STRING, PRESERVE_UNKNOWN, type Schema } from './schema.js';
export { DATA_ENGINES, INSTANCE_STATES, SUPPORTED_DATA_ENGINES, type DataEngine, type InstanceState } from './common.js';
export * from './settings.js';
export * from './registry.js';
export * from './validate.js';
export * from './prune.js';

export * from './backing-image.js';
export { backingImageV1beta1ToV1beta2 } from './backing-image-v1beta1.js';
export * from './backing-image-data-source.js';
export * from './backing-image-manager.js';
export * from './volume.js';
export * from './instance.js';
export * from './engine.js';
export * from './replica.js';
export * from './node.js';
export * from './setting-resource.js';
export * from './engine-image.js';
export * from './instance-manager.js';
export * from './pod.js';
export * from './event.js';
export * from './lease.js';
export * from './quantity.js';
export * from './storage-class.js';
export * from './persistent-volume-claim.js';
export * from './persistent-volume.js';
export * from './stateful-set.js';
export * from './service.js';
