// Events for refusals made outside controllers (admission checks, API actions), so `describe` shows why a request
// on an object was turned down. Written directly (no recorder: these run inside the store or a request); a failure
// to record never hides the refusal itself.

import { randomBytes } from 'node:crypto';
import type { KubeObject } from '../api/meta.js';
import type { Store } from '../store/types.js';

export function recordRefusal(store: Store, obj: KubeObject, reason: string, message: string): void {
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const ns = obj.metadata.namespace ?? 'default';
  void store
    .create({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${obj.metadata.name ?? 'object'}.${randomBytes(8).toString('hex')}`, namespace: ns },
      involvedObject: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        name: obj.metadata.name ?? '',
        namespace: ns,
        uid: obj.metadata.uid ?? '',
        resourceVersion: obj.metadata.resourceVersion ?? '',
      },
      reason,
      message,
      type: 'Warning',
      count: 1,
      firstTimestamp: now,
      lastTimestamp: now,
      source: { component: 'stratum-manager' },
      reportingComponent: 'stratum-manager',
    } as KubeObject)
    .catch(() => undefined);
}
