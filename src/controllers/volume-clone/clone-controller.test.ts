// The volume-clone controller over the in-memory store (with the Volume admission) and a fake data plane: engines'
// control APIs answer from a script, and the test plays the volume controller (a clone's maintenance attach gets a
// running Engine object). Covered: a vol:// clone (fresh snapshot of the source, copy from one RW replica, completed,
// attaches released, the snapshot deleted), a detached source attached for the copy, a failed copy retried with
// backoff, a missing snapshot, a clone deleted half-way (its snapshot of the source goes), and the admission's
// refusals.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Engine } from '../../api/engine.js';
import { DEFAULT_NAMESPACE, LONGHORN_API_VERSION } from '../../api/meta.js';
import type { Replica } from '../../api/replica.js';
import type { Snapshot } from '../../api/snapshot.js';
import { MAINTENANCE_ATTACH_PREFIX, type Volume, type VolumeCloneStatus } from '../../api/volume.js';
import type { CloneProgress } from '../../engine/clone.js';
import { EventRecorder } from '../../controller-kit/events.js';
import { InformerFactory } from '../../controller-kit/informer-factory.js';
import { silentLogger } from '../../controller-kit/log.js';
import { isInvalid } from '../../store/errors.js';
import { openStore } from '../../store/index.js';
import type { ResourceStore } from '../../store/resource-store.js';
import type { SnapshotInfo } from '../../replica/index.js';
import { RemoteError } from '../common/http-json.js';
import { volumeAdmission } from '../volume/admission.js';
import { FOR_CLONING_LABEL, freshSnapshotName, volumeCloneController, type CloneEngineApi } from './index.js';

const NS = DEFAULT_NAMESPACE;
const MiB = 1024 * 1024;
const SELF_KEY = `${MAINTENANCE_ATTACH_PREFIX}clone`;
let store: ResourceStore;
let closeStore: () => Promise<void>;
const ac = new AbortController();
let running: Promise<unknown>;

/** The fake data plane: per engine address, its snapshots and its clone. */
interface FakeEngine {
  snapshots: SnapshotInfo[];
  clone?: CloneProgress;
  /** What the next clone started on this engine ends as, once polled. */
  outcome: 'completed' | 'failed';
  started: { replicaName: string; replicaAddress: string; snapshot: string; sourceSize: number }[];
  deleted: string[];
}
const fakes = new Map<string, FakeEngine>();
const fake = (address: string): FakeEngine => {
  let f = fakes.get(address);
  if (!f) fakes.set(address, (f = { snapshots: [], outcome: 'completed', started: [], deleted: [] }));
  return f;
};
const snap = (name: string): SnapshotInfo => ({ name, parent: '', children: [], created: '', removed: false, userCreated: true, labels: {}, size: 0, revision: 1 });

function engineApi(address: string): CloneEngineApi {
  const f = fake(address);
  return {
    snapshots: async () => f.snapshots.map((s) => ({ ...s })),
    createSnapshot: async (name) => void f.snapshots.push(snap(name)),
    deleteSnapshot: async (name) => {
      f.deleted.push(name);
      f.snapshots = f.snapshots.map((s) => (s.name === name ? { ...s, removed: true } : s));
    },
    startClone: async (req) => {
      f.started.push(req);
      f.clone = { sourceVolume: req.sourceVolume, snapshot: req.snapshot, state: 'in-progress', bytesTotal: 4 * MiB, bytesCopied: 0, progress: 0, startedAt: '' };
      return { ...f.clone };
    },
    cloneStatus: async () => {
      if (!f.clone) throw new RemoteError('GET clone: HTTP 404', 404);
      // One poll in progress, the next one done.
      if (f.clone.state === 'in-progress' && f.clone.progress === 0) f.clone.progress = 50;
      else if (f.clone.state === 'in-progress') Object.assign(f.clone, f.outcome === 'completed' ? { state: 'completed', progress: 100, bytesCopied: 4 * MiB } : { state: 'failed', error: 'source replica went away' });
      return { ...f.clone };
    },
  };
}

async function createVolume(name: string, spec: Partial<NonNullable<Volume['spec']>>): Promise<Volume> {
  const { object } = await store.create<Volume>({ apiVersion: LONGHORN_API_VERSION, kind: 'Volume', metadata: { name, namespace: NS }, spec: { size: String(16 * MiB), numberOfReplicas: 1, ...spec } });
  return object;
}

/** A running engine of `volume` on node-1 (what the volume and engine controllers make of an attach). */
async function runEngine(volume: string, port: number, replicas: Record<string, string> = {}): Promise<void> {
  const { object } = await store.create<Engine>({ apiVersion: LONGHORN_API_VERSION, kind: 'Engine', metadata: { name: `${volume}-e-0`, namespace: NS }, spec: { volumeName: volume, nodeID: 'node-1', desireState: 'running' } } as Engine);
  object.status = { currentState: 'running', ip: '10.0.0.1', port, replicaModeMap: Object.fromEntries(Object.keys(replicas).map((r) => [r, 'RW'])), currentReplicaAddressMap: replicas } as NonNullable<Engine['status']>;
  await store.update(object, { subresource: 'status' });
}

