// The Store interface: Kubernetes resource semantics (resourceVersion concurrency, generation, finalizers,
// ownerReferences, watch from a resourceVersion). Callers — the API server, controllers, node agents over HTTP —
// see only this interface; the storage backend behind it (SQLite now, etcd later) is the Backend interface below.

import type { KubeObject } from '../api/meta.js';

export type PatchType = 'merge' | 'json';
export type PropagationPolicy = 'Orphan' | 'Background' | 'Foreground';

export interface ListOptions {
  /** Undefined or '' means all namespaces. */
  namespace?: string | undefined;
  /** Kubernetes label selector syntax: `a=b,c!=d,e in (x,y),!f,g`. */
  labelSelector?: string | undefined;
  /** Kubernetes field selector syntax over dotted paths: `spec.nodeName=n1,metadata.name!=x`. */
  fieldSelector?: string | undefined;
}

export interface WatchOptions extends ListOptions {
  /** Deliver every change after this resourceVersion. Undefined or '0': start with ADDED for every current object. */
  resourceVersion?: string | undefined;
  /** Emit BOOKMARK events carrying the latest resourceVersion (lets clients resume cheaply). */
  allowBookmarks?: boolean | undefined;
  signal: AbortSignal;
}

export interface ListResult<T extends KubeObject = KubeObject> {
  items: T[];
  resourceVersion: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';

export interface WatchEvent<T extends KubeObject = KubeObject> {
  type: WatchEventType;
  object: T;
}

export interface WriteOptions {
  /** Write the status subresource: only `status` (and metadata bookkeeping) changes. */
  subresource?: 'status' | undefined;
  /** Validate and default but do not persist (`dryRun=All`). */
  dryRun?: boolean | undefined;
  /** Set when the client asked for strict field validation: unknown fields are refused instead of dropped. */
  strictFields?: boolean | undefined;
}

export interface WriteResult<T extends KubeObject = KubeObject> {
  object: T;
  /** Human-readable warnings (dropped unknown fields, deprecated versions), sent as HTTP `Warning` headers. */
  warnings: string[];
}

export interface DeleteOptions {
  propagationPolicy?: PropagationPolicy | undefined;
  preconditions?: { uid?: string | undefined; resourceVersion?: string | undefined } | undefined;
  dryRun?: boolean | undefined;
}

export interface DeleteResult<T extends KubeObject = KubeObject> {
  /** The object as last seen: with deletionTimestamp when finalizers hold it, otherwise its final state. */
  object: T;
  /** False when finalizers keep the object around (HTTP 202), true when it is gone (HTTP 200). */
  deleted: boolean;
}

/** Kubernetes resource semantics. `kind` is the Kind name (`BackingImage`, `Pod`); namespace '' for cluster scope. */
export interface Store {
  get<T extends KubeObject = KubeObject>(kind: string, namespace: string, name: string): Promise<T>;
  list<T extends KubeObject = KubeObject>(kind: string, opts?: ListOptions): Promise<ListResult<T>>;
  create<T extends KubeObject = KubeObject>(obj: T, opts?: WriteOptions): Promise<WriteResult<T>>;
  /** Replace. When `metadata.resourceVersion` is set it must equal the stored one (else Conflict). */
  update<T extends KubeObject = KubeObject>(obj: T, opts?: WriteOptions): Promise<WriteResult<T>>;
  patch<T extends KubeObject = KubeObject>(
    kind: string,
    namespace: string,
    name: string,
    type: PatchType,
    patch: unknown,
    opts?: WriteOptions,
  ): Promise<WriteResult<T>>;
  delete<T extends KubeObject = KubeObject>(
    kind: string,
    namespace: string,
    name: string,
    opts?: DeleteOptions,
  ): Promise<DeleteResult<T>>;
  /** Every change after `resourceVersion`, exactly once, in order. Throws Gone when that version was compacted. */
  watch<T extends KubeObject = KubeObject>(kind: string, opts: WatchOptions): AsyncIterable<WatchEvent<T>>;
}

/**
 * A key/value backend with a global, monotonically increasing revision (etcd's model). Values are whole objects;
 * `rev` of an object is the revision that last wrote it and becomes its resourceVersion. Every mutating call is
 * durable when it resolves.
 */
export interface Backend {
  get(key: string): Promise<BackendEntry | undefined>;
  /** Every entry whose key starts with `prefix`, plus the revision the listing is consistent with. */
  list(prefix: string): Promise<{ entries: BackendEntry[]; rev: number }>;
  /** Fails with AlreadyExists if the key exists. `build` receives the revision the write will get. */
  create(key: string, build: (rev: number) => KubeObject): Promise<BackendEntry>;
  /** Fails with Conflict when the stored revision is not `expectedRev`, NotFound when missing. */
  update(key: string, expectedRev: number, build: (rev: number) => KubeObject): Promise<BackendEntry>;
  /** Fails with Conflict when the stored revision is not `expectedRev`. Returns the deleted value at its deletion rev. */
  delete(key: string, expectedRev: number, build: (rev: number) => KubeObject): Promise<BackendEntry>;
  /** Changes to keys under `prefix` with revision > `afterRev`; throws Gone if `afterRev` is older than history. */
  watch(prefix: string, afterRev: number, signal: AbortSignal): AsyncIterable<BackendEvent>;
  currentRev(): Promise<number>;
  close(): Promise<void>;
}

export interface BackendEntry {
  key: string;
  rev: number;
  value: KubeObject;
}

export interface BackendEvent {
  type: 'put' | 'delete';
  /** True for a put that created the key. */
  created: boolean;
  key: string;
  rev: number;
  value: KubeObject;
}
