// Object metadata and the generic object shape shared by every resource kind (Kubernetes' ObjectMeta, trimmed to
// what Stratum stores and serves).

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
}

/** Any stored object. Kind-specific types narrow `spec` and `status`. */
export interface KubeObject<Spec = unknown, Status = unknown> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: Spec;
  status?: Status;
  [extra: string]: unknown;
}

/** Kubernetes-style condition, used in status of most kinds. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastProbeTime?: string;
  lastTransitionTime?: string;
}

/** Recursively read-only view, for objects read from an informer cache. */
export type DeepReadonly<T> = T extends (infer E)[]
  ? readonly DeepReadonly<E>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

export const DEFAULT_NAMESPACE = 'longhorn-system';
export const LONGHORN_GROUP = 'longhorn.io';
export const LONGHORN_VERSION = 'v1beta2';
export const LONGHORN_API_VERSION = `${LONGHORN_GROUP}/${LONGHORN_VERSION}`;
