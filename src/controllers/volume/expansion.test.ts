// Offline expansion through the volume controller over the real store in memory, with a fake data plane written
// here: it starts and stops instances as their desireState asks, records the size each one started with, refuses
// (records) an engine started with replicas of another size or a replica started smaller than it was, and reports
// the engine's currentSize as the data plane's engine does. A volume that was attached is detached and grown: the
// engine's and replicas' specs get the new size, the volume says expansionRequired until the engine runs at it, and
// a replica added while it runs gets the engine's size.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Engine } from '../../api/engine.js';
import { engineNameFor } from '../../api/labels.js';
import { DEFAULT_NAMESPACE, LONGHORN_API_VERSION } from '../../api/meta.js';
import type { Replica } from '../../api/replica.js';
import type { Volume } from '../../api/volume.js';
import { EventRecorder } from '../../controller-kit/events.js';
import { InformerFactory } from '../../controller-kit/informer-factory.js';
import { silentLogger } from '../../controller-kit/log.js';
import { runControllers } from '../../controller-kit/testing.js';
import { openStore } from '../../store/index.js';
import type { ResourceStore } from '../../store/resource-store.js';
import { volumeAdmission } from './admission.js';
import { idle, replicaSizeFor } from './expansion.js';
import { volumeController } from './index.js';
import { readyNode } from './testing.js';

const NS = DEFAULT_NAMESPACE;
const GiB = 2 ** 30;
let store: ResourceStore;
let closeStore: () => Promise<void>;
let stop: () => Promise<void>;
let dataPlane: NodeJS.Timeout;

/** What the fake data plane saw: sizes instances started with, the size each replica directory has, violations. */
const seen = { engineStarts: [] as string[], replicaStarts: new Map<string, string[]>(), dirSize: new Map<string, bigint>(), violations: [] as string[] };

const node = (name: string) => readyNode(store, NS, name);

/** One step of the fake data plane: instances follow their desireState. */
async function step(): Promise<void> {
  const replicas = (await store.list<Replica>('Replica', { namespace: NS })).items;
  let port = 7000;
  for (const r of replicas) {
    const name = r.metadata.name ?? '';
    port++;
    const running = r.status?.currentState === 'running';
    if (r.spec?.desireState === 'running' && !running) {
      const size = BigInt(r.spec.volumeSize ?? '0');
      if (size < (seen.dirSize.get(name) ?? 0n)) seen.violations.push(`replica ${name} started smaller (${size}) than its directory`);
      seen.dirSize.set(name, size > (seen.dirSize.get(name) ?? 0n) ? size : (seen.dirSize.get(name) ?? 0n));
      seen.replicaStarts.set(name, [...(seen.replicaStarts.get(name) ?? []), r.spec.volumeSize ?? '']);
      await store.update<Replica>({ ...r, status: { ...r.status, currentState: 'running', ip: '127.0.0.1', storageIP: '127.0.0.1', port } } as Replica, { subresource: 'status' });
    } else if (r.spec?.desireState !== 'running' && running) {
      await store.update<Replica>({ ...r, status: { ...r.status, currentState: 'stopped', ip: '', port: 0 } } as Replica, { subresource: 'status' });
    }
  }
  let e: Engine;
  try {
    e = await store.get<Engine>('Engine', NS, engineNameFor('v'));
  } catch {
    return;
  }
  const running = e.status?.currentState === 'running';
  const members = Object.keys(e.spec?.replicaAddressMap ?? {}).filter((n) => e.spec?.replicaAddressMap?.[n]);
  if (e.spec?.desireState === 'running' && !running) {
    for (const n of members) {
      const r = replicas.find((x) => x.metadata.name === n);
      if (r?.spec?.volumeSize !== e.spec.volumeSize) seen.violations.push(`engine started at ${e.spec.volumeSize} with replica ${n} of ${r?.spec?.volumeSize}`);
    }
    seen.engineStarts.push(e.spec.volumeSize ?? '');
    const modes = Object.fromEntries(members.map((n) => [n, 'RW']));
    await store.update<Engine>({ ...e, status: { ...e.status, currentState: 'running', currentSize: e.spec.volumeSize, endpoint: '/dev/longhorn/v', replicaModeMap: modes } } as Engine, { subresource: 'status' });
  } else if (running && e.spec?.desireState === 'running') {
    // Replicas added to a running engine are rebuilt: RW at once here.
    const modes = Object.fromEntries(members.map((n) => [n, 'RW']));
    if (JSON.stringify(modes) !== JSON.stringify(e.status?.replicaModeMap)) {
      await store.update<Engine>({ ...e, status: { ...e.status, replicaModeMap: modes } } as Engine, { subresource: 'status' });
    }
  } else if (e.spec?.desireState !== 'running' && running) {
    await store.update<Engine>({ ...e, status: { ...e.status, currentState: 'stopped', endpoint: '', replicaModeMap: {} } } as Engine, { subresource: 'status' });
  }
}

