// Shapes shared by the Longhorn /v1 API: collections and error bodies in the Rancher API style Longhorn's UI and
// clients expect.

import { StoreError } from '../../store/errors.js';
import type { KubeStatus } from '../status.js';

export function collection(resourceType: string, data: unknown[], self: string) {
  return { type: 'collection', resourceType, data, links: { self } };
}

export function requireObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new StoreError('BadRequest', 'the request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

/** The /v1 error body for a Status: same message and HTTP code, Rancher-style fields. */
export function v1Error(st: KubeStatus) {
  return { type: 'error', status: st.code, code: st.reason, message: st.message, detail: st.details ?? {} };
}

/** A 422 naming a field of a /v1 volume body, in the store's message format (`Volume "v" is invalid: size: …`). */
export function invalidField(volume: string, field: string, value: unknown, detail: string): StoreError {
  const message = `Invalid value: ${JSON.stringify(value) ?? String(value)}: ${detail}`;
  return new StoreError('Invalid', `Volume "${volume}" is invalid: ${field}: ${message}`, {
    causes: [{ field, reason: 'FieldValueInvalid', message }],
    details: { kind: 'volumes.longhorn.io', name: volume },
  });
}