async function cloneStatus(name: string): Promise<VolumeCloneStatus & { annotations: Record<string, string> }> {
  const v = await store.get<Volume>('Volume', NS, name);
  return { ...(v.status?.cloneStatus ?? {}), annotations: { ...(v.metadata.annotations ?? {}) } };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

before(async () => {
  ({ store, close: closeStore } = await openStore({ path: ':memory:', admission: [volumeAdmission] }));
  const informers = new InformerFactory({ store, logger: silentLogger });
  const events = new EventRecorder({ store, component: 'test', logger: silentLogger });
  const controller = volumeCloneController({ store, informers, events, engineApi, backoff: { minMs: 100, maxMs: 400 } });
  void informers.run(ac.signal);
  await informers.waitForSync(ac.signal);
  running = controller.run(ac.signal);
});

after(async () => {
  ac.abort();
  await running.catch(() => undefined);
  await closeStore();
});

test('vol:// of an attached source: a fresh snapshot, the copy from its RW replica, completed, everything released', async () => {
  await createVolume('src-a', {});
  await runEngine('src-a', 9001, { 'src-a-r-1': '10.0.0.2:7000', 'src-a-r-2': 'unix:/x' });
  const clone = await createVolume('clone-a', { dataSource: 'vol://src-a', size: String(32 * MiB) });
  const snapshot = freshSnapshotName(clone);
  // Waits for its own engine: attached without a frontend on the source's node.
  const waiting = await until('the maintenance attach', async () => ((await cloneStatus('clone-a')).annotations[SELF_KEY] === 'node-1' ? cloneStatus('clone-a') : undefined));
  assert.equal(waiting.state, 'initiated');
  assert.equal(waiting.sourceVolume, 'src-a');
  assert.equal(waiting.snapshot, snapshot);
  assert.ok(fake('10.0.0.1:9001').snapshots.some((s) => s.name === snapshot), 'the fresh snapshot was taken on the source');
  await runEngine('clone-a', 9002);
  const done = await until('completed', async () => ((await cloneStatus('clone-a')).state === 'completed' ? cloneStatus('clone-a') : undefined));
  assert.deepEqual(fake('10.0.0.1:9002').started, [{ sourceVolume: 'src-a', snapshot, sourceSize: 16 * MiB, replicaName: 'src-a-r-1', replicaAddress: '10.0.0.2:7000' }]);
  assert.match(done.message ?? '', /copied 4194304 bytes/);
  await until('the maintenance attach released', async () => ((await cloneStatus('clone-a')).annotations[SELF_KEY] === undefined ? true : undefined));
  assert.deepEqual(fake('10.0.0.1:9001').deleted, [snapshot], 'the fresh snapshot is deleted from the source');
});

test('a detached source is attached without a frontend for the copy; a failed copy is retried with backoff', async () => {
  await createVolume('src-b', {});
  const { object: r } = await store.create<Replica>({ apiVersion: LONGHORN_API_VERSION, kind: 'Replica', metadata: { name: 'src-b-r-1', namespace: NS }, spec: { volumeName: 'src-b', nodeID: 'node-2', healthyAt: '2026-01-01T00:00:00Z' } } as Replica);
  assert.ok(r);
  const src = await store.get<Volume>('Volume', NS, 'src-b');
  src.status = { ...(src.status ?? {}), state: 'detached' };
  await store.update(src, { subresource: 'status' });
  const clone = await createVolume('clone-b', { dataSource: 'vol://src-b' });
  const sourceKey = `${MAINTENANCE_ATTACH_PREFIX}clone-${(clone.metadata.uid ?? '').slice(0, 8)}`;
  await until('the source attached for the clone', async () => ((await store.get<Volume>('Volume', NS, 'src-b')).metadata.annotations?.[sourceKey] === 'node-2' ? true : undefined));
  fake('10.0.0.1:9004').outcome = 'failed';
  await runEngine('src-b', 9003, { 'src-b-r-1': '10.0.0.3:7000' });
  await runEngine('clone-b', 9004);
  const failed = await until('failed', async () => ((await cloneStatus('clone-b')).state === 'failed' ? cloneStatus('clone-b') : undefined));
  assert.equal(failed.attemptCount, 1);
  assert.match(failed.message ?? '', /source replica went away/);
  assert.ok(Date.parse(failed.nextAllowedAttemptAt ?? '') > Date.now() - 1000, 'the next attempt is scheduled');
  // The retry (after the backoff) succeeds.
  fake('10.0.0.1:9004').outcome = 'completed';
  await until('completed after a retry', async () => ((await cloneStatus('clone-b')).state === 'completed' ? true : undefined));
  assert.equal(fake('10.0.0.1:9004').started.length, 2, 'started again after the failure');
  await until('the source released', async () => ((await store.get<Volume>('Volume', NS, 'src-b')).metadata.annotations?.[sourceKey] === undefined ? true : undefined));
});

test('snap:// of a snapshot that is gone fails naming it, and is retried', async () => {
  await createVolume('src-c', {});
  await runEngine('src-c', 9005, { 'src-c-r-1': '10.0.0.4:7000' });
  fake('10.0.0.1:9005').snapshots.push(snap('s1'));
  // Admission knows the snapshot from its object (the snapshot controller mirrors every snapshot into one).
  await store.create<Snapshot>({ apiVersion: LONGHORN_API_VERSION, kind: 'Snapshot', metadata: { name: 's1', namespace: NS }, spec: { volume: 'src-c' } });
  await createVolume('clone-c', { dataSource: 'snap://src-c/s1' }).catch((err: unknown) => assert.fail(String(err)));
  // Gone after admission (deleted meanwhile): the clone says so and retries.
  fake('10.0.0.1:9005').snapshots = [];
  const failed = await until('failed', async () => ((await cloneStatus('clone-c')).state === 'failed' ? cloneStatus('clone-c') : undefined));
  assert.match(failed.message ?? '', /snapshot "s1" of volume "src-c" does not exist/);
  await until('a second attempt', async () => (((await cloneStatus('clone-c')).attemptCount ?? 0) >= 2 ? true : undefined));
});

test('a vol:// clone deleted before it completed leaves no snapshot on its source', async () => {
  await createVolume('src-e', {});
  await runEngine('src-e', 9006, { 'src-e-r-1': '10.0.0.5:7000' });
  const clone = await createVolume('clone-e', { dataSource: 'vol://src-e' });
  const snapshot = freshSnapshotName(clone);
  await until('the fresh snapshot', async () => (fake('10.0.0.1:9006').snapshots.some((x) => x.name === snapshot) ? true : undefined));
  await store.delete('Volume', NS, 'clone-e');
  // The engine controller mirrors the source's snapshots, labels included, into its status.
  const e = await store.get<Engine>('Engine', NS, 'src-e-e-0');
  e.status = { ...e.status, snapshots: { [snapshot]: { name: snapshot, parent: '', children: { 'volume-head': true }, removed: false, usercreated: false, created: '2026-01-01T00:00:00Z', size: '0', labels: { [FOR_CLONING_LABEL]: 'clone-e' } } } };
  await store.update(e, { subresource: 'status' });
  await until('the orphan snapshot deleted', async () => (fake('10.0.0.1:9006').deleted.includes(snapshot) ? true : undefined));
});

test('a clone of a clone that is not completed waits for it', async () => {
  await createVolume('src-f', { dataSource: 'vol://src-a', size: String(32 * MiB) });
  await createVolume('clone-f', { dataSource: 'vol://src-f', size: String(32 * MiB) });
  const st = await until('waiting for its source', async () => {
    const cs = await cloneStatus('clone-f');
    return /src-f is itself a clone that is not completed/.test(cs.message ?? '') ? cs : undefined;
  });
  assert.equal(st.state, 'initiated');
});

test('admission: a missing source or snapshot, another backing image, a smaller size, junk in the handle: 422, nothing created', async () => {
  await createVolume('src-d', { size: String(32 * MiB) });
  const cases: [string, Partial<NonNullable<Volume['spec']>>, RegExp][] = [
    ['d1', { dataSource: 'vol://nope' }, /source volume "nope" does not exist/],
    ['d2', { dataSource: 'snap://src-d/nope', size: String(32 * MiB) }, /snapshot "nope" of volume "src-d" does not exist/],
    ['d3', { dataSource: 'vol://src-d', size: String(32 * MiB), backingImage: 'other' }, /must be the backing image of source volume "src-d" \(none\)/],
    ['d4', { dataSource: 'vol://src-d' }, /spec\.size.*at least the size of source volume "src-d" \(33554432 bytes\)/],
    ['d5', { dataSource: 'vol://../etc' }, /spec\.dataSource.*path part/],
    ['d6', { dataSource: 'snap://src-d/x/../y' }, /spec\.dataSource/],
    ['d7', { dataSource: 'file:///etc/passwd' }, /unknown scheme/],
    ['d8', { dataSource: 'vol://Bad_Name' }, /not a valid name/],
  ];
  for (const [name, spec, why] of cases) {
    await assert.rejects(createVolume(name, spec), (err: unknown) => {
      assert.ok(isInvalid(err), `${name}: ${String(err)}`);
      assert.match((err as Error).message, why, name);
      return true;
    });
  }
  const names = (await store.list<Volume>('Volume')).items.map((v) => v.metadata.name);
  assert.ok(!names.some((n) => /^d\d$/.test(n ?? '')), `nothing created: ${names.join(', ')}`);
  // dataSource cannot change after create.
  const v = await store.get<Volume>('Volume', NS, 'src-d');
  v.spec = { ...v.spec, dataSource: 'vol://src-a' };
  await assert.rejects(store.update(v), (err: unknown) => isInvalid(err) && /spec\.dataSource/.test((err as Error).message));
});
