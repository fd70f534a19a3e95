// Validation of a whole object against its kind: the JSON schema (ajv, compiled once per kind), the metadata
// rules Kubernetes applies to every object (names, labels, annotations, finalizers), then the kind's own semantic
// `validate` hook. Errors are FieldErrors with Kubernetes reasons, so the API server can return them as a 422
// Status with causes unchanged.
//
// Expected order on write: convert to the storage version, pruneUnknownFields, defaultOnCreate (create only) or
// defaultOnUpdate (update only), then validateObject. Pruning first matters: it also drops Go-style `null`s that the schema would refuse.

import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

import {
  childPath, FieldValueTypeInvalid, forbidden, invalid, notSupported, required, tooLong, tooMany, typeInvalid,
} from './field-errors.js';
import type { FieldError, KindInfo } from './kind.js';
import type { KubeObject } from './meta.js';
import {
  qualifiedNameErrors, validateAnnotations, validateLabels, validateNamespace, validateObjectName,
} from './names.js';
import { INT_OR_STRING, PRESERVE_UNKNOWN } from './schema.js';

const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false, allowUnionTypes: true });
// Kubernetes' schema extensions: markers for pruning and for /openapi, no validation effect here.
ajv.addVocabulary([PRESERVE_UNKNOWN, INT_OR_STRING, 'x-kubernetes-validations']);
ajv.addFormat('int64', { type: 'string', validate: /^-?[0-9]+$/ });

const compiled = new WeakMap<KindInfo, ValidateFunction>();

function validatorFor(info: KindInfo): ValidateFunction {
  let v = compiled.get(info);
  if (v === undefined) {
    v = ajv.compile(info.schema);
    compiled.set(info, v);
  }
  return v;
}

/** The expected apiVersion of stored objects of `info`. */
function storageApiVersion(info: KindInfo): string {
  return info.group === '' ? info.version : `${info.group}/${info.version}`;
}

function decodePointer(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Turns an ajv instancePath into a dotted field path, using the data to tell array indices from map keys. */
function locate(data: unknown, pointer: string): { path: string; value: unknown } {
  let path = '';
  let cur: unknown = data;
  for (const seg of decodePointer(pointer)) {
    if (Array.isArray(cur)) {
      const i = Number(seg);
      path = childPath(path, i);
      cur = cur[i];
    } else {
      path = childPath(path, seg);
      cur = typeof cur === 'object' && cur !== null ? (cur as Record<string, unknown>)[seg] : undefined;
    }
  }
  return { path, value: cur };
}

const COMPARISON: Record<string, string> = {
  '>=': 'greater than or equal to',
  '<=': 'less than or equal to',
  '>': 'greater than',
  '<': 'less than',
};

function fromAjv(e: ErrorObject, data: unknown): FieldError {
  const { path, value } = locate(data, e.instancePath);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return required(childPath(path, String(p['missingProperty'])));
    case 'type':
      return typeInvalid(path, value, String(p['type']).split(',').join(' or '));
    case 'enum':
      return notSupported(path, value, Array.isArray(p['allowedValues']) ? p['allowedValues'] : []);
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return invalid(path, value, `must be ${COMPARISON[String(p['comparison'])] ?? String(p['comparison'])} ${String(p['limit'])}`);
    case 'minLength':
      return value === '' ? required(path) : invalid(path, value, `must be at least ${String(p['limit'])} characters`);
    case 'maxLength':
      return tooLong(path, value, Number(p['limit']));
    case 'minItems':
      return invalid(path, value, `must have at least ${String(p['limit'])} items`);
    case 'maxItems':
      return tooMany(path, Array.isArray(value) ? value.length : 0, Number(p['limit']));
    case 'pattern':
      return invalid(path, value, `must match the regular expression '${String(p['pattern'])}'`);
    case 'format':
      return invalid(path, value, p['format'] === 'int64' ? 'must be a decimal integer' : `must be a valid ${String(p['format'])}`);
    default:
      return invalid(path, value, e.message ?? 'is invalid');
  }
}

function validateMetadata(info: KindInfo, meta: Record<string, unknown>): FieldError[] {
  const errs: FieldError[] = [];
  const name = meta['name'];
  const generateName = meta['generateName'];
  if (typeof name === 'string' && name !== '') errs.push(...validateObjectName('metadata.name', name));
  else if (typeof generateName === 'string' && generateName !== '') {
    errs.push(...validateObjectName('metadata.generateName', generateName, true));
  } else errs.push(required('metadata.name', 'name or generateName is required'));

  const ns = meta['namespace'];
  if (typeof ns === 'string' && ns !== '') {
    if (info.namespaced) errs.push(...validateNamespace('metadata.namespace', ns));
    else errs.push(forbidden('metadata.namespace', 'not allowed on a cluster-scoped resource'));
  }
  const labels = meta['labels'];
  if (typeof labels === 'object' && labels !== null) {
    errs.push(...validateLabels('metadata.labels', labels as Record<string, unknown>));
  }
  const annotations = meta['annotations'];
  if (typeof annotations === 'object' && annotations !== null) {
    errs.push(...validateAnnotations('metadata.annotations', annotations as Record<string, unknown>));
  }
  const finalizers = meta['finalizers'];
  if (Array.isArray(finalizers)) {
    finalizers.forEach((f: unknown, i) => {
      if (typeof f === 'string') for (const d of qualifiedNameErrors(f)) errs.push(invalid(childPath('metadata.finalizers', i), f, d));
    });
  }
  return errs;
}

function dedupe(errs: FieldError[]): FieldError[] {
  const seen = new Set<string>();
  return errs.filter((e) => {
    const k = `${e.field}\0${e.reason}\0${e.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * All problems with `obj` as an object of `info` (storage version), or [] when it is valid. `old` is the stored
 * object on update; the kind's immutability rules compare against it.
 */
export function validateObject(info: KindInfo, obj: unknown, old?: KubeObject): FieldError[] {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return [typeInvalid('', obj, 'object')];
  const o = obj as Record<string, unknown>;
  const validator = validatorFor(info);
  const errs: FieldError[] = [];
  if (!validator(o)) {
    const schemaErrs = (validator.errors ?? []).map((e) => fromAjv(e, o));
    // A value of the wrong type also trips keywords meant for the right type (a string in an int64 field fails
    // the int64 string format too); the type error alone says what is wrong.
    const mistyped = new Set(schemaErrs.filter((e) => e.reason === FieldValueTypeInvalid).map((e) => e.field));
    errs.push(...schemaErrs.filter((e) => e.reason === FieldValueTypeInvalid || !mistyped.has(e.field)));
  }

  const expected = storageApiVersion(info);
  if (o['apiVersion'] !== undefined && o['apiVersion'] !== expected) {
    errs.push(notSupported('apiVersion', o['apiVersion'], [expected]));
  }
  if (o['kind'] !== undefined && o['kind'] !== info.kind) errs.push(notSupported('kind', o['kind'], [info.kind]));

  const meta = o['metadata'];
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
    if (meta === undefined) errs.push(required('metadata'));
    return dedupe(errs);
  }
  // A field the schema already refused (say, a string where an integer belongs) would only produce a second,
  // more confusing error from the metadata or semantic rules.
  const refused = new Set(errs.map((e) => e.field));
  const more = validateMetadata(info, meta as Record<string, unknown>);
  if (info.validate !== undefined) more.push(...info.validate(o as KubeObject, old));
  for (const e of more) if (!refused.has(e.field)) errs.push(e);
  return dedupe(errs);
}
