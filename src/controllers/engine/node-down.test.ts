// The Engine controller over the real store, the real InstanceManager controller and a fake instance manager (its
// HTTP API on a local port) whose engine runs throughout. The node's agent stops answering for a while (Ready=False:
// the instance manager is unknown) and comes back, its data plane untouched. While the node is down the engine is
// unknown, not stopped; once it is back the engine must be running again. A recorded `stopped` for the same
// incarnation made the report "running" look stale, and the volume stayed attaching for ever (seen on `stratum up`
// with a node agent SIGSTOPped for a minute).

import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import type { Engine } from '../../api/engine.js';
import { LONGHORN_FINALIZER } from '../../api/labels.js';
import { LONGHORN_API_VERSION } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Instance } from '../../instance-manager/instance.js';
import { openStore } from '../../store/index.js';
import type { ResourceStore } from '../../store/resource-store.js';
import { waitFor } from '../../../test/helpers/processes.js';
import { FIXTURE, runWithManagers, seedNodeWithManager } from '../instance-manager/fixtures.js';
import { engineController } from './index.js';

const { namespace: NS, node: NODE } = FIXTURE;
const UID = '7d0c1c52-0000-4000-8000-0000000000e1';
let store: ResourceStore;
let closeStore: () => Promise<void>;
let stop: (() => Promise<void>) | undefined;
let stopMonitors: (() => Promise<void>) | undefined;
let e1: Instance;
const watchers = new Set<ServerResponse>();

/** The fake instance manager: engine e1 runs, with no replica, and answers its control API. */
const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const json = (code: number, body: unknown) => res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  const hold = (first: unknown) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    watchers.add(res);
    res.on('close', () => watchers.delete(res));
    if (first !== undefined) res.write(`${JSON.stringify(first)}\n`);
  };
  if (url.pathname === '/v1/version') return json(200, { apiVersion: 2, apiMinVersion: 2 });
  if (url.pathname === '/v1/instances') return url.searchParams.get('watch') === 'true' ? hold({ type: 'SNAPSHOT', instances: [e1] }) : json(200, { instances: [e1] });
  if (url.pathname === '/v1/engines/e1') return url.searchParams.get('watch') === 'true' ? hold(undefined) : json(200, { volume: 'v', size: 1048576, blockSize: 4096, state: 'healthy', replicas: [] });
  if (url.pathname === '/v1/engines/e1/snapshots') return json(200, { snapshots: [] });
  return json(404, { message: `no ${url.pathname}` });
});

async function setNodeReady(ready: boolean): Promise<void> {
  const node = await store.get<Node>('Node', NS, NODE);
  const status = ready ? 'True' : 'False';
  await store.update<Node>({ ...node, status: { ...node.status, conditions: [{ type: 'Ready', status, reason: '', message: '', lastProbeTime: '', lastTransitionTime: new Date().toISOString() }] } } as Node, { subresource: 'status' });
}

const engineState = async () => (await store.get<Engine>('Engine', NS, 'e1')).status?.currentState;

before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  e1 = { name: 'e1', type: 'engine', state: 'running', pid: 1, startedAt: '', uid: UID, control: `127.0.0.1:${port}`, nbd: 'nbd://127.0.0.1:10809/v' } as Instance;
  ({ store, close: closeStore } = await openStore({ path: ':memory:' }));
  await seedNodeWithManager(store, port, {});
  const { object: eng } = await store.create<Engine>({ apiVersion: LONGHORN_API_VERSION, kind: 'Engine', metadata: { name: 'e1', namespace: NS, finalizers: [LONGHORN_FINALIZER] }, spec: { nodeID: NODE, volumeName: 'v', volumeSize: '1048576', desireState: 'running', frontend: 'nbd', replicaAddressMap: {} } } as Engine);
  await store.update<Engine>({ ...eng, status: { currentState: 'running', uuid: UID } } as Engine, { subresource: 'status' });
});

after(async () => {
  await stopMonitors?.();
  await stop?.();
  for (const w of watchers) w.destroy();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await closeStore();
});

test('an engine whose node was down for a while is running again once the node is back', { timeout: 60_000 }, async () => {
  ({ stop } = await runWithManagers(store, (deps) => {
    const c = engineController({ store, ...deps });
    stopMonitors = c.stop;
    return [c.controller];
  }));
  await waitFor('the engine running', async () => ((await engineState()) === 'running' ? true : undefined), 10_000);

  await setNodeReady(false);
  await waitFor('the engine unknown', async () => ((await engineState()) === 'unknown' ? true : undefined), 10_000);
  // The controller asks again every 2 s while the manager is unknown: several passes, and it stays unknown.
  await new Promise((r) => setTimeout(r, 5000));
  assert.equal(await engineState(), 'unknown', 'not seen, so not stopped');

  await setNodeReady(true);
  await waitFor('the engine running again', async () => ((await engineState()) === 'running' ? true : undefined), 15_000);
  const st = (await store.get<Engine>('Engine', NS, 'e1')).status;
  assert.equal(st?.endpoint, 'nbd://127.0.0.1:10809/v');
  assert.deepEqual(st?.conditions, []);
});
