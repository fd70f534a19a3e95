// Pieces shared by several kinds: data engines, instance states, the Age column, and small helpers for the
// `validate` hooks (which receive untyped objects that only the schema has vouched for).

import { isDeepStrictEqual } from 'node:util';

import { immutable, notSupported } from './field-errors.js';
import type { FieldError, PrinterColumn } from './kind.js';
import type { KubeObject } from './meta.js';

/** Longhorn's data engines. Stratum implements only v1; v2 objects are accepted by the schema and refused on create. */
export const DATA_ENGINES = ['v1', 'v2'] as const;
export type DataEngine = (typeof DATA_ENGINES)[number];
export const SUPPORTED_DATA_ENGINES: readonly DataEngine[] = ['v1'];

/** Longhorn's `InstanceState`, shared by Engine and Replica (`spec.desireState`, `status.currentState`). */
export const INSTANCE_STATES = ['running', 'stopped', 'error', 'starting', 'stopping', 'suspended', 'unknown'] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];

export const ageColumn: PrinterColumn = { name: 'Age', jsonPath: '.metadata.creationTimestamp', type: 'date' };

/** `obj[key]` when it is a plain object, else an empty one; for reading fields in `validate` hooks. */
export function record(parent: unknown, key: string): Record<string, unknown> {
  if (typeof parent !== 'object' || parent === null) return {};
  const v = (parent as Record<string, unknown>)[key];
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export function stringField(parent: Record<string, unknown>, key: string): string {
  const v = parent[key];
  return typeof v === 'string' ? v : '';
}

export function specOf(o: KubeObject | undefined): Record<string, unknown> {
  return record(o, 'spec');
}

export function statusOf(o: KubeObject | undefined): Record<string, unknown> {
  return record(o, 'status');
}

/** A string field that may be set once and then never changed (nor cleared). */
export function immutableOnceSet(field: string, now: string, before: string | undefined): FieldError[] {
  if (before === undefined || before === '' || now === before) return [];
  return [immutable(field, now)];
}

/** A field that may never change after create (empty counts as a value); map key order is not a change. */
export function immutableField(field: string, now: unknown, before: unknown): FieldError[] {
  return isDeepStrictEqual(now ?? null, before ?? null) ? [] : [immutable(field, now ?? null)];
}

/** Refuses data engines Stratum cannot run, on create only: stored objects keep validating. */
export function checkDataEngineOnCreate(field: string, value: string, old: KubeObject | undefined): FieldError[] {
  if (old !== undefined || value === '' || (SUPPORTED_DATA_ENGINES as readonly string[]).includes(value)) return [];
  return [notSupported(field, value, SUPPORTED_DATA_ENGINES)];
}
