// Pruning of unknown fields, as Kubernetes does for structural CRD schemas: a field the kind's schema does not
// declare is removed and its path reported, so the API server can turn the list into warnings or, when the
// client asked for strict field validation, into an error. apiVersion, kind and metadata are never pruned.

import { childPath } from './field-errors.js';
import type { KindInfo } from './kind.js';
import { PRESERVE_UNKNOWN, type Schema } from './schema.js';

const ALWAYS_KEPT = new Set(['apiVersion', 'kind', 'metadata']);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function subSchema(s: Schema, key: 'properties' | 'additionalProperties' | 'items'): unknown {
  return s[key];
}

function walk(value: unknown, schema: Schema, path: string, removed: string[], top: boolean): void {
  if (Array.isArray(value)) {
    const items = subSchema(schema, 'items');
    if (isPlainObject(items)) value.forEach((v, i) => walk(v, items, childPath(path, i), removed, false));
    return;
  }
  if (!isPlainObject(value)) return;
  const props = subSchema(schema, 'properties');
  const additional = subSchema(schema, 'additionalProperties');
  const preserve = schema[PRESERVE_UNKNOWN] === true || additional === true;
  for (const key of Object.keys(value)) {
    if (top && ALWAYS_KEPT.has(key)) continue;
    const declared = isPlainObject(props) ? props[key] : undefined;
    const child = isPlainObject(declared) ? declared : isPlainObject(additional) ? additional : undefined;
    const p = childPath(path, key);
    if (child === undefined) {
      if (!preserve) {
        delete value[key];
        removed.push(p);
      }
      continue;
    }
    // Go clients serialise empty maps and slices as null; like Kubernetes, such nulls are dropped silently where
    // the schema does not allow null, instead of failing validation later.
    if (value[key] === null && child['nullable'] !== true) {
      delete value[key];
      continue;
    }
    walk(value[key], child, p, removed, false);
  }
}

/**
 * Removes fields that `info.schema` does not declare, in place, and returns their dotted paths
 * (`spec.foo`, `spec.containers[0].bar`). Also drops `null` values of non-nullable fields without reporting them.
 */
export function pruneUnknownFields(info: KindInfo, obj: unknown): string[] {
  const removed: string[] = [];
  walk(obj, info.schema, '', removed, true);
  return removed;
}
