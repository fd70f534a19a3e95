// A copy a restart of its manager left pending (partial data kept, nothing under way) is asked to sync again at once,
// so that it resumes where it stopped; before, nobody asked, it failed after the pending timeout and was deleted and
// synced from scratch. A pending copy with a sync under way is left alone. A failed copy is asked to sync again after
// the backoff, never deleted first (the manager reuses what it verified). In-memory store, fake manager pods.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { BackingImage } from '../../api/backing-image.js';
import type { FileInfo } from '../../bim/table.js';
import { MemoryStore } from '../../controller-kit/testing.js';
import { bimOnNode, runBimController, type FakeBimPod } from './testing.js';

const NS = 'longhorn-system';
const store = new MemoryStore();
const pods: FakeBimPod[] = [];
let stop: (() => Promise<void>) | undefined;

async function manager(name: string, node: string, files: Partial<FileInfo>[], images: Record<string, string>): Promise<FakeBimPod> {
  const pod = await bimOnNode(store, NS, name, node, files, images);
  pods.push(pod);
  return pod;
}

async function image(name: string, uuid: string): Promise<void> {
  const { object } = await store.create<BackingImage>({ apiVersion: 'longhorn.io/v1beta2', kind: 'BackingImage', metadata: { name, namespace: NS }, spec: { sourceType: 'download', sourceParameters: {} } } as unknown as BackingImage);
  // As the backing image controller reports them: ready on n1 (a failed copy elsewhere is retried only then).
  const diskFileStatusMap = { 'disk-n1': { state: 'ready', progress: 100, message: '', dataEngine: 'v1', lastStateTransitionTime: '' } };
  await store.update({ ...object, status: { uuid, size: 1024, checksum: 'a'.repeat(128), diskFileStatusMap } } as BackingImage, { subresource: 'status' });
}

let source: FakeBimPod;
let receiver: FakeBimPod;

before(async () => {
  await image('img', 'u1');
  await image('busy', 'u2');
  await image('broken', 'u3');
  await store.create({ apiVersion: 'longhorn.io/v1beta2', kind: 'Setting', metadata: { name: 'backing-image-copy-retry-backoff-min', namespace: NS }, value: '1' } as never);
  const ready = { state: 'ready' as const, size: 1024, message: '', verifiedAt: new Date().toISOString() };
  source = await manager('bim-a', 'n1', [{ name: 'img', uuid: 'u1', ...ready }, { name: 'busy', uuid: 'u2', ...ready }, { name: 'broken', uuid: 'u3', ...ready }], { img: 'u1', busy: 'u2', broken: 'u3' });
  receiver = await manager(
    'bim-b',
    'n2',
    [
      { name: 'img', uuid: 'u1', state: 'pending', size: 1024, processedSize: 512, message: 'sync interrupted by a restart with 512 of 1024 bytes received', awaitingRequest: true },
      { name: 'busy', uuid: 'u2', state: 'pending', size: 1024, processedSize: 0, message: 'sync requested' },
      { name: 'broken', uuid: 'u3', state: 'failed', size: 1024, processedSize: 900, message: 'sync of broken stalled: no bytes for 60 s' },
    ],
    { img: 'u1', busy: 'u2', broken: 'u3' },
  );
  stop = await runBimController(store, NS);
});

after(async () => {
  await stop?.();
  for (const p of pods) await p.close();
});

test('a copy left pending by a restart is asked to sync again at once; one with a sync under way is not', async () => {
  const syncs = (name: string) => receiver.requests.filter((r) => r.path === `/v1/files/${name}/sync`);
  const deadline = Date.now() + 5000;
  while (syncs('img').length === 0) {
    if (Date.now() > deadline) assert.fail(`no sync was asked for; requests: ${JSON.stringify(receiver.requests)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(syncs('img')[0]?.body, { uuid: 'u1', size: 1024, expectedChecksum: 'a'.repeat(128), sources: [source.url] });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(syncs('busy').length, 0, 'a pending copy with its sync under way is not asked again');
});

test('a failed copy is asked to sync again after the backoff, not deleted', async () => {
  const deadline = Date.now() + 10_000;
  const asked = () => receiver.requests.filter((r) => r.path === '/v1/files/broken/sync');
  while (asked().length === 0) {
    if (Date.now() > deadline) assert.fail(`the failed copy was not synced again; requests: ${JSON.stringify(receiver.requests)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(receiver.requests.filter((r) => r.method === 'DELETE').length, 0, 'nothing was deleted');
});
