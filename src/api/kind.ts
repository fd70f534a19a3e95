// The description of one resource kind: names, scope, schema, defaults and conversion. The API server, the store
// and the CLI are driven entirely by these descriptions; adding a kind means adding one KindInfo.

import type { KubeObject } from './meta.js';

/** One field-level validation failure: `field` is a JSON path like `spec.minNumberOfCopies`. */
export interface FieldError {
  field: string;
  /** Short rule name, as Kubernetes' StatusCause.reason: `FieldValueRequired`, `FieldValueInvalid`, ... */
  reason: string;
  message: string;
}

/** A column of `get` tables (kubectl's additionalPrinterColumns). */
export interface PrinterColumn {
  name: string;
  /** Simple JSONPath such as `.status.currentState` or `.spec.nodeID`. */
  jsonPath: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  /** Shown only with `-o wide` when > 0. */
  priority?: number;
  description?: string;
  /** A value computed from several fields, which a JSONPath cannot express (`RWO,RWX`, `ns/claim`, `2/3`). */
  value?(obj: KubeObject): string;
}

/** What defaulting may consult: settings are read through this so that `minNumberOfCopies` follows its setting. */
export interface DefaultingContext {
  /** Current value of a Setting (by name), or undefined when unset. */
  setting(name: string): string | undefined;
  /** A fresh random id (hex), for status.uuid and similar. */
  randomId(): string;
  now(): Date;
}

export interface KindInfo {
  /** '' for core v1 kinds. */
  group: string;
  /** The storage (and preferred served) version. */
  version: string;
  kind: string;
  listKind: string;
  /** Lower-case plural used in URLs: `backingimages`. */
  plural: string;
  singular: string;
  shortNames: string[];
  namespaced: boolean;
  /** Whether `/status` is a separate subresource (main-resource writes then ignore status and vice versa). */
  hasStatusSubresource: boolean;
  /** Whether a change of `spec` bumps metadata.generation (true for all kinds with a spec). */
  hasSpec: boolean;
  printerColumns: PrinterColumn[];
  /** JSON Schema (draft-07, OpenAPI-compatible subset) of the whole object, used for validation and /openapi. */
  schema: Record<string, unknown>;
  /** Apply defaults on create (mutates). */
  defaultOnCreate?(obj: KubeObject, ctx: DefaultingContext): void;
  /** Apply defaults to a changed object on update (mutates; `old` is the stored one). Not on status writes. */
  defaultOnUpdate?(obj: KubeObject, old: KubeObject): void;
  /** Extra semantic validation beyond the schema (immutability on update gets `old`). */
  validate?(obj: KubeObject, old: KubeObject | undefined): FieldError[];
  /**
   * The `scale` subresource (autoscaling/v1 Scale), as a CRD's `subresources.scale` declares it: dotted paths of
   * the desired and observed replica counts and of the label selector. Makes `kubectl scale` work.
   */
  scale?: { specReplicasPath: string; statusReplicasPath: string; selectorPath: string };
  /** Other served versions, converted to the storage version on write. Reads always return the storage version. */
  otherVersions?: {
    version: string;
    toStorage(obj: KubeObject): KubeObject;
    /** Storage version → this version, for reads and patches through this version's URLs. */
    fromStorage?(obj: KubeObject): KubeObject;
  }[];
}
