// End-to-end: volume clones (Volume.spec.dataSource snap://<volume>/<snapshot> and vol://<volume>) on `stratum up`,
// over an ext4-in-qcow2 backing image. A model of the source's content (the image's bytes, then every write) is kept;
// the source is snapshotted, written again, and cloned both ways while a write loop keeps its I/O going: each clone
// reads back exactly the model at its point, and is on the same backing image (the image is not copied). A clone of a
// volume holding files mounts without mkfs and shows them. Bad sources are refused at admission with 422 and nothing
// is created.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { NbdClient } from '../src/frontend/nbd/index.js';
import { mulberry32 } from '../src/util/prng.js';
import { killRecordedCluster, Proc, startUp } from './helpers/cluster.js';
import { ext4Qcow2 } from './helpers/ext4-image.js';
import { staticServer } from './helpers/lifecycle.js';
import { CLI, freePort, skipWithoutRootAnd, run, tempDir, waitFor } from './helpers/processes.js';
import { parseNbdUri, Volumes, type VolumeView } from './helpers/volumes.js';

const MiB = 1024 * 1024;
const IMAGE = 'clone-base';
const SIZE = 64 * MiB;
const skip = skipWithoutRootAnd(['qemu-img', 'mkfs.ext4', 'mount', 'nbdfuse', 'losetup']);

const dir = tempDir('clone');
const files = tempDir('clone-images');
let up: Proc | undefined;
let web: { url: string; close(): Promise<void> } | undefined;
let vols: Volumes;
let url = '';
const expected = new Map<string, string>();

const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');

function randomBytes(seed: number, size: number): Buffer {
  const rand = mulberry32(seed);
  const buf = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4) buf.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
  return buf;
}

before(async () => {
  if (skip) return;
  const src = join(files.path, 'content');
  mkdirSync(src, { recursive: true });
  for (const [name, size, seed] of [['image.bin', 5 * MiB, 1], ['hello.txt', 0, 0]] as const) {
    const buf = name === 'hello.txt' ? Buffer.from('hello from the backing image\n') : randomBytes(seed, size);
    writeFileSync(join(src, name), buf);
    expected.set(name, sha512(buf));
  }
  await ext4Qcow2(src, files.path, SIZE, join(files.path, 'fs.qcow2'));
  web = await staticServer(files.path);
  const port = await freePort();
  up = await startUp(dir.path, port);
  url = `http://127.0.0.1:${port}`;
  vols = new Volumes(url);
  const s = await vols.req('PUT', '/v1/settings/allow-private-download-urls', { value: 'true' });
  assert.equal(s.status, 200, JSON.stringify(s.json));
  const bi = await vols.req('POST', '/v1/backingimages', { name: IMAGE, sourceType: 'download', parameters: { url: `${web.url}/fs.qcow2` } });
  assert.equal(bi.status, 200, JSON.stringify(bi.json));
  await waitFor(`backing image ${IMAGE} ready`, async () => {
    const r = await vols.req<{ diskFileStatusMap?: Record<string, { state: string }> }>('GET', `/v1/backingimages/${IMAGE}`);
    return Object.values(r.json.diskFileStatusMap ?? {}).some((f) => f.state === 'ready') ? true : undefined;
  }, 120_000);
});

after(async () => {
  if (up) {
    for (const m of readdirSync(dir.path).filter((d) => d.startsWith('mnt-'))) await run('umount', ['-l', join(dir.path, m)]).catch(() => undefined);
    await up.stop('SIGINT', 60_000);
  }
  killRecordedCluster(dir.path);
  await web?.close();
  dir.remove();
  files.remove();
});

async function nbd(v: VolumeView): Promise<NbdClient> {
  const ep = parseNbdUri(v.status?.nbdEndpoint ?? '');
  return NbdClient.connect({ host: ep.host, port: ep.port }, { exportName: ep.exportName });
}

/** Attached without a frontend on `node`: the engine's NBD export. */
async function attachNbd(volume: string, node: string): Promise<NbdClient> {
  const a = await vols.req('POST', `/v1/volumes/${volume}?action=attach`, { hostId: node, disableFrontend: true });
  assert.equal(a.status, 200, JSON.stringify(a.json));
  return nbd(await vols.waitVolume(volume, `${volume} attached`, (v) => v.status?.state === 'attached' && !!v.status.nbdEndpoint && v.spec.nodeID === node, 240_000));
}

