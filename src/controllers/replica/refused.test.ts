// The Replica controller over the real store, the real InstanceManager controller and a fake instance manager that
// refuses to create the replica (400, as for a disk outside its data roots): the refusal is in the Replica's
// InstanceReady condition, where a person looks, and not only in the manager's log.

import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import { LONGHORN_FINALIZER } from '../../api/labels.js';
import { LONGHORN_API_VERSION } from '../../api/meta.js';
import type { Replica } from '../../api/replica.js';
import { openStore } from '../../store/index.js';
import type { ResourceStore } from '../../store/resource-store.js';
import { waitFor } from '../../../test/helpers/processes.js';
import { FIXTURE, runWithManagers, seedNodeWithManager } from '../instance-manager/fixtures.js';
import { replicaController } from './index.js';

const { namespace: NS, node: NODE, im: IM } = FIXTURE;
const REFUSAL = 'replica.dir "/late-disk/replicas/v-1" is not inside the data roots of this instance manager (/disk-1)';
let store: ResourceStore;
let closeStore: () => Promise<void>;
let stop: (() => Promise<void>) | undefined;
const watchers = new Set<ServerResponse>();

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const json = (code: number, body: unknown) => res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  if (url.pathname === '/v1/version') return json(200, { apiVersion: 2, apiMinVersion: 2 });
  if (url.pathname === '/v1/instances' && req.method === 'POST') return json(400, { code: 'InvalidArgument', message: REFUSAL });
  if (url.pathname !== '/v1/instances' || url.searchParams.get('watch') !== 'true') return json(404, { code: 'NotFound', message: 'no route' });
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  res.write(`${JSON.stringify({ type: 'SNAPSHOT', instances: [] })}\n`);
  watchers.add(res);
  res.on('close', () => watchers.delete(res));
});

before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  ({ store, close: closeStore } = await openStore({ path: ':memory:' }));
  await seedNodeWithManager(store, (server.address() as { port: number }).port, {});
  await store.create<Replica>({ apiVersion: LONGHORN_API_VERSION, kind: 'Replica', metadata: { name: 'r1', namespace: NS, finalizers: [LONGHORN_FINALIZER] }, spec: { nodeID: NODE, volumeName: 'v', volumeSize: '1048576', desireState: 'running', diskPath: '/late-disk', dataDirectoryName: 'v-1' } } as Replica);
});

after(async () => {
  await stop?.();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await closeStore();
});

test("the instance manager's refusal to start a replica is in the Replica's InstanceReady condition", async () => {
  ({ stop } = await runWithManagers(store, (deps) => [replicaController({ store, ...deps })]));
  const cond = await waitFor('the refusal in the condition', async () => {
    const c = (await store.get<Replica>('Replica', NS, 'r1')).status?.conditions?.find((x) => x.type === 'InstanceReady');
    return c?.message?.includes('refused') ? c : undefined;
  }, 5000);
  assert.equal(cond.status, 'False');
  assert.match(cond.message ?? '', new RegExp(`^instance manager ${IM} refused to start the replica: POST .*/v1/instances: HTTP 400: .*not inside the data roots`));
});