async function until<T>(what: string, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 8000;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}: ${JSON.stringify((await store.get<Volume>('Volume', NS, 'v')).status)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const volume = () => store.get<Volume>('Volume', NS, 'v');
const mine = async () => (await store.list<Replica>('Replica', { namespace: NS })).items.filter((r) => r.spec?.volumeName === 'v' && !r.metadata.deletionTimestamp);
const engine = () => store.get<Engine>('Engine', NS, engineNameFor('v'));
const inState = (state: string) => until(`volume state ${state}`, async () => ((await volume()).status?.state === state ? true : undefined));
const eventsOf = async (reason: string) => (await store.list('Event', { namespace: NS })).items.map((e) => e as { reason?: string; message?: string }).filter((e) => e.reason === reason);

before(async () => {
  ({ store, close: closeStore } = await openStore({ path: ':memory:', admission: [volumeAdmission] }));
  for (const n of ['node-1', 'node-2', 'node-3']) await node(n);
  const informers = new InformerFactory({ store, logger: silentLogger });
  const events = new EventRecorder({ store, component: 'volume-controller', logger: silentLogger });
  stop = await runControllers(informers, volumeController({ store, informers, events }));
  let busy = false;
  dataPlane = setInterval(() => {
    if (busy) return;
    busy = true;
    step().catch(() => undefined).finally(() => (busy = false));
  }, 10);
});

after(async () => {
  clearInterval(dataPlane);
  await stop();
  await closeStore();
});

test('a detached volume grows: engine and replica specs first, the data plane at the next attach', async () => {
  await store.create<Volume>({ apiVersion: LONGHORN_API_VERSION, kind: 'Volume', metadata: { name: 'v', namespace: NS }, spec: { size: String(GiB), numberOfReplicas: 2 } });
  await inState('detached');
  await store.patch('Volume', NS, 'v', 'merge', { spec: { nodeID: 'node-1' } });
  await inState('attached');
  assert.deepEqual(seen.engineStarts, [String(GiB)]);
  await assert.rejects(store.patch('Volume', NS, 'v', 'merge', { spec: { size: String(2 * GiB) } }), /a volume is expanded offline: detach it first \(it is attached to node-1\)/);

  await store.patch('Volume', NS, 'v', 'merge', { spec: { nodeID: '' } });
  await inState('detached');
  await store.patch('Volume', NS, 'v', 'merge', { spec: { size: String(2 * GiB) } });
  await until('the new size in the engine and replica specs', async () => {
    const sizes = [(await engine()).spec?.volumeSize, ...(await mine()).map((r) => r.spec?.volumeSize)];
    return sizes.every((s) => s === String(2 * GiB)) ? true : undefined;
  });
  await until('expansionRequired', async () => ((await volume()).status?.expansionRequired === true ? true : undefined));
  assert.match((await eventsOf('Expanding'))[0]?.message ?? '', /^volume v grows from 1Gi to 2Gi; its replicas grow when they next start$/);
  assert.equal((await engine()).status?.currentSize, String(GiB), 'the data plane has not grown yet');

  await store.patch('Volume', NS, 'v', 'merge', { spec: { nodeID: 'node-1' } });
  await inState('attached');
  await until('expansionRequired cleared', async () => ((await volume()).status?.expansionRequired === false ? true : undefined));
  assert.deepEqual(seen.engineStarts, [String(GiB), String(2 * GiB)], 'the engine started again at the new size');
  for (const r of await mine()) assert.deepEqual(seen.replicaStarts.get(r.metadata.name ?? ''), [String(GiB), String(2 * GiB)]);
  assert.equal((await engine()).status?.currentSize, String(2 * GiB));
  assert.match((await eventsOf('Expanded'))[0]?.message ?? '', /^volume v runs at its new size 2Gi$/);
  assert.deepEqual(seen.violations, []);
});

test('a replica added while the engine runs gets the engine size', async () => {
  await store.patch('Volume', NS, 'v', 'merge', { spec: { numberOfReplicas: 3 } });
  const added = await until('a third replica', async () => (await mine()).find((r) => r.spec?.nodeID === 'node-3'));
  assert.equal(added.spec?.volumeSize, String(2 * GiB));
  await until('it to join the engine', async () => ((await engine()).status?.replicaModeMap?.[added.metadata.name ?? ''] === 'RW' ? true : undefined));
  assert.deepEqual(seen.violations, []);
});

test('sizes for replicas: the engine size while it is not idle, the volume size once it is', () => {
  const e = (desireState: string, currentState: string) => ({ metadata: {}, spec: { volumeSize: '100', desireState }, status: { currentState } }) as unknown as Engine;
  assert.equal(replicaSizeFor('200', e('running', 'running')), '100');
  assert.equal(replicaSizeFor('200', e('stopped', 'stopping')), '100');
  assert.equal(replicaSizeFor('200', e('stopped', 'unknown')), '100', 'a node that cannot be asked may still run it');
  assert.equal(replicaSizeFor('200', e('stopped', 'stopped')), '200');
  assert.equal(replicaSizeFor('200', undefined), '200');
  assert.ok(idle(e('stopped', 'error')));
  assert.ok(!idle(e('running', 'stopped')));
});