async function readAll(c: NbdClient): Promise<Buffer> {
  const out = Buffer.alloc(c.size);
  for (let at = 0; at < c.size; at += 4 * MiB) Buffer.from(await c.read(at, Math.min(4 * MiB, c.size - at))).copy(out, at);
  return out;
}

/** Waits for the clone; a user's attach of it (spec.nodeID) must not be attached before it completes. */
async function cloneCompleted(name: string): Promise<VolumeView> {
  let early = '';
  const v = await vols.waitVolume(name, `clone ${name} completed`, (v) => {
    const cs = (v.status as { cloneStatus?: { state?: string; message?: string } } | undefined)?.cloneStatus;
    if (cs?.state === 'failed') process.stderr.write(`clone ${name} failed (retried): ${cs.message}\n`);
    if (cs?.state !== 'completed' && v.spec.nodeID && v.status?.state === 'attached') early = JSON.stringify(v.status);
    return cs?.state === 'completed';
  }, 300_000);
  assert.equal(early, '', 'the clone was attached for its user before it completed');
  return v;
}

/** First mismatching offset of two buffers, for a readable failure. */
function firstDiff(a: Buffer, b: Buffer): number {
  for (let at = 0; at < a.length; at += 4096) if (!a.subarray(at, at + 4096).equals(b.subarray(at, at + 4096))) return at;
  return -1;
}

/** 4 KiB blocks of the source written with data (what a clone copies; the backing image's data is not among them). */
const touched = new Set<number>();

/** Writes to `c` in a loop until `stop` resolves, keeping `model` in step; throws the first error. */
function writeLoop(c: NbdClient, model: Buffer, region: { offset: number; length: number }, seed: number, stop: Promise<void>, rewrite: boolean): Promise<number> {
  let stopped = false;
  void stop.then(() => (stopped = true));
  return (async () => {
    const rand = mulberry32(seed);
    let n = 0;
    while (!stopped) {
      const off = region.offset + Math.floor(rand() * (region.length / 4096 - 16)) * 4096;
      const len = (1 + Math.floor(rand() * 16)) * 4096;
      // rewrite: the bytes already there (the content stays the model's), otherwise new ones.
      const data = rewrite ? Buffer.from(model.subarray(off, off + len)) : randomBytes(seed * 1000 + n, len);
      await c.write(off, data);
      data.copy(model, off);
      for (let b = off / 4096; b < (off + len) / 4096; b++) touched.add(b);
      n++;
    }
    await c.flush();
    return n;
  })();
}

