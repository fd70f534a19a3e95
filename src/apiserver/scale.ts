// The `scale` subresource (`/apis/apps/v1/namespaces/{ns}/statefulsets/{name}/scale`): an autoscaling/v1 Scale
// view of any kind whose KindInfo declares `scale`. `kubectl scale` GETs or PATCHes it; writes change only the
// desired replica count of the underlying object, through the store, so its rules and resourceVersions apply.

import type { KindInfo } from '../api/kind.js';
import type { KubeObject } from '../api/meta.js';
import { StoreError } from '../store/errors.js';
import { mergePatch } from '../store/merge-patch.js';
import type { Store, WriteOptions } from '../store/types.js';

export interface Scale {
  apiVersion: 'autoscaling/v1';
  kind: 'Scale';
  metadata: { name?: string; namespace?: string; uid?: string; resourceVersion?: string; creationTimestamp?: string };
  spec: { replicas: number };
  status: { replicas: number; selector: string };
}

type ScaleInfo = NonNullable<KindInfo['scale']>;

function at(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const k of path.split('.')) cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[k] : undefined;
  return cur;
}

/** A label selector (matchLabels) as the string form Scale.status.selector carries: `app=nginx,tier=web`. */
function selectorString(sel: unknown): string {
  const labels = (at(sel, 'matchLabels') ?? {}) as Record<string, string>;
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',');
}

export function toScale(scale: ScaleInfo, obj: KubeObject): Scale {
  const m = obj.metadata;
  return {
    apiVersion: 'autoscaling/v1',
    kind: 'Scale',
    metadata: {
      ...(m.name !== undefined ? { name: m.name } : {}),
      ...(m.namespace !== undefined ? { namespace: m.namespace } : {}),
      ...(m.uid !== undefined ? { uid: m.uid } : {}),
      ...(m.resourceVersion !== undefined ? { resourceVersion: m.resourceVersion } : {}),
      ...(m.creationTimestamp !== undefined ? { creationTimestamp: m.creationTimestamp } : {}),
    },
    spec: { replicas: Number(at(obj, scale.specReplicasPath) ?? 0) },
    status: { replicas: Number(at(obj, scale.statusReplicasPath) ?? 0), selector: selectorString(at(obj, scale.selectorPath)) },
  };
}

/** `{spec: {replicas: n}}` for path `spec.replicas`. */
function patchFor(path: string, value: number): Record<string, unknown> {
  return path.split('.').reduceRight<unknown>((inner, k) => ({ [k]: inner }), value) as Record<string, unknown>;
}

function replicasOf(s: unknown): number {
  const n = at(s, 'spec.replicas');
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
    throw new StoreError('Invalid', `Scale.spec.replicas must be a non-negative integer, got ${JSON.stringify(n ?? null)}`);
  }
  return n;
}

/**
 * GET, PUT or PATCH of the scale subresource. `patchType` is 'merge' or 'json' for PATCH (strategic merge patches
 * arrive here as merge patches: a Scale has no lists).
 */
export async function handleScale(
  store: Store,
  info: KindInfo,
  ns: string,
  name: string,
  method: string,
  body: unknown,
  patchType: 'merge' | 'json',
  write: WriteOptions,
): Promise<Scale> {
  const scale = info.scale;
  if (!scale) throw new StoreError('NotFound', `${info.plural} has no scale subresource`);
  const current = await store.get(info.kind, ns, name);
  if (method === 'GET') return toScale(scale, current);
  let replicas: number;
  let resourceVersion: string | undefined;
  if (method === 'PUT') {
    replicas = replicasOf(body);
    const rv = at(body, 'metadata.resourceVersion');
    resourceVersion = typeof rv === 'string' && rv !== '' ? rv : undefined;
  } else if (method === 'PATCH') {
    const view = toScale(scale, current);
    let patched: unknown;
    if (patchType === 'merge') patched = mergePatch(view, body);
    else {
      const { default: jp } = await import('fast-json-patch');
      patched = jp.applyPatch(structuredClone(view), body as never, true, false).newDocument;
    }
    replicas = replicasOf(patched);
  } else {
    throw new StoreError('MethodNotAllowed', `method ${method} is not supported on ${info.plural}/scale`);
  }
  const patch = { ...patchFor(scale.specReplicasPath, replicas), ...(resourceVersion ? { metadata: { resourceVersion } } : {}) };
  const { subresource: _sub, ...mainWrite } = write;
  const res = await store.patch(info.kind, ns, name, 'merge', patch, mainWrite);
  return toScale(scale, res.object);
}
