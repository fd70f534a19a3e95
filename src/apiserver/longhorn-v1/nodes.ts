// Longhorn's `/v1/nodes` REST API: list and get nodes with their disks (spec and status merged per disk, as
// Longhorn's API does), `PUT /v1/nodes/{name}` for node scheduling, eviction and tags, and
// `POST /v1/nodes/{name}?action=diskUpdate` for per-disk scheduling, eviction, reservation and tags.
//
// Differences from Longhorn, on purpose: diskUpdate merges — a disk left out of the body is left alone instead of
// removed — because disks are registered by each node agent from its `--disk` flags, and a UI that sent a stale
// map must not drop a disk that replicas live on. A new disk may be added (with a path); an existing disk's path
// cannot change (that would be a different disk).

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { DEFAULT_NAMESPACE } from '../../api/meta.js';
import type { DiskSpec, Node } from '../../api/node.js';
import { AGENT_URL_ANNOTATION } from '../../api/node-contract.js';
import { isConflict, StoreError } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { collection, requireObject } from './common.js';
import { conditionMap } from './volume-resource.js';

const ACTIONS = ['diskUpdate'];
const MAX_CONFLICT_RETRIES = 8;
const TAG = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** The node's IP as its agent published it (the host of the agent URL). */
function addressOf(n: Node): string {
  const url = n.metadata.annotations?.[AGENT_URL_ANNOTATION];
  if (!url) return '';
  try {
    return new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return '';
  }
}

export function nodeResource(n: Node, base: string): Record<string, unknown> {
  const name = n.metadata.name ?? '';
  const spec = n.spec ?? {};
  const status = n.status ?? {};
  const disks: Record<string, unknown> = {};
  for (const [diskName, d] of Object.entries(spec.disks ?? {})) {
    const st = status.diskStatus?.[diskName] ?? {};
    disks[diskName] = {
      path: d.path ?? '',
      diskType: d.diskType ?? 'filesystem',
      diskDriver: d.diskDriver ?? '',
      allowScheduling: d.allowScheduling ?? false,
      evictionRequested: d.evictionRequested ?? false,
      storageReserved: d.storageReserved ?? 0,
      tags: d.tags ?? [],
      diskUUID: st.diskUUID ?? '',
      diskName,
      storageMaximum: st.storageMaximum ?? 0,
      storageAvailable: st.storageAvailable ?? 0,
      storageScheduled: st.storageScheduled ?? 0,
      scheduledReplica: st.scheduledReplica ?? {},
      scheduledBackingImage: st.scheduledBackingImage ?? {},
      filesystemType: st.filesystemType ?? '',
      instanceManagerName: st.instanceManagerName ?? '',
      conditions: conditionMap(st.conditions),
    };
  }
  const self = `${base}/v1/nodes/${encodeURIComponent(name)}`;
  return {
    id: name,
    type: 'node',
    name,
    address: addressOf(n),
    allowScheduling: spec.allowScheduling ?? false,
    evictionRequested: spec.evictionRequested ?? false,
    tags: spec.tags ?? [],
    region: status.region ?? '',
    zone: status.zone ?? '',
    instanceManagerCPURequest: spec.instanceManagerCPURequest ?? 0,
    autoEvicting: status.autoEvicting ?? false,
    conditions: conditionMap(status.conditions),
    disks,
    actions: Object.fromEntries(ACTIONS.map((a) => [a, `${self}?action=${a}`])),
    links: { self },
  };
}

function invalid(node: string, field: string, value: unknown, detail: string): StoreError {
  const message = `Invalid value: ${JSON.stringify(value) ?? String(value)}: ${detail}`;
  return new StoreError('Invalid', `Node "${node}" is invalid: ${field}: ${message}`, {
    causes: [{ field, reason: 'FieldValueInvalid', message }],
    details: { kind: 'nodes.longhorn.io', name: node },
  });
}

/** Longhorn's tag rules: strings of letters, digits, `_.-`; stored de-duplicated and sorted. */
function tagsFrom(node: string, field: string, v: unknown): string[] {
  if (!Array.isArray(v)) throw invalid(node, field, v, 'must be a list of tags');
  for (const t of v) {
    if (typeof t !== 'string' || !TAG.test(t)) throw invalid(node, field, t, 'a tag must start with a letter or digit and contain only letters, digits, "_", "." and "-"');
  }
  return [...new Set(v as string[])].sort();
}

function boolFrom(node: string, field: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw invalid(node, field, v, 'must be true or false');
  return v;
}