test('snap:// and vol:// clones read back the model at their point while the source keeps its I/O; the image is not copied', { skip }, async () => {
  const created = await vols.create('src', { size: String(SIZE), numberOfReplicas: 2, backingImage: IMAGE, frontend: 'nbd' });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  const c = await attachNbd('src', 'node-1');
  const model = Buffer.alloc(SIZE);
  readFileSync(join(files.path, 'fs.raw')).copy(model);
  assert.equal(sha512(await readAll(c)), sha512(model), 'the fresh volume reads its backing image');
  // Writes: data in a few places, and zeros over the image's own data (must read as zeros in the clones too).
  for (const [off, len, seed] of [[1 * MiB, 3 * MiB, 21], [20 * MiB + 4096, 8192, 22], [40 * MiB, 2 * MiB, 23]] as const) {
    const d = randomBytes(seed, len);
    await c.write(off, d);
    d.copy(model, off);
    for (let b = off / 4096; b < (off + len) / 4096; b++) touched.add(b);
  }
  let imageData = 4 * MiB;
  while (imageData < SIZE && model[imageData] === 0) imageData++;
  assert.ok(imageData < SIZE, 'the image has data past 4 MiB');
  const zeroAt = Math.floor(imageData / 4096) * 4096;
  await c.writeZeroes(zeroAt, 64 * 1024);
  model.fill(0, zeroAt, zeroAt + 64 * 1024);
  await c.flush();
  const snap = await vols.req('POST', '/v1/volumes/src?action=snapshotCreate', { name: 'snap1' });
  assert.equal(snap.status, 200, JSON.stringify(snap.json));
  const atSnap = Buffer.from(model);
  // Admission checks the snapshot against the cluster's view (its Snapshot object or the engine's status); the
  // answer to snapshotCreate comes once the engine's status lists it, so a clone may follow at once.
  for (const [off, len, seed] of [[2 * MiB, MiB, 31], [50 * MiB, 4 * MiB, 32]] as const) {
    const d = randomBytes(seed, len);
    await c.write(off, d);
    d.copy(model, off);
    for (let b = off / 4096; b < (off + len) / 4096; b++) touched.add(b);
  }
  await c.flush();

  // snap://, while new data keeps being written to the source (the snapshot does not change).
  let stop!: () => void;
  let stopped = new Promise<void>((r) => (stop = r));
  let loop = writeLoop(c, model, { offset: 30 * MiB, length: 8 * MiB }, 5, stopped, false);
  const s1 = await vols.create('clone-snap', { size: String(SIZE), numberOfReplicas: 2, backingImage: IMAGE, frontend: 'nbd', dataSource: 'snap://src/snap1' });
  assert.equal(s1.status, 201, JSON.stringify(s1.json));
  // Not attachable with its frontend before it completes: an attach waits (the state says why).
  const early = await vols.req('POST', '/v1/volumes/clone-snap?action=attach', { hostId: 'node-2' });
  assert.equal(early.status, 200, JSON.stringify(early.json));
  const done = await cloneCompleted('clone-snap');
  stop();
  const writes1 = await loop;
  assert.ok(writes1 > 0, 'the source took writes during the clone');
  const cs = (done.status as { cloneStatus?: Record<string, unknown> }).cloneStatus;
  assert.equal(cs?.['sourceVolume'], 'src');
  assert.equal(cs?.['snapshot'], 'snap1');
  assert.equal(done.spec.backingImage, IMAGE);
  await vols.detach('clone-snap');
  let k = await attachNbd('clone-snap', 'node-2');
  let got = await readAll(k);
  await k.disconnect();
  assert.equal(firstDiff(got, atSnap), -1, 'the snap:// clone reads the model at the snapshot');

  // vol://: the source's content now (a fresh snapshot), while the source keeps rewriting what it holds.
  const atClone = Buffer.from(model);
  stopped = new Promise<void>((r) => (stop = r));
  loop = writeLoop(c, model, { offset: 30 * MiB, length: 8 * MiB }, 6, stopped, true);
  const s2 = await vols.create('clone-vol', { size: String(SIZE + 16 * MiB), numberOfReplicas: 1, backingImage: IMAGE, frontend: 'nbd', dataSource: 'vol://src' });
  assert.equal(s2.status, 201, JSON.stringify(s2.json));
  await cloneCompleted('clone-vol');
  stop();
  assert.ok((await loop) > 0, 'the source took writes during the clone');
  assert.equal(sha512(model), sha512(atClone), 'the rewrite loop kept the content');
  k = await attachNbd('clone-vol', 'node-3');
  got = await readAll(k);
  await k.disconnect();
  // The clone's replica holds what the source's layers wrote, not the backing image's data (which it reads through).
  const head = await vols.req<{ data: { name: string; size: string }[] }>('POST', '/v1/volumes/clone-vol?action=snapshotList', {});
  const headBytes = Number(head.json.data.find((x) => x.name === 'volume-head')?.size ?? NaN);
  const imageBytes = readFileSync(join(files.path, 'fs.raw')).reduce((n, _b, i, a) => (i % 4096 === 0 && a.subarray(i, i + 4096).some((x) => x !== 0) ? n + 4096 : n), 0);
  process.stderr.write(`clone-vol head ${headBytes} bytes; written by the source ${touched.size * 4096}; image data ${imageBytes}\n`);
  assert.ok(headBytes <= touched.size * 4096 + MiB, `the clone holds ${headBytes} bytes, the source wrote ${touched.size * 4096}`);
  assert.ok(imageBytes > 4 * MiB && headBytes < touched.size * 4096 + imageBytes / 2, 'the backing image was not copied into the clone');
  assert.equal(got.length, SIZE + 16 * MiB);
  assert.equal(firstDiff(got.subarray(0, SIZE), atClone), -1, 'the vol:// clone reads the model at the clone');
  assert.ok(got.subarray(SIZE).every((b) => b === 0), 'past the source size the larger clone reads zeros');
  // The fresh snapshot was deleted from the source (marked removed: its head sits on it), snap1 is kept.
  const listed = await vols.req<{ data: { name: string; removed: boolean }[] }>('POST', '/v1/volumes/src?action=snapshotList', {});
  assert.ok(listed.json.data.some((s) => s.name === 'snap1' && !s.removed));
  assert.ok(!listed.json.data.some((s) => s.name.startsWith('clone-') && !s.removed), JSON.stringify(listed.json.data));
  // The source's own content is the model (its I/O went on).
  assert.equal(firstDiff(await readAll(c), model), -1, 'the source reads its model');
  await c.disconnect();
  // Each clone's replica holds the written data only: the backing image is not in it.
  for (const v of ['clone-snap', 'clone-vol']) await vols.detach(v);
  await vols.detach('src');
});

