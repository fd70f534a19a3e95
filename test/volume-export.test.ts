// End-to-end: backing images exported from volumes (sourceType export-from-volume), seed-style, on `stratum up`. A
// volume on an ext4 image gets new files; it is exported (attached, from a fresh snapshot) as raw and as qcow2 with
// `stratum bi create --from-volume`; `qemu-img compare` of each export against the volume's NBD export says
// identical; the raw export's SHA-512 is the volume's and its allocated size is the data (holes kept); a new volume
// on each export mounts without mkfs and shows the original and the new files; a volume on an export exports again.
// And: a volume waiting for an export image has WaitForBackingImage True while the export is pending or running on
// its one disk, False once it is ready.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { NbdClient } from '../src/frontend/nbd/index.js';
import { mulberry32 } from '../src/util/prng.js';
import { killRecordedCluster, Proc, startUp } from './helpers/cluster.js';
import { staticServer } from './helpers/lifecycle.js';
import { CLI, freePort, skipWithoutRootAnd, run, tempDir, waitFor } from './helpers/processes.js';
import { ext4Qcow2 } from './helpers/ext4-image.js';
import { parseNbdUri, Volumes } from './helpers/volumes.js';

const MiB = 1024 * 1024;
const IMAGE = 'ext4-base';
const FS_SIZE = 64 * MiB;
const skip = skipWithoutRootAnd(['qemu-img', 'mkfs.ext4', 'mount', 'nbdfuse', 'losetup']);

const dir = tempDir('export');
const files = tempDir('export-images');
let up: Proc | undefined;
let web: { url: string; close(): Promise<void> } | undefined;
let vols: Volumes;
let url = '';
/** path in the filesystem → sha512, of the image's files and then of the files written on the volume too. */
const expected = new Map<string, string>();
let written = 0;

const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');

function randomBytes(seed: number, size: number): Buffer {
  const rand = mulberry32(seed);
  const buf = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4) buf.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
  return buf;
}

