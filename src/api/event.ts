// Event (core v1, `ev`): a record of something that happened to an object, with Kubernetes' core/v1 fields so
// that `kubectl get events` and `describe` show ours. Events have no spec or status: the fields are top-level.

import type { DefaultingContext, KindInfo } from './kind.js';
import type { KubeObject } from './meta.js';
import { enumOf, int, obj, resourceSchema, str } from './schema.js';

export const EVENT_TYPES = ['Normal', 'Warning'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface ObjectReference {
  apiVersion?: string;
  kind?: string;
  namespace?: string;
  name?: string;
  uid?: string;
  resourceVersion?: string;
  fieldPath?: string;
}

/** Named CoreEvent so it does not shadow the DOM/Node `Event` class in code that imports it. */
export interface CoreEvent extends KubeObject<never, never> {
  involvedObject: ObjectReference;
  reason?: string;
  message?: string;
  type?: EventType;
  count?: number;
  firstTimestamp?: string;
  lastTimestamp?: string;
  eventTime?: string;
  source?: { component?: string; host?: string };
  reportingComponent?: string;
  reportingInstance?: string;
  action?: string;
}

const objectReference = obj({
  apiVersion: str(),
  kind: str(),
  namespace: str(),
  name: str(),
  uid: str(),
  resourceVersion: str(),
  fieldPath: str(),
});

const schema = resourceSchema({
  description: 'Event records something that happened to an object.',
  topLevel: {
    involvedObject: objectReference,
    reason: str(),
    message: str(),
    type: enumOf(EVENT_TYPES),
    count: int({ minimum: 0 }),
    firstTimestamp: str({ nullable: true }),
    lastTimestamp: str({ nullable: true }),
    eventTime: str({ nullable: true }),
    source: obj({ component: str(), host: str() }),
    reportingComponent: str(),
    reportingInstance: str(),
    action: str(),
  },
  required: ['involvedObject'],
});

/** RFC 3339 with second precision, as Kubernetes writes metav1.Time. */
export function kubeTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function defaultOnCreate(o: KubeObject, ctx: DefaultingContext): void {
  const e = o as CoreEvent;
  e.type ??= 'Normal';
  e.count ??= 1;
  const now = kubeTime(ctx.now());
  e.firstTimestamp ??= e.lastTimestamp ?? now;
  e.lastTimestamp ??= e.firstTimestamp;
}

export const eventInfo: KindInfo = {
  group: '',
  version: 'v1',
  kind: 'Event',
  listKind: 'EventList',
  plural: 'events',
  singular: 'event',
  shortNames: ['ev'],
  namespaced: true,
  hasStatusSubresource: false,
  hasSpec: false,
  printerColumns: [
    { name: 'Last Seen', jsonPath: '.lastTimestamp', type: 'date' },
    { name: 'Type', jsonPath: '.type', type: 'string' },
    { name: 'Reason', jsonPath: '.reason', type: 'string' },
    { name: 'Object', jsonPath: '.involvedObject.name', type: 'string' },
    { name: 'Kind', jsonPath: '.involvedObject.kind', type: 'string', priority: 1 },
    { name: 'Count', jsonPath: '.count', type: 'integer', priority: 1 },
    { name: 'Message', jsonPath: '.message', type: 'string' },
  ],
  schema,
  defaultOnCreate,
};
