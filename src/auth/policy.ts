// Who may do what on the manager's API: three roles, decided from the request line (and, for a node agent's pod
// writes, the pod's node). Pure apart from the `podNode` and `volumeNode` lookups the caller supplies.
//
//   admin  everything, except writing read-only settings (nobody may, through any API: the manager pins them)
//   view   reads (GET/HEAD, watches, tables), but no pod logs and no image bytes (logs and images may hold secrets)
//   node   what a node agent does for its own node: read Pods of its node (list/watch with
//          fieldSelector spec.nodeName=<node>), Settings, its Node and Lease; create and update its own Node (and
//          status) and Lease; update (finalizers, annotations, status) Pods that run on it; for its pods' claims,
//          read a PersistentVolumeClaim, PersistentVolume or Volume by name, and set a Volume's spec.nodeID to
//          itself (attach) or from itself to '' (detach). Nothing else.

import type { Identity } from './tokens.js';

export interface ApiRequest {
  method: string;
  /** The URL path, percent-decoded per segment, without the query. */
  segments: string[];
  query: URLSearchParams;
  /** Parsed body (creates name their object there), when there is one. */
  body?: unknown;
}

export interface PolicyContext {
  /** The node a pod runs on (`spec.nodeName`), or undefined when there is no such pod. */
  podNode(namespace: string, name: string): Promise<string | undefined>;
  /** The node a Longhorn Volume is attached to (`spec.nodeID`; '' when detached), or undefined when there is none. */
  volumeNode(namespace: string, name: string): Promise<string | undefined>;
  isReadOnlySetting(name: string): boolean;
}

const READ = new Set(['GET', 'HEAD']);

interface ResourceRef {
  plural: string;
  namespace: string;
  name: string;
  subresource: string;
}

/** `/api/v1/...` and `/apis/g/v/...` resource paths; undefined for discovery and everything else. */
export function resourceRef(segments: string[]): ResourceRef | undefined {
  let rest: string[];
  if (segments[0] === 'api' && segments.length >= 3) rest = segments.slice(2);
  else if (segments[0] === 'apis' && segments.length >= 4) rest = segments.slice(3);
  else return undefined;
  let namespace = '';
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1] ?? '';
    rest = rest.slice(2);
  }
  return { plural: rest[0] ?? '', namespace, name: rest[1] ?? '', subresource: rest[2] ?? '' };
}

function isDiscovery(segments: string[]): boolean {
  const [first] = segments;
  if (first === 'version' || first === 'openapi') return true;
  if (first === 'api') return segments.length <= 2;
  if (first === 'apis') return segments.length <= 3;
  return false;
}

function bodyName(body: unknown): string | undefined {
  const name = (body as { metadata?: { name?: unknown } } | undefined)?.metadata?.name;
  return typeof name === 'string' ? name : undefined;
}

/** Why `id` may not make request `r`, or undefined when it may. */
export async function refusal(id: Identity, r: ApiRequest, ctx: PolicyContext): Promise<string | undefined> {
  const read = READ.has(r.method);
  const ref = resourceRef(r.segments);
  const v1 = r.segments[0] === 'v1';

  // Read-only settings, for every role and both APIs.
  if (!read) {
    const setting = ref?.plural === 'settings' ? ref.name : v1 && r.segments[1] === 'settings' ? (r.segments[2] ?? '') : undefined;
    if (setting !== undefined) {
      if (setting === '' && r.method === 'DELETE') return 'settings cannot be deleted as a collection';
      if (setting !== '' && ctx.isReadOnlySetting(setting)) return `setting "${setting}" is read-only: the manager decides its value`;
    }
  }

  if (id.role === 'admin') return undefined;

  if (id.role === 'view') {
    if (!read) return `role view may only read (${r.method} is a write)`;
    if (ref?.plural === 'pods' && ref.subresource === 'log') return 'role view may not read pod logs (they may hold secrets)';
    if (v1 && r.segments[1] === 'backingimages' && (r.segments[3] === 'download' || r.segments[3] === 'upload')) {
      return 'role view may not read image data';
    }
    return undefined;
  }

  // role node
  const node = id.node ?? '';
  if (read && isDiscovery(r.segments)) return undefined;
  if (!ref) return `a node credential may only use the Kubernetes resource API (not ${r.segments[0] === undefined ? '/' : `/${r.segments[0]}`})`;
  const { plural, name, subresource } = ref;
  if (read) {
    if (plural === 'settings' || ((plural === 'nodes' || plural === 'leases') && (name === '' || name === node))) {
      return subresource === '' ? undefined : `a node credential may not read ${plural}/${subresource}`;
    }
    // The claims of its pods: a claim, its PV and its Volume, by name (what the agent attaches and mounts).
    if ((plural === 'persistentvolumeclaims' || plural === 'persistentvolumes' || plural === 'volumes') && name !== '' && subresource === '') {
      return undefined;
    }
    if (plural === 'pods' && subresource === '') {
      if (name === '') {
        return r.query.get('fieldSelector') === `spec.nodeName=${node}`
          ? undefined
          : `a node credential lists only the pods of its node (fieldSelector=spec.nodeName=${node})`;
      }
      return (await ctx.podNode(ref.namespace, name)) === node ? undefined : `pod "${name}" does not run on node ${node}`;
    }
    return `a node credential may not read ${plural}`;
  }
  if ((plural === 'nodes' || plural === 'leases') && (subresource === '' || subresource === 'status')) {
    if (r.method === 'DELETE') return `a node credential may not delete ${plural}`;
    const target = name === '' && r.method === 'POST' ? bodyName(r.body) : name;
    return target === node ? undefined : `a node credential may only write its own ${plural === 'nodes' ? 'Node' : 'Lease'} (${node})`;
  }
  if (plural === 'pods' && name !== '' && (r.method === 'PUT' || r.method === 'PATCH') && (subresource === '' || subresource === 'status')) {
    return (await ctx.podNode(ref.namespace, name)) === node ? undefined : `pod "${name}" does not run on node ${node}`;
  }
  if (plural === 'volumes' && name !== '' && r.method === 'PATCH' && subresource === '') return volumeAttach(node, ref.namespace, name, r.body, ctx);
  return `a node credential may not ${r.method} ${plural}${subresource ? `/${subresource}` : ''}`;
}

/**
 * A node attaches a pod's Volume to itself, and detaches it from itself, by a merge patch of `spec.nodeID` alone
 * (plus the resourceVersion it read): never another change, never another node's attachment.
 */
async function volumeAttach(node: string, namespace: string, name: string, body: unknown, ctx: PolicyContext): Promise<string | undefined> {
  const b = body as { spec?: Record<string, unknown>; metadata?: Record<string, unknown> } | undefined;
  const keys = Object.keys(b ?? {});
  const only = (o: Record<string, unknown> | undefined, allowed: string[]) => Object.keys(o ?? {}).every((k) => allowed.includes(k));
  const nodeID = b?.spec?.['nodeID'];
  if (!keys.every((k) => k === 'spec' || k === 'metadata') || !only(b?.spec, ['nodeID']) || !only(b?.metadata, ['resourceVersion']) || typeof nodeID !== 'string') {
    return 'a node credential may only set spec.nodeID of a Volume (attach to itself, detach from itself)';
  }
  const current = await ctx.volumeNode(namespace, name);
  if (current === undefined) return `volume "${name}" does not exist`;
  if (nodeID === node && (current === '' || current === node)) return undefined;
  if (nodeID === '' && current === node) return undefined;
  return `a node credential may attach a Volume to its own node (${node}) only, and detach it only from there (it is on ${current || 'no node'})`;
}
