// The Replica controller over the real store, the real InstanceManager controller and a fake instance manager (its
// HTTP API on a local port). A new leader starts with the InstanceManager status the previous leader left, which
// may be behind what that leader recorded in the Replica: here the Replica says running (the instance manager's
// answer to a create) while the InstanceManager status still says starting. Until this manager's own stream has
// caught up, that older report must not set the replica back to starting: a flip the volume would see as a restart.

import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import type { InstanceManager } from '../../api/instance-manager.js';
import { LONGHORN_FINALIZER } from '../../api/labels.js';
import { LONGHORN_API_VERSION } from '../../api/meta.js';
import type { Replica } from '../../api/replica.js';
import type { Instance } from '../../instance-manager/instance.js';
import { openStore } from '../../store/index.js';
import type { ResourceStore } from '../../store/resource-store.js';
import { waitFor } from '../../../test/helpers/processes.js';
import { FIXTURE, runWithManagers, seedNodeWithManager } from '../instance-manager/fixtures.js';
import { replicaController } from './index.js';

const { namespace: NS, node: NODE, im: IM } = FIXTURE;
const UID = '7d0c1c52-0000-4000-8000-000000000001';
const r1 = { name: 'r1', type: 'replica', state: 'running', address: '127.0.0.1:7000', pid: 1, startedAt: '', uid: UID } as Instance;
let store: ResourceStore;
let closeStore: () => Promise<void>;
let stop: (() => Promise<void>) | undefined;
const ac = new AbortController();
const watchers = new Set<ServerResponse>();
let creates = 0;

/** The fake instance manager: r1 runs; its stream's SNAPSHOT comes 800 ms after the watch connects (a slow start). */
const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const json = (code: number, body: unknown) => res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  if (url.pathname === '/v1/version') return json(200, { apiVersion: 2, apiMinVersion: 2 });
  if (url.pathname !== '/v1/instances') return json(404, {});
  if (req.method === 'POST') {
    creates++;
    return json(200, r1);
  }
  if (url.searchParams.get('watch') !== 'true') return json(200, { instances: [r1] });
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  watchers.add(res);
  res.on('close', () => watchers.delete(res));
  setTimeout(() => res.write(`${JSON.stringify({ type: 'SNAPSHOT', instances: [r1] })}\n`), 800);
});

before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  ({ store, close: closeStore } = await openStore({ path: ':memory:' }));
  // As the previous leader left them: the InstanceManager status says r1 is starting; the Replica says running.
  await seedNodeWithManager(store, port, { r1: { spec: { name: 'r1' }, status: { ...r1, state: 'starting', address: undefined } } });
  const { object: rep } = await store.create<Replica>({ apiVersion: LONGHORN_API_VERSION, kind: 'Replica', metadata: { name: 'r1', namespace: NS, finalizers: [LONGHORN_FINALIZER] }, spec: { nodeID: NODE, volumeName: 'v', volumeSize: '1048576', desireState: 'running', diskPath: '/tmp/none', dataDirectoryName: 'v-1' } } as Replica);
  await store.update<Replica>({ ...rep, status: { currentState: 'running', started: true, instanceManagerName: IM, ip: '127.0.0.1', storageIP: '127.0.0.1', port: 7000, uuid: UID } } as Replica, { subresource: 'status' });
});

after(async () => {
  ac.abort();
  await stop?.();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await closeStore();
});

test('an older report of the incarnation a Replica recorded does not set it back to starting', async () => {
  const { resourceVersion } = await store.list('Replica', { namespace: NS });
  const seen: string[] = [];
  const watching = (async () => {
    for await (const ev of store.watch<Replica>('Replica', { namespace: NS, resourceVersion, signal: ac.signal })) seen.push(ev.object.status?.currentState ?? '');
  })().catch(() => undefined);
  ({ stop } = await runWithManagers(store, (deps) => [replicaController({ store, ...deps })]));
  await waitFor('the stream to report r1 running', async () => {
    const im = await store.get<InstanceManager>('InstanceManager', NS, IM);
    return (im.status?.instanceReplicas?.['r1']?.status as { state?: string } | undefined)?.state === 'running';
  }, 5000);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(seen.filter((s) => s !== 'running'), [], `Replica states written: ${seen.join(' → ')}`);
  assert.equal((await store.get<Replica>('Replica', NS, 'r1')).status?.currentState, 'running');
  assert.equal(creates, 0, 'nothing is created for an instance the status lists');
  void watching;
});
