// The InstanceManager controller over the real store and a fake instance manager (its HTTP API on a local port):
// the status it keeps converges on what the instance manager reports, whatever order the instance manager's answers
// arrive in. The race that left a replica "starting" for good after a leader change: a full list taken before a
// change but written after it put the older view back over the newer one, and nothing came to correct it.

import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import type { InstanceManager } from '../../api/instance-manager.js';
import type { Instance } from '../../instance-manager/instance.js';
import { openStore } from '../../store/index.js';
import type { ResourceStore } from '../../store/resource-store.js';
import { FIXTURE, runWithManagers, seedNodeWithManager } from './fixtures.js';
import { waitFor } from '../../../test/helpers/processes.js';

const { namespace: NS, im: IM } = FIXTURE;
let store: ResourceStore;
let closeStore: () => Promise<void>;
let stop: (() => Promise<void>) | undefined;

/**
 * The fake instance manager: replica r1 is starting; 400 ms after a watch connects it is running (a MODIFIED line);
 * a plain list answers with the view of the moment it was asked, 300 ms later (a loaded machine): a list asked
 * between 100 and 400 ms is answered after the change, with r1 starting.
 */
let r1: Instance = { name: 'r1', type: 'replica', state: 'starting' } as Instance;
const watchers = new Set<ServerResponse>();
const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const json = (body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  if (url.pathname === '/v1/version') return json({ apiVersion: 2, apiMinVersion: 2 });
  if (url.pathname !== '/v1/instances') return res.writeHead(404).end();
  if (url.searchParams.get('watch') !== 'true') {
    const asked = structuredClone(r1);
    setTimeout(() => json({ instances: [asked] }), 300);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  res.write(`${JSON.stringify({ type: 'SNAPSHOT', instances: [r1] })}\n`);
  watchers.add(res);
  res.on('close', () => watchers.delete(res));
  setTimeout(() => {
    r1 = { ...r1, state: 'running', address: '127.0.0.1:7000' } as Instance;
    for (const w of watchers) w.write(`${JSON.stringify({ type: 'MODIFIED', instance: r1 })}\n`);
  }, 400);
});

const reported = async () => {
  const im = await store.get<InstanceManager>('InstanceManager', NS, IM);
  return (im.status?.instanceReplicas?.['r1']?.status as { state?: string } | undefined)?.state;
};

before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  ({ store, close: closeStore } = await openStore({ path: ':memory:' }));
  // The manager and its pod as a previous leader left them: running, with r1 starting.
  await seedNodeWithManager(store, port, { r1: { spec: { name: 'r1' }, status: { ...r1 } } });

  ({ stop } = await runWithManagers(store));
});

after(async () => {
  await stop?.();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await closeStore();
});

test('a change on the stream is not undone by an older view of the instances written after it', async () => {
  await waitFor('the instance manager to report r1 running', async () => r1.state === 'running', 5000);
  await waitFor('the status to say r1 is running', async () => (await reported()) === 'running', 3000).catch(async () => {
    assert.fail(`the instance manager reports r1 ${r1.state}; its InstanceManager status says ${await reported()}`);
  });
  // And it stays so: nothing older lands later.
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(await reported(), 'running');
});
