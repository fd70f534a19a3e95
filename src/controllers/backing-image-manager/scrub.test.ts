// The backing-image-manager controller's scrub schedule, over the in-memory store and fake manager pods: a ready copy
// last verified longer ago than backing-image-scrub-interval is scrubbed, with the other ready copies as repair
// sources and the scrub bandwidth as its rate; a recently verified copy is not, nor any while the disk is receiving a
// copy, nor any once the interval is 0. A scrub asked for on the image reaches each copy once, with the request as
// its token, and not again once the copy reports it answered.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { BackingImage } from '../../api/backing-image.js';
import type { BackingImageManager } from '../../api/backing-image-manager.js';
import { ANNOTATION_SCRUB_REQUESTED } from '../../api/labels.js';
import type { Setting } from '../../api/setting-resource.js';
import { MemoryStore } from '../../controller-kit/testing.js';
import { bimOnNode, runBimController, type FakeBimPod } from './testing.js';

const NS = 'longhorn-system';
const DAY = 24 * 3_600_000;
const store = new MemoryStore();
const pods: FakeBimPod[] = [];
let stop: (() => Promise<void>) | undefined;

const file = (verifiedAgoMs: number, state = 'ready') => ({ name: 'img', uuid: 'u1', state: state as 'ready', size: 1024, message: '', verifiedAt: new Date(Date.now() - verifiedAgoMs).toISOString() });

/** A manager on node `node` whose pod reports `files`. */
async function manager(name: string, node: string, files: ReturnType<typeof file>[]): Promise<FakeBimPod> {
  const pod = await bimOnNode(store, NS, name, node, files, { img: 'u1' });
  pods.push(pod);
  return pod;
}

let old: FakeBimPod;
let fresh: FakeBimPod;

before(async () => {
  const { object: bi } = await store.create<BackingImage>({ apiVersion: 'longhorn.io/v1beta2', kind: 'BackingImage', metadata: { name: 'img', namespace: NS }, spec: { sourceType: 'download', sourceParameters: {} } } as unknown as BackingImage);
  await store.update({ ...bi, status: { uuid: 'u1', size: 1024, checksum: 'a'.repeat(128) } } as BackingImage, { subresource: 'status' });
  old = await manager('bim-old', 'n1', [file(8 * DAY)]);
  fresh = await manager('bim-fresh', 'n2', [file(DAY)]);
  stop = await runBimController(store, NS);
});

after(async () => {
  await stop?.();
  for (const p of pods) await p.close();
});

const scrubs = (pod: FakeBimPod) => pod.requests.filter((r) => r.path === '/v1/files/img/scrub');

test('a copy verified longer ago than the interval is scrubbed, repaired from the other ready copy, at the set rate', async () => {
  const deadline = Date.now() + 10_000;
  while (scrubs(old).length === 0) {
    if (Date.now() > deadline) assert.fail(`no scrub was asked for; requests: ${JSON.stringify(old.requests)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(scrubs(old)[0]?.body, { uuid: 'u1', sources: [fresh.url], maxBytesPerSecond: 64 * 1024 * 1024 });
  assert.equal(scrubs(fresh).length, 0, 'verified a day ago: not due');
  const m = await store.get<BackingImageManager>('BackingImageManager', NS, 'bim-fresh');
  assert.equal(m.status?.backingImageFileMap?.['img']?.verifiedAt, fresh.files[0]?.verifiedAt, 'the status says when it was verified');
});

test('a scrub asked for on the image: each copy is scrubbed once with the request as its token, not again once answered', async () => {
  const before = scrubs(fresh).length;
  const { object: bi } = await store.patch<BackingImage>('BackingImage', NS, 'img', 'merge', { metadata: { annotations: { [ANNOTATION_SCRUB_REQUESTED]: 'req-1' } } });
  assert.ok(bi.metadata.annotations?.[ANNOTATION_SCRUB_REQUESTED]);
  const deadline = Date.now() + 10_000;
  while (scrubs(fresh).length === before) {
    if (Date.now() > deadline) assert.fail('the copy verified a day ago was not scrubbed when asked');
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal((scrubs(fresh).at(-1)?.body as { request?: string }).request, 'req-1');
  // The pod says the request was answered: no further scrub for it, whatever the copy's verification time.
  fresh.files = [{ ...file(0), scrubRequest: 'req-1' }];
  await store.patch('BackingImageManager', NS, 'bim-fresh', 'merge', { metadata: { labels: { touched: '1' } } });
  await new Promise((r) => setTimeout(r, 500));
  const answered = scrubs(fresh).length;
  await store.patch('BackingImageManager', NS, 'bim-fresh', 'merge', { metadata: { labels: { touched: '2' } } });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(scrubs(fresh).length, answered, 'answered: not scrubbed again');
});

test('no scrub while the disk receives a copy, and none at all with the interval at 0', async () => {
  const before = scrubs(fresh).length;
  // The disk starts receiving a copy of another image: the due scrub waits.
  fresh.files = [file(8 * DAY), { name: 'other', uuid: 'u2', state: 'in-progress', size: 1, message: '', verifiedAt: '' }];
  await store.patch('BackingImageManager', NS, 'bim-fresh', 'merge', { spec: { backingImages: { img: 'u1', other: 'u2' } } });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(scrubs(fresh).length, before);
  await store.create<Setting>({ apiVersion: 'longhorn.io/v1beta2', kind: 'Setting', metadata: { name: 'backing-image-scrub-interval', namespace: NS }, value: '0' } as Setting);
  fresh.files = [{ ...file(8 * DAY), scrubRequest: 'req-1' }]; // the request on the image is answered
  await store.patch('BackingImageManager', NS, 'bim-fresh', 'merge', { spec: { backingImages: { img: 'u1' } } });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(scrubs(fresh).length, before, 'scrubbing is off');
});
