// Small builders for the JSON schemas in each KindInfo. The schemas follow the OpenAPI v3 subset that Kubernetes
// CRDs use (`nullable`, `x-kubernetes-*` markers) so they can be served from /openapi unchanged, and they are
// compiled by ajv for validation (see validate.ts) and walked for pruning of unknown fields (see prune.ts).

export type Schema = Record<string, unknown>;

/** Marks an object whose unknown fields are kept (not pruned). */
export const PRESERVE_UNKNOWN = 'x-kubernetes-preserve-unknown-fields';
/** Marks a field that accepts an integer or a string (Kubernetes IntOrString, e.g. a probe port). */
export const INT_OR_STRING = 'x-kubernetes-int-or-string';

export function str(extra: Schema = {}): Schema {
  return { type: 'string', ...extra };
}

export function int(extra: Schema = {}): Schema {
  return { type: 'integer', ...extra };
}

/** A 64-bit integer (byte sizes). JSON numbers lose precision above 2^53; sizes that large do not occur. */
export function int64(extra: Schema = {}): Schema {
  return { type: 'integer', format: 'int64', ...extra };
}

/**
 * A 64-bit integer carried as a decimal string. Longhorn serialises `Volume.spec.size` and a few others this way
 * (Go `json:",string"`), so real manifests have `size: "2147483648"`.
 */
export function int64String(extra: Schema = {}): Schema {
  return { type: 'string', format: 'int64', ...extra };
}

export function bool(extra: Schema = {}): Schema {
  return { type: 'boolean', ...extra };
}

export function enumOf(values: readonly string[], extra: Schema = {}): Schema {
  return { type: 'string', enum: [...values], ...extra };
}

export function intOrString(extra: Schema = {}): Schema {
  return { type: ['integer', 'string'], [INT_OR_STRING]: true, ...extra };
}

export function arrayOf(items: Schema, extra: Schema = {}): Schema {
  return { type: 'array', items, ...extra };
}

/** A map with arbitrary keys (Go `map[string]T`). */
export function mapOf(values: Schema, extra: Schema = {}): Schema {
  return { type: 'object', additionalProperties: values, ...extra };
}

export function strMap(extra: Schema = {}): Schema {
  return mapOf(str(), extra);
}

export interface ObjOptions {
  required?: readonly string[];
  nullable?: boolean;
  /** Keep fields that are not listed (status objects written by controllers use this). */
  preserveUnknown?: boolean;
  description?: string;
}

export function obj(properties: Record<string, Schema>, opts: ObjOptions = {}): Schema {
  const s: Schema = { type: 'object', properties };
  if (opts.required !== undefined && opts.required.length > 0) s['required'] = [...opts.required];
  if (opts.nullable === true) s['nullable'] = true;
  if (opts.preserveUnknown === true) s[PRESERVE_UNKNOWN] = true;
  if (opts.description !== undefined) s['description'] = opts.description;
  return s;
}

export function nullable(s: Schema): Schema {
  return { ...s, nullable: true };
}

/** Kubernetes/Longhorn condition (`status.conditions[]`). */
export const conditionSchema: Schema = obj({
  type: str(),
  status: str(),
  reason: str(),
  message: str(),
  lastProbeTime: str(),
  lastTransitionTime: str(),
});

export const conditionsSchema: Schema = arrayOf(conditionSchema, { nullable: true });

const ownerReferenceSchema = obj(
  {
    apiVersion: str(),
    kind: str(),
    name: str(),
    uid: str(),
    controller: bool(),
    blockOwnerDeletion: bool(),
  },
  { required: ['apiVersion', 'kind', 'name', 'uid'] },
);

/**
 * ObjectMeta, typed so that a label value of the wrong type is a type error; unknown metadata fields are kept
 * because pruning never touches metadata.
 */
export const objectMetaSchema: Schema = obj(
  {
    name: str(),
    generateName: str(),
    namespace: str(),
    uid: str(),
    resourceVersion: str(),
    generation: int(),
    labels: strMap({ nullable: true }),
    annotations: strMap({ nullable: true }),
    finalizers: arrayOf(str(), { nullable: true }),
    ownerReferences: arrayOf(ownerReferenceSchema, { nullable: true }),
    creationTimestamp: str({ nullable: true }),
    deletionTimestamp: str({ nullable: true }),
    deletionGracePeriodSeconds: int({ nullable: true }),
  },
  { preserveUnknown: true },
);

export interface ResourceSchemaParts {
  description: string;
  spec?: Schema;
  status?: Schema;
  /** Top-level fields besides apiVersion/kind/metadata/spec/status (Setting's `value`, Event's fields). */
  topLevel?: Record<string, Schema>;
  required?: readonly string[];
}

/** The schema of a whole object of one kind. */
export function resourceSchema(parts: ResourceSchemaParts): Schema {
  const properties: Record<string, Schema> = {
    apiVersion: str(),
    kind: str(),
    metadata: objectMetaSchema,
    ...(parts.topLevel ?? {}),
  };
  if (parts.spec !== undefined) properties['spec'] = parts.spec;
  if (parts.status !== undefined) properties['status'] = parts.status;
  return obj(properties, {
    description: parts.description,
    ...(parts.required !== undefined ? { required: parts.required } : {}),
  });
}
