// The InstanceManager controller tells each instance manager the node's registered disks (PUT /v1/data-roots): at
// once, again when a disk is added, and again when its stream starts over (a restarted manager is back on the list
// its pod was made with). Real store, fake instance manager on a local port recording what it is told.

import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import { DEFAULT_NAMESPACE } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import { openStore } from '../../store/index.js';
import type { ResourceStore } from '../../store/resource-store.js';
import { FIXTURE, runWithManagers, seedNodeWithManager } from './fixtures.js';
import { dataRootsOf } from './index.js';
import { waitFor } from '../../../test/helpers/processes.js';

const NS = DEFAULT_NAMESPACE;
let store: ResourceStore;
let closeStore: () => Promise<void>;
let stop: (() => Promise<void>) | undefined;

const told: string[][] = [];
const watchers = new Set<ServerResponse>();
const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const json = (body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  if (url.pathname === '/v1/version') return json({ apiVersion: 2, apiMinVersion: 2 });
  if (url.pathname === '/v1/data-roots' && req.method === 'PUT') {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const roots = (JSON.parse(body) as { dataRoots: string[] }).dataRoots;
      told.push(roots);
      json({ dataRoots: roots });
    });
    return;
  }
  if (url.pathname !== '/v1/instances' || url.searchParams.get('watch') !== 'true') return res.writeHead(404).end();
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  res.write(`${JSON.stringify({ type: 'SNAPSHOT', instances: [] })}\n`);
  watchers.add(res);
  res.on('close', () => watchers.delete(res));
});

const ok = (type: string) => ({ type, status: 'True', reason: '', message: '', lastProbeTime: '', lastTransitionTime: '' });

/** Adds disk `name` at `path` to the node's spec and, when `registered`, its status as the agent would. */
async function addDisk(name: string, path: string, registered: boolean) {
  const node = await store.get<Node>('Node', NS, FIXTURE.node);
  node.spec = { ...node.spec, disks: { ...(node.spec?.disks ?? {}), [name]: { path, allowScheduling: true, tags: [] } } } as NonNullable<Node['spec']>;
  const updated = (await store.update<Node>(node)).object;
  if (!registered) return;
  updated.status = { ...updated.status, diskStatus: { ...(updated.status?.diskStatus ?? {}), [name]: { diskUUID: `uuid-${name}`, diskPath: path, conditions: [ok('Ready')] } } } as NonNullable<Node['status']>;
  await store.update<Node>(updated, { subresource: 'status' });
}

before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  ({ store, close: closeStore } = await openStore({ path: ':memory:' }));
  await seedNodeWithManager(store, (server.address() as { port: number }).port, {});
  await addDisk('disk-1', '/disks/one', true);
  ({ stop } = await runWithManagers(store));
});

after(async () => {
  await stop?.();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await closeStore();
});

const last = () => JSON.stringify(told.at(-1));

test('the manager is told the registered disks, a disk added later, and again after its stream starts over', async () => {
  await waitFor('the manager to be told disk-1', async () => last() === JSON.stringify(['/disks/one']), 5000);

  // In the spec only: the agent has not registered it, so no replica may go there yet.
  await addDisk('disk-2', '/disks/two', false);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(last(), JSON.stringify(['/disks/one']));
  await addDisk('disk-2', '/disks/two', true);
  await waitFor('the manager to be told disk-2', async () => last() === JSON.stringify(['/disks/one', '/disks/two']), 5000);

  // A restarted manager: its stream ends, the controller connects again and tells it once more.
  const before = told.length;
  for (const w of watchers) w.destroy();
  await waitFor('the list to be sent again', async () => told.length > before, 10_000);
  assert.equal(last(), JSON.stringify(['/disks/one', '/disks/two']));
});

test('dataRootsOf: registered disks not reported broken, sorted', () => {
  const ready = [{ type: 'Ready', status: 'True' }];
  const node = {
    spec: { disks: { b: { path: '/b' }, a: { path: '/a' }, c: { path: '/c' }, d: { path: '/d' }, e: { path: '/e' } } },
    status: { diskStatus: { a: { diskUUID: 'x', conditions: ready }, b: { diskUUID: 'y' }, c: { conditions: ready }, d: { diskUUID: 'z', conditions: [{ type: 'Ready', status: 'False' }] }, e: { diskUUID: 'w', conditions: [] } } },
  } as unknown as Node;
  assert.deepEqual(dataRootsOf(node), ['/a', '/b', '/e'], 'a: Ready; b, e: not reported yet; c: not registered; d: not Ready');
});