async function mutateNode(store: Store, name: string, change: (n: Node) => void): Promise<Node> {
  for (let attempt = 0; ; attempt++) {
    const n = structuredClone(await store.get<Node>('Node', DEFAULT_NAMESPACE, name));
    change(n);
    try {
      return (await store.update(n)).object;
    } catch (err) {
      if (!isConflict(err) || attempt >= MAX_CONFLICT_RETRIES) throw err;
    }
  }
}

/** PUT /v1/nodes/{name}: node-level fields only; everything else in the body (a whole node, from a UI) is ignored. */
export async function updateNode(store: Store, name: string, body: Record<string, unknown>): Promise<Node> {
  const patch: Record<string, unknown> = {};
  if (body['allowScheduling'] !== undefined) patch['allowScheduling'] = boolFrom(name, 'allowScheduling', body['allowScheduling']);
  if (body['evictionRequested'] !== undefined) patch['evictionRequested'] = boolFrom(name, 'evictionRequested', body['evictionRequested']);
  if (body['tags'] !== undefined && body['tags'] !== null) patch['tags'] = tagsFrom(name, 'tags', body['tags']);
  if (body['instanceManagerCPURequest'] !== undefined) patch['instanceManagerCPURequest'] = body['instanceManagerCPURequest'];
  return mutateNode(store, name, (n) => {
    n.spec = { ...(n.spec ?? {}), ...patch };
  });
}

/** POST /v1/nodes/{name}?action=diskUpdate: `{disks: {<disk name>: {allowScheduling, evictionRequested, storageReserved, tags, path}}}`. */
export async function updateDisks(store: Store, name: string, body: Record<string, unknown>): Promise<Node> {
  const disks = body['disks'];
  if (disks === null || typeof disks !== 'object' || Array.isArray(disks)) {
    throw new StoreError('BadRequest', `diskUpdate needs {"disks": {"<disk name>": {"allowScheduling": …, "tags": […]}}} for node "${name}"`);
  }
  return mutateNode(store, name, (n) => {
    const spec = (n.spec ??= {});
    const current = (spec.disks ??= {});
    for (const [diskName, raw] of Object.entries(disks as Record<string, unknown>)) {
      const field = `disks[${diskName}]`;
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalid(name, field, raw, 'must be an object');
      const u = raw as Record<string, unknown>;
      const old = current[diskName];
      const path = u['path'];
      if (path !== undefined && path !== '' && old && path !== old.path) {
        throw invalid(name, `${field}.path`, path, `the path of disk "${diskName}" is ${old.path ?? ''} and cannot change; add the new path as another disk`);
      }
      if (!old && (typeof path !== 'string' || path === '')) {
        throw invalid(name, `${field}.path`, path ?? '', `node "${name}" has no disk "${diskName}"; a new disk needs a path`);
      }
      const next: DiskSpec = old ? { ...old } : { path: path as string, diskType: 'filesystem', allowScheduling: true, evictionRequested: false, storageReserved: 0, tags: [], diskDriver: '' };
      if (u['allowScheduling'] !== undefined) next.allowScheduling = boolFrom(name, `${field}.allowScheduling`, u['allowScheduling']);
      if (u['evictionRequested'] !== undefined) next.evictionRequested = boolFrom(name, `${field}.evictionRequested`, u['evictionRequested']);
      if (u['storageReserved'] !== undefined) next.storageReserved = u['storageReserved'] as number;
      if (u['tags'] !== undefined && u['tags'] !== null) next.tags = tagsFrom(name, `${field}.tags`, u['tags']);
      current[diskName] = next;
    }
  });
}

export function registerNodeRoutes(app: FastifyInstance, store: Store): void {
  const base = (req: FastifyRequest) => `${req.protocol}://${req.headers.host ?? 'localhost'}`;

  app.get('/v1/nodes', async (req) => {
    const { items } = await store.list<Node>('Node', { namespace: DEFAULT_NAMESPACE });
    items.sort((a, b) => (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''));
    return collection('node', items.map((n) => nodeResource(n, base(req))), `${base(req)}/v1/nodes`);
  });

  app.get('/v1/nodes/:name', async (req) => {
    const { name } = req.params as { name: string };
    return nodeResource(await store.get<Node>('Node', DEFAULT_NAMESPACE, name), base(req));
  });

  app.put('/v1/nodes/:name', async (req) => {
    const { name } = req.params as { name: string };
    return nodeResource(await updateNode(store, name, requireObject(req.body)), base(req));
  });

  app.post('/v1/nodes/:name', async (req) => {
    const { name } = req.params as { name: string };
    const action = (req.query as { action?: string }).action;
    if (action !== 'diskUpdate') {
      throw new StoreError('BadRequest', `unknown action "${action ?? ''}" on node "${name}": use one of ${ACTIONS.join(', ')}`);
    }
    return nodeResource(await updateDisks(store, name, requireObject(req.body)), base(req));
  });
}
