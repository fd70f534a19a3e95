// Name rules: object names (DNS-1123), label and annotation keys (qualified names), label values, and names that
// become file-path components. Messages are Kubernetes' own wording (k8s.io/apimachinery/pkg/util/validation),
// so a refused name reads the same as on a real cluster.

import { childPath, invalid, required } from './field-errors.js';
import type { FieldError } from './kind.js';

const DNS1123_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS1123_SUBDOMAIN = `${DNS1123_LABEL}(\\.${DNS1123_LABEL})*`;
const QUALIFIED_NAME_PART = '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]';
const LABEL_VALUE = `(${QUALIFIED_NAME_PART})?`;

const dns1123LabelRe = new RegExp(`^${DNS1123_LABEL}$`);
const dns1123SubdomainRe = new RegExp(`^${DNS1123_SUBDOMAIN}$`);
const qualifiedNamePartRe = new RegExp(`^${QUALIFIED_NAME_PART}$`);
const labelValueRe = new RegExp(`^${LABEL_VALUE}$`);

export const DNS1123_LABEL_MAX = 63;
export const DNS1123_SUBDOMAIN_MAX = 253;
const QUALIFIED_NAME_MAX = 63;
const LABEL_VALUE_MAX = 63;
/** Kubernetes' limit on the total size of all annotations of one object. */
const ANNOTATIONS_MAX_BYTES = 256 * 1024;

const DNS1123_SUBDOMAIN_MSG =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start " +
  `and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '${DNS1123_SUBDOMAIN}')`;
const DNS1123_LABEL_MSG =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end " +
  `with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '${DNS1123_LABEL}')`;
const QUALIFIED_NAME_MSG =
  "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric " +
  `character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '${QUALIFIED_NAME_PART}')`;
const LABEL_VALUE_MSG =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start " +
  `and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '${LABEL_VALUE}')`;

/** Problems with `value` as a DNS-1123 subdomain (object names); empty when valid. */
export function dns1123SubdomainErrors(value: string): string[] {
  const errs: string[] = [];
  if (value.length > DNS1123_SUBDOMAIN_MAX) errs.push(`must be no more than ${DNS1123_SUBDOMAIN_MAX} characters`);
  if (!dns1123SubdomainRe.test(value)) errs.push(DNS1123_SUBDOMAIN_MSG);
  return errs;
}

/** Problems with `value` as a DNS-1123 label (namespaces, container names); empty when valid. */
export function dns1123LabelErrors(value: string): string[] {
  const errs: string[] = [];
  if (value.length > DNS1123_LABEL_MAX) errs.push(`must be no more than ${DNS1123_LABEL_MAX} characters`);
  if (!dns1123LabelRe.test(value)) errs.push(DNS1123_LABEL_MSG);
  return errs;
}

/** Problems with `value` as a qualified name (`[prefix/]name`, label and annotation keys). */
export function qualifiedNameErrors(value: string): string[] {
  const parts = value.split('/');
  let name: string;
  const errs: string[] = [];
  if (parts.length === 1) {
    name = value;
  } else if (parts.length === 2) {
    const prefix = parts[0] ?? '';
    name = parts[1] ?? '';
    if (prefix.length === 0) errs.push('prefix part must be non-empty');
    else for (const e of dns1123SubdomainErrors(prefix)) errs.push(`prefix part ${e}`);
  } else {
    return [`a qualified name ${QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`];
  }
  if (name.length === 0) errs.push('name part must be non-empty');
  else if (name.length > QUALIFIED_NAME_MAX) errs.push(`name part must be no more than ${QUALIFIED_NAME_MAX} characters`);
  if (name.length > 0 && !qualifiedNamePartRe.test(name)) errs.push(`name part ${QUALIFIED_NAME_MSG}`);
  return errs;
}

export function labelValueErrors(value: string): string[] {
  const errs: string[] = [];
  if (value.length > LABEL_VALUE_MAX) errs.push(`must be no more than ${LABEL_VALUE_MAX} characters`);
  if (!labelValueRe.test(value)) errs.push(LABEL_VALUE_MSG);
  return errs;
}

export function isDns1123Subdomain(value: string): boolean {
  return dns1123SubdomainErrors(value).length === 0;
}

/** Field errors for an object name (or `generateName` prefix, which may end in '-'). */
export function validateObjectName(field: string, value: string, isPrefix = false): FieldError[] {
  if (value === '') return [required(field, 'name or generateName is required')];
  // A generateName prefix gets a random suffix appended, so only the prefix up to its trailing '-' is checked.
  const checked = isPrefix ? value.replace(/-+$/, '') || 'a' : value;
  return dns1123SubdomainErrors(checked).map((d) => invalid(field, value, d));
}

export function validateNamespace(field: string, value: string): FieldError[] {
  return dns1123LabelErrors(value).map((d) => invalid(field, value, d));
}

/** Label keys and values, checked the Kubernetes way; errors are reported at the map's path. */
export function validateLabels(field: string, labels: Record<string, unknown>): FieldError[] {
  const errs: FieldError[] = [];
  for (const [k, v] of Object.entries(labels)) {
    for (const d of qualifiedNameErrors(k)) errs.push(invalid(field, k, d));
    if (typeof v === 'string') for (const d of labelValueErrors(v)) errs.push(invalid(field, v, d));
  }
  return errs;
}

export function validateAnnotations(field: string, annotations: Record<string, unknown>): FieldError[] {
  const errs: FieldError[] = [];
  let total = 0;
  for (const [k, v] of Object.entries(annotations)) {
    for (const d of qualifiedNameErrors(k.toLowerCase())) errs.push(invalid(field, k, d));
    total += Buffer.byteLength(k) + (typeof v === 'string' ? Buffer.byteLength(v) : 0);
  }
  if (total > ANNOTATIONS_MAX_BYTES) {
    errs.push({
      field,
      reason: 'FieldValueTooLong',
      message: `Too long: must have at most ${ANNOTATIONS_MAX_BYTES} bytes`,
    });
  }
  return errs;
}

/**
 * A value that Stratum uses as one component of a file path (backing image name and UUID in
 * `<disk>/backing-images/<name>-<uuid>/`, a replica's data directory). Anything that could climb out of the
 * directory or split into two components is refused, whatever other rules the field has.
 */
export function validatePathComponent(field: string, value: string): FieldError[] {
  if (value.includes('/') || value.includes('\\') || value.includes('..') || value.includes('\0')) {
    return [invalid(field, value, "must not contain '/', '\\', '..' or NUL: it is used as a file path component")];
  }
  if (value === '.') return [invalid(field, value, "must not be '.': it is used as a file path component")];
  return [];
}

/** Path components for every key and value of a map (e.g. BackingImageManager `spec.backingImages`). */
export function validatePathComponentMap(field: string, map: Record<string, unknown>): FieldError[] {
  const errs: FieldError[] = [];
  for (const [k, v] of Object.entries(map)) {
    errs.push(...validatePathComponent(field, k));
    if (typeof v === 'string') errs.push(...validatePathComponent(childPath(field, k), v));
  }
  return errs;
}

/** A host directory path (disk paths): absolute, and without '..' so it cannot be a disguised other directory. */
export function validateAbsolutePath(field: string, value: string): FieldError[] {
  if (!value.startsWith('/') || value.split('/').includes('..') || value.includes('\0')) {
    return [invalid(field, value, "must be an absolute path without '..' components")];
  }
  return [];
}