before(async () => {
  if (skip) return;
  const src = join(files.path, 'content');
  mkdirSync(join(src, 'docs'), { recursive: true });
  for (const [name, size, seed] of [['hello.txt', 0, 0], ['docs/a.bin', 3 * MiB, 1], ['big.bin', 6 * MiB, 2]] as const) {
    const buf = name === 'hello.txt' ? Buffer.from('hello from the backing image\n') : randomBytes(seed, size);
    writeFileSync(join(src, name), buf);
    expected.set(name, sha512(buf));
  }
  await ext4Qcow2(src, files.path, FS_SIZE, join(files.path, 'fs.qcow2'));
  web = await staticServer(files.path);
  const port = await freePort();
  up = await startUp(dir.path, port);
  url = `http://127.0.0.1:${port}`;
  vols = new Volumes(url);
  const s = await vols.req('PUT', '/v1/settings/allow-private-download-urls', { value: 'true' });
  assert.equal(s.status, 200, JSON.stringify(s.json));
  const bi = await vols.req('POST', '/v1/backingimages', { name: IMAGE, sourceType: 'download', parameters: { url: `${web.url}/fs.qcow2` } });
  assert.equal(bi.status, 200, JSON.stringify(bi.json));
  await imageReady(IMAGE);
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

interface V1Image {
  currentChecksum?: string;
  diskFileStatusMap?: Record<string, { state: string; message?: string }>;
}

async function imageReady(name: string, timeoutMs = 120_000): Promise<V1Image> {
  return waitFor(`backing image ${name} has a ready copy`, async () => {
    const r = await vols.req<V1Image>('GET', `/v1/backingimages/${name}`);
    const states = Object.values(r.json.diskFileStatusMap ?? {});
    if (states.some((f) => f.state === 'failed')) throw new Error(`${name}: ${JSON.stringify(r.json.diskFileStatusMap)}`);
    return states.some((f) => f.state === 'ready') ? r.json : undefined;
  }, timeoutMs);
}

/** The ready file of image `name`: `<disk>/backing-images/<name>-<uuid>/backing` on a disk whose copy is ready. */
async function imageFile(name: string): Promise<string> {
  const bi = await vols.req<V1Image>('GET', `/v1/backingimages/${name}`);
  const uuid = Object.entries(bi.json.diskFileStatusMap ?? {}).find(([, f]) => f.state === 'ready')?.[0];
  assert.ok(uuid, `${name} has a ready copy`);
  const nodes = await vols.req<{ items: { spec: { disks?: Record<string, { path: string }> }; status?: { diskStatus?: Record<string, { diskUUID?: string }> } }[] }>('GET', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/nodes');
  for (const n of nodes.json.items) {
    for (const [disk, st] of Object.entries(n.status?.diskStatus ?? {})) {
      if (st.diskUUID !== uuid) continue;
      const root = join(n.spec.disks![disk]!.path, 'backing-images');
      const d = readdirSync(root).find((x) => x.startsWith(`${name}-`));
      assert.ok(d, `${root} holds ${name}`);
      return join(root, d, 'backing');
    }
  }
  throw new Error(`no disk with uuid ${uuid}`);
}

async function cli(...args: string[]): Promise<string> {
  const r = await run(process.execPath, [CLI, '--server', url, ...args], { timeoutMs: 150_000 });
  assert.equal(r.code, 0, `stratum ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function mount(device: string, where: string): Promise<void> {
  mkdirSync(where, { recursive: true });
  const r = await run('mount', ['-t', 'ext4', device, where]);
  assert.equal(r.code, 0, `mount ${device}: ${r.stderr}`);
}

async function umount(where: string): Promise<void> {
  const r = await run('umount', [where]);
  assert.equal(r.code, 0, `umount ${where}: ${r.stderr}`);
}

async function checkFiles(volume: string, node: string): Promise<void> {
  const device = (await cli('volume', 'attach', volume, '--node', node, '--wait', '--timeout', '120s')).trim();
  const mnt = join(dir.path, `mnt-${volume}`);
  await mount(device, mnt);
  for (const [name, sum] of expected) assert.equal(sha512(readFileSync(join(mnt, name))), sum, `${volume}: ${name}`);
  await umount(mnt);
}

async function volumeSha512(nbdUri: string): Promise<string> {
  const ep = parseNbdUri(nbdUri);
  const c = await NbdClient.connect({ host: ep.host, port: ep.port }, { exportName: ep.exportName });
  const h = createHash('sha512');
  for (let at = 0; at < c.size; at += 4 * MiB) h.update(await c.read(at, Math.min(4 * MiB, c.size - at)));
  await c.disconnect();
  return h.digest('hex');
}

/** Bytes of `path` that hold non-zero data, at 4 KiB granularity (what a perfectly sparse copy allocates). */
function nonZeroBytes(path: string): number {
  const b = readFileSync(path);
  let n = 0;
  for (let at = 0; at < b.length; at += 4096) if (b.subarray(at, at + 4096).some((x) => x !== 0)) n += Math.min(4096, b.length - at);
  return n;
}

test('seed-style export: raw and qcow2 exports of an attached volume are identical to it, sparse, and mount in new volumes', { skip }, async () => {
  const c = await vols.create('vol-src', { size: String(FS_SIZE), numberOfReplicas: 2, backingImage: IMAGE, frontend: 'blockdev' });
  assert.equal(c.status, 201, JSON.stringify(c.json));
  const device = (await cli('volume', 'attach', 'vol-src', '--node', 'node-1', '--wait', '--timeout', '120s')).trim();
  const mnt = join(dir.path, 'mnt-src');
  await mount(device, mnt);
  for (const [name, sum] of expected) assert.equal(sha512(readFileSync(join(mnt, name))), sum, name);
  mkdirSync(join(mnt, 'new'));
  for (const [name, size, seed] of [['new/one.bin', 7 * MiB, 11], ['new/two.bin', 5 * MiB + 4321, 12]] as const) {
    const buf = randomBytes(seed, size);
    writeFileSync(join(mnt, name), buf);
    expected.set(name, sha512(buf));
    written += size;
  }
  writeFileSync(join(mnt, 'new', 'note.txt'), 'written on the volume\n');
  expected.set('new/note.txt', sha512(Buffer.from('written on the volume\n')));
  await umount(mnt);
  // Still attached: the exports read a fresh snapshot while the volume keeps serving.
  await cli('bi', 'create', 'exp-raw', '--from-volume', 'vol-src', '--export-type', 'raw');
  await cli('bi', 'create', 'exp-qcow2', '--from-volume', 'vol-src', '--export-type', 'qcow2');
  const rawImage = await imageReady('exp-raw');
  await imageReady('exp-qcow2');
  // Each export took a system snapshot and deleted it. The engine merges a removed snapshot into the snapshot above
  // it: the chain keeps at most one removed snapshot (the one under the head), not one per export.
  // (An export's snapshot is named export-<image>-<uuid> by the data source, src/datasource/export.ts.)
  let chain: { name: string; removed?: boolean }[] = [];
  await waitFor('the exports\' snapshots deleted, one of them left removed under the head', async () => {
    chain = (await vols.req<{ data?: typeof chain }>('POST', '/v1/volumes/vol-src?action=snapshotList', {})).json.data ?? [];
    const exports = chain.filter((x) => x.name.startsWith('export-'));
    return exports.length === 1 && exports[0]!.removed ? true : undefined;
  }, 60_000).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(chain)}`);
  });
  const nbd = (await vols.get('vol-src')).status?.nbdEndpoint ?? '';
  assert.match(nbd, /^nbd:\/\//);

  const rawFile = await imageFile('exp-raw');
  const qcowFile = await imageFile('exp-qcow2');
  for (const [file, fmt] of [[rawFile, 'raw'], [qcowFile, 'qcow2']] as const) {
    const cmp = await run('qemu-img', ['compare', '-f', fmt, '-F', 'raw', file, nbd], { timeoutMs: 120_000 });
    assert.equal(cmp.code, 0, `qemu-img compare ${fmt}: ${cmp.stdout}${cmp.stderr}`);
    assert.match(cmp.stdout, /Images are identical/);
  }
  const check = await run('qemu-img', ['check', '-f', 'qcow2', qcowFile]);
  assert.equal(check.code, 0, `qemu-img check: ${check.stdout}${check.stderr}`);
  assert.equal(rawImage.currentChecksum, await volumeSha512(nbd), "the raw export's SHA-512 is the volume's");

  // Holes kept: the raw export allocates the image's data plus what was written, within 10%.
  const imageData = nonZeroBytes(join(files.path, 'fs.raw'));
  const want = imageData + written;
  const du = statSync(rawFile).blocks * 512;
  assert.ok(Math.abs(du - want) <= want * 0.1, `raw export allocates ${du} bytes; the image's data ${imageData} + written ${written} = ${want}`);
  const qdu = statSync(qcowFile).blocks * 512;
  assert.ok(qdu <= want * 1.25, `qcow2 export allocates ${qdu} bytes for ${want} of data`);
  process.stderr.write(`export sizes: raw du ${du}, qcow2 du ${qdu}, data ${want} (image ${imageData} + written ${written})\n`);

  // New volumes on each export mount without mkfs and show every file.
  for (const [vol, image, node] of [['vol-r', 'exp-raw', 'node-2'], ['vol-q', 'exp-qcow2', 'node-3']] as const) {
    const v = await vols.create(vol, { size: String(FS_SIZE), numberOfReplicas: 1, backingImage: image, frontend: 'blockdev' });
    assert.equal(v.status, 201, JSON.stringify(v.json));
    await checkFiles(vol, node);
  }
  // A volume on an export exports again, identical to it (Longhorn had a data-inconsistency bug here).
  await cli('bi', 'create', 'exp-again', '--from-volume', 'vol-q', '--export-type', 'raw');
  await imageReady('exp-again');
  const qnbd = (await vols.get('vol-q')).status?.nbdEndpoint ?? '';
  const again = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', await imageFile('exp-again'), qnbd], { timeoutMs: 120_000 });
  assert.equal(again.code, 0, `qemu-img compare of the second-generation export: ${again.stdout}${again.stderr}`);
  for (const v of ['vol-r', 'vol-q']) await vols.detach(v);
});

test('WaitForBackingImage: True while the export image is pending or in progress on its one disk, False once ready; a detached volume is exported', { skip }, async () => {
  // Detached: the export attaches it without a frontend for the time of the export, then it is detached again.
  await vols.detach('vol-src');
  await cli('bi', 'create', 'exp-wait', '--from-volume', 'vol-src', '--export-type', 'qcow2');
  // The waiting volume's replica goes to the export's node (one disk per node): what it waits for is the export,
  // not a peer copy of it.
  const exportNode = await waitFor('the export data source', async () => {
    const r = await vols.req<{ spec?: { nodeID?: string } }>('GET', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/backingimagedatasources/exp-wait');
    return r.json.spec?.nodeID || undefined;
  }, 30_000);
  const tagged = await vols.req('PUT', `/v1/nodes/${exportNode}`, { tags: ['exporter'] });
  assert.equal(tagged.status, 200, JSON.stringify(tagged.json));
  const v = await vols.create('vol-w', { size: String(FS_SIZE), numberOfReplicas: 1, backingImage: 'exp-wait', frontend: 'nbd', nodeSelector: ['exporter'] });
  assert.equal(v.status, 201, JSON.stringify(v.json));
  await vols.setNode('vol-w', 'node-2');
  const seen = await waitFor('vol-w waits for its backing image', async () => {
    const w = await vols.get('vol-w');
    const cond = w.status?.conditions?.find((c) => c.type === 'WaitForBackingImage');
    if (cond?.status !== 'True') return undefined;
    const bi = await vols.req<V1Image>('GET', '/v1/backingimages/exp-wait');
    return { cond, files: bi.json.diskFileStatusMap ?? {} };
  }, 90_000);
  // The data source's disk says why it waits; the replica's disk waits for a copy of a file that does not exist yet.
  const exporting = Object.entries(seen.files).filter(([, f]) => /vol-src/.test(f.message ?? '') || f.state === 'in-progress');
  assert.equal(exporting.length, 1, `the export is prepared on exactly one disk: ${JSON.stringify(seen.files)}`);
  assert.ok(!Object.values(seen.files).some((f) => f.state === 'ready'));
  await imageReady('exp-wait');
  await vols.waitVolume('vol-src', 'vol-src detached again after the export', (x) => x.status?.state === 'detached', 120_000);
  const done = await vols.waitVolume('vol-w', 'vol-w attached with WaitForBackingImage False', (w) => w.status?.state === 'attached' && w.status.conditions?.find((c) => c.type === 'WaitForBackingImage')?.status === 'False', 120_000);
  assert.equal(done.status?.state, 'attached');
  await vols.detach('vol-w');
});

test('snapshots of a detached volume: create and revert attach it without a frontend for the action, then it is detached again', { skip }, async () => {
  const before = await vols.get('vol-src');
  assert.equal(before.status?.state, 'detached');
  const r = await vols.req<{ name: string }>('POST', '/v1/volumes/vol-src?action=snapshotCreate', { name: 'cold' });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  await vols.waitVolume('vol-src', 'vol-src detached after the snapshot', (x) => x.status?.state === 'detached', 120_000);
  const rev = await vols.req('POST', '/v1/volumes/vol-src?action=snapshotRevert', { name: 'cold' });
  assert.equal(rev.status, 200, JSON.stringify(rev.json));
  const list = await vols.req<{ data: { name: string }[] }>('POST', '/v1/volumes/vol-src?action=snapshotList', {});
  assert.equal(list.status, 200, JSON.stringify(list.json));
  assert.ok(list.json.data.some((s) => s.name === 'cold'));
  await vols.waitVolume('vol-src', 'vol-src detached after the revert', (x) => x.status?.state === 'detached', 120_000);
  // The content is unchanged (the snapshot was of the data as it was): its files are all there.
  await checkFiles('vol-src', 'node-1');
  await vols.detach('vol-src');
});