test('a clone of a volume holding files mounts without mkfs and shows them (source detached)', { skip }, async () => {
  const created = await vols.create('fs-src', { size: String(SIZE), numberOfReplicas: 1, backingImage: IMAGE, frontend: 'blockdev' });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  const cli = async (...args: string[]) => {
    const r = await run(process.execPath, [CLI, '--server', url, ...args], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `stratum ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const device = await cli('volume', 'attach', 'fs-src', '--node', 'node-1', '--wait', '--timeout', '120s');
  const mnt = join(dir.path, 'mnt-src');
  mkdirSync(mnt, { recursive: true });
  assert.equal((await run('mount', ['-t', 'ext4', device, mnt])).code, 0);
  const buf = randomBytes(77, 3 * MiB + 123);
  writeFileSync(join(mnt, 'new.bin'), buf);
  expected.set('new.bin', sha512(buf));
  assert.equal((await run('umount', [mnt])).code, 0);
  await vols.detach('fs-src');
  // Detached: the clone attaches it without a frontend for the copy, and it is detached again after.
  const c = await vols.create('fs-clone', { size: String(SIZE), numberOfReplicas: 1, backingImage: IMAGE, frontend: 'blockdev', dataSource: 'vol://fs-src' });
  assert.equal(c.status, 201, JSON.stringify(c.json));
  await cloneCompleted('fs-clone');
  await vols.waitVolume('fs-src', 'fs-src detached again after the clone', (v) => v.status?.state === 'detached', 120_000);
  const dev = await cli('volume', 'attach', 'fs-clone', '--node', 'node-2', '--wait', '--timeout', '180s');
  const cm = join(dir.path, 'mnt-clone');
  mkdirSync(cm, { recursive: true });
  const m = await run('mount', ['-t', 'ext4', dev, cm]);
  assert.equal(m.code, 0, m.stderr);
  try {
    for (const [name, sum] of expected) assert.equal(sha512(readFileSync(join(cm, name))), sum, `fs-clone: ${name}`);
  } finally {
    await run('umount', [cm]);
  }
  await vols.detach('fs-clone');
});

test('bad clone sources are refused at admission (422) naming what is wrong, and nothing is created', { skip }, async () => {
  const other = await vols.create('plain', { size: String(SIZE), numberOfReplicas: 1 });
  assert.equal(other.status, 201, JSON.stringify(other.json));
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['bad-missing', { dataSource: 'vol://nope', backingImage: IMAGE }, /source volume "nope" does not exist/],
    ['bad-snap', { dataSource: 'snap://src/nope', backingImage: IMAGE }, /snapshot "nope" of volume "src" does not exist/],
    ['bad-image', { dataSource: 'vol://plain', backingImage: IMAGE }, /backing image of source volume "plain"/],
    ['bad-size', { dataSource: 'vol://src', backingImage: IMAGE, size: String(SIZE - 16 * MiB) }, /at least the size of source volume "src"/],
    ['bad-dots', { dataSource: 'vol://../src', backingImage: IMAGE }, /dataSource/],
    ['bad-junk', { dataSource: 'http://src', backingImage: IMAGE }, /unknown scheme/],
    ['bad-parts', { dataSource: 'snap://src/snap1/x', backingImage: IMAGE }, /path part/],
  ];
  for (const [name, spec, why] of cases) {
    const r = await vols.req<{ message?: string; code?: string | number }>('POST', '/v1/volumes', { name, size: String(SIZE), numberOfReplicas: 1, ...spec });
    assert.equal(r.status, 422, `${name}: ${JSON.stringify(r.json)}`);
    assert.match(r.json.message ?? '', why, name);
    assert.equal((await vols.req('GET', `/v1/volumes/${name}`)).status, 404, `${name} was not created`);
  }
});
