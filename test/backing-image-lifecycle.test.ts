// End-to-end: the backing-image lifecycle on a real cluster (manager + three node agents, real pods, real files),
// images served by a local HTTP server; a copy damaged on disk is found and repaired by a scrub. Tests share the
// cluster and run in order.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { KubeObject } from '../src/api/meta.js';
import { DEFAULT_CHUNK_SIZE, ManifestBuilder, manifestDigest } from '../src/bim/manifest.js';
import { HttpStore } from '../src/client/http-store.js';
import { getPod, podPid } from './helpers/cluster.js';
import { allReady, LifecycleCluster, staticServer } from './helpers/lifecycle.js';
import { CLI, cliEnv, hasTool, kubectlArgs, REPO, run, stratum, tempDir, waitFor } from './helpers/processes.js';
import { tokenFor } from './helpers/credentials.js';

const NS = 'longhorn-system';
const cluster = new LifecycleCluster(3);
const files = tempDir('images');
let web: { url: string; close(): Promise<void> };
let client: HttpStore;

async function sha512(path: string): Promise<string> {
  const h = createHash('sha512');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

function randomFile(name: string, mib: number): string {
  const path = join(files.path, name);
  const buf = Buffer.alloc(mib * 1024 * 1024);
  for (let i = 0; i < buf.length; i += 4096) buf.writeUInt32LE((i * 2654435761) >>> 0, i);
  buf.write(name, 0);
  writeFileSync(path, buf);
  return path;
}

async function createDownload(name: string, file: string, extra: Record<string, unknown> = {}) {
  return cluster.v1('POST', '/v1/backingimages', { name, sourceType: 'download', parameters: { url: `${web.url}/${file}` }, ...extra });
}

async function podNames(): Promise<string[]> {
  return (await client.list('Pod', { namespace: NS })).items.map((p) => p.metadata.name ?? '');
}

before(async () => {
  randomFile('small.raw', 8);
  randomFile('image.raw', 32);
  if (hasTool('qemu-img')) {
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(files.path, 'small.raw'), join(files.path, 'parrot.qcow2')]);
  } else {
    writeFileSync(join(files.path, 'parrot.qcow2'), readFileSync(join(files.path, 'small.raw')));
  }
  web = await staticServer(files.path);
  await cluster.start({
    'allow-private-download-urls': 'true',
    'backing-image-copy-retry-backoff-min': '1',
    'backing-image-copy-retry-backoff-max': '2',
    'backing-image-recovery-wait-interval': '5',
    'node-down-timeout': '5',
  });
  client = new HttpStore({ server: cluster.url, token: tokenFor(cluster.url) });
});

after(async () => {
  await cluster.stop();
  await web?.close();
  files.remove();
});

test('the ten seed BackingImages (URL rewritten to a local server) each reach one ready copy; no data-source pod is left', async () => {
  const seed = readFileSync(join(REPO, 'test', 'fixtures', 'seed-backing-images.yaml'), 'utf8')
    .replaceAll('https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2', `${web.url}/parrot.qcow2`);
  const res = await stratum(cluster.url, ['apply', '-f', '-'], seed);
  assert.equal(res.code, 0, res.stderr);
  for (let i = 1; i <= 10; i++) await cluster.waitCopies(`bi-test${i}`, `bi-test${i} ready`, allReady(1), 120_000);
  await waitFor('the data-source pods to be gone', async () => !(await podNames()).some((n) => n.startsWith('backing-image-ds-')), 30_000);
  const img = await cluster.image('bi-test1');
  assert.equal(img.currentChecksum, await sha512(join(files.path, 'parrot.qcow2')));
});

test('a wrong expected checksum fails the copy naming both checksums, removes the pod, and leaves no file', async () => {
  const actual = await sha512(join(files.path, 'small.raw'));
  const wrong = 'ab'.repeat(64);
  const r = await createDownload('wrong-sum', 'small.raw', { expectedChecksum: wrong });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const img = await cluster.waitCopies('wrong-sum', 'the copy to fail', (f) => Object.values(f).some((x) => x.state === 'failed'), 60_000);
  const msg = Object.values(img.diskFileStatusMap).map((f) => f.message).join(' ');
  assert.match(msg, new RegExp(wrong));
  assert.match(msg, new RegExp(actual));
  await waitFor('the data-source pod to be removed', async () => !(await podNames()).includes('backing-image-ds-wrong-sum'), 30_000);
  for (const node of cluster.nodes) {
    for (const dir of cluster.imageDirs(node, 'wrong-sum')) {
      const { stdout } = await run('find', [dir, '-type', 'f']);
      assert.equal(stdout.trim(), '', `files left on ${node}: ${stdout}`);
    }
  }
  assert.equal((await cluster.v1('DELETE', '/v1/backingimages/wrong-sum')).status, 204);
  await waitFor('the image to be gone', async () => (await cluster.v1('GET', '/v1/backingimages/wrong-sum')).status === 404, 30_000);
});

test('minNumberOfCopies 1 → 3 gives three ready copies on three nodes; 3 → 1 cleans up to one copy', async () => {
  assert.equal((await createDownload('mc', 'image.raw')).status, 200);
  await cluster.waitCopies('mc', 'one ready copy', allReady(1), 60_000);
  await cluster.v1('POST', '/v1/backingimages/mc?action=updateMinNumberOfCopies', { minNumberOfCopies: 3 });
  const three = await cluster.waitCopies('mc', 'three ready copies', allReady(3), 90_000);
  const diskNodes = await cluster.diskNodes();
  assert.equal(new Set(Object.keys(three.diskFileStatusMap).map((d) => diskNodes.get(d))).size, 3);
  // The two synced copies were checked chunk by chunk against the manifest the data source built with the checksum.
  const bi = await cluster.k8s<{ status?: { chunkManifestDigest?: string } }>(`/apis/longhorn.io/v1beta2/namespaces/${NS}/backingimages/mc`);
  const built = new ManifestBuilder(undefined, DEFAULT_CHUNK_SIZE);
  built.update(readFileSync(join(files.path, 'image.raw')));
  assert.equal(bi.status?.chunkManifestDigest, `${DEFAULT_CHUNK_SIZE}:${manifestDigest(built.finish({ name: 'mc', uuid: '', sha512: '' })).toString('hex')}`);
  await cluster.setSetting('backing-image-cleanup-wait-interval', '1');
  await cluster.v1('POST', '/v1/backingimages/mc?action=updateMinNumberOfCopies', { minNumberOfCopies: 1 });
  const one = await cluster.waitCopies('mc', 'one copy after cleanup', allReady(1), 180_000);
  const kept = diskNodes.get(Object.keys(one.diskFileStatusMap)[0] ?? '');
  await waitFor('the removed copies\' files to be deleted', async () => cluster.nodes.filter((n) => n !== kept).every((n) => cluster.imageDirs(n, 'mc').length === 0), 30_000);
  await cluster.setSetting('backing-image-cleanup-wait-interval', '60');
});

test('a Volume blocks deletion (409 naming it); a Replica blocks cleanup of its disk', async () => {
  const img = await cluster.image('mc');
  const disk = Object.keys(img.diskFileStatusMap)[0] ?? '';
  const node = (await cluster.diskNodes()).get(disk) ?? '';
  // The volume's one replica is the hand-made one below. A disk selector no disk matches keeps the volume
  // controller from placing a replica of its own first: it then deleted one of the two as an extra, and when that
  // was the hand-made one (the order the two reached its cache) the cleanup named the other or the delete got 404.
  await client.create({ apiVersion: 'longhorn.io/v1beta2', kind: 'Volume', metadata: { name: 'vol-mc', namespace: NS }, spec: { size: '67108864', numberOfReplicas: 1, backingImage: 'mc', frontend: '', diskSelector: ['no-disk-has-this-tag'] } } as KubeObject);
  const del = await cluster.v1('DELETE', '/v1/backingimages/mc');
  assert.equal(del.status, 409);
  assert.match(String(del.json['message']), /vol-mc/);
  await client.create({
    apiVersion: 'longhorn.io/v1beta2', kind: 'Replica', metadata: { name: 'vol-mc-r-1', namespace: NS },
    spec: { volumeName: 'vol-mc', nodeID: node, diskID: disk, diskPath: cluster.diskDir(node), dataDirectoryName: 'vol-mc-1', backingImage: 'mc', volumeSize: '67108864' },
  } as KubeObject);
  // The replica gate: the copy on the replica's disk is ready, so the replica need not wait, and says so.
  const cond = (o: KubeObject) => ((o.status as { conditions?: { type: string; status: string; message?: string }[] } | undefined)?.conditions ?? []).find((c) => c.type === 'WaitForBackingImage');
  await waitFor('the replica\'s WaitForBackingImage condition', async () => cond(await client.get('Replica', NS, 'vol-mc-r-1'))?.status === 'False');
  assert.match(cond(await client.get('Replica', NS, 'vol-mc-r-1'))?.message ?? '', new RegExp(`disk ${disk} is ready`));
  await waitFor('the volume\'s WaitForBackingImage condition', async () => cond(await client.get('Volume', NS, 'vol-mc'))?.status === 'False');
  const cleanup = await cluster.v1('POST', '/v1/backingimages/mc?action=backingImageCleanup', { disks: [disk] });
  assert.equal(cleanup.status, 409);
  assert.match(String(cleanup.json['message']), /vol-mc-r-1/);
  const kubectlDel = await run('kubectl', [...kubectlArgs(cluster.url, []), 'delete', 'lhbi', 'mc', '-n', NS, '--wait=false'], { env: { ...process.env, KUBECONFIG: '/dev/null' } });
  if (hasTool('kubectl')) assert.match(kubectlDel.stderr, /vol-mc/);
  await client.delete('Replica', NS, 'vol-mc-r-1');
  await client.delete('Volume', NS, 'vol-mc');
  assert.equal((await cluster.image('mc')).name, 'mc');
});

test('rm -rf of one copy: it becomes failed, then ready again from a peer', async () => {
  await cluster.v1('POST', '/v1/backingimages/mc?action=updateMinNumberOfCopies', { minNumberOfCopies: 2 });
  const two = await cluster.waitCopies('mc', 'two ready copies', allReady(2), 90_000);
  const diskNodes = await cluster.diskNodes();
  const victimDisk = Object.keys(two.diskFileStatusMap)[1] ?? '';
  const victim = diskNodes.get(victimDisk) ?? '';
  for (const d of cluster.imageDirs(victim, 'mc')) await rm(d, { recursive: true, force: true });
  await cluster.waitCopies('mc', 'the removed copy to be failed', (f) => f[victimDisk]?.state === 'failed', 30_000);
  await cluster.waitCopies('mc', 'the copy to be ready again', (f) => f[victimDisk]?.state === 'ready', 60_000);
  const path = join(cluster.imageDirs(victim, 'mc')[0] ?? '', 'backing');
  assert.equal(await sha512(path), (await cluster.image('mc')).currentChecksum);
});

test('bytes of a copy changed with size, mtime and inode kept: stratum bi scrub finds them and repairs the chunk from the peer', async () => {
  const ready = (f: Record<string, { state?: string }>) => Object.values(f).filter((c) => c.state === 'ready').length;
  const copies = await cluster.waitCopies('mc', 'two ready copies or more', (f) => ready(f) >= 2, 90_000);
  const diskNodes = await cluster.diskNodes();
  const victimDisk = Object.keys(copies.diskFileStatusMap).find((d) => copies.diskFileStatusMap[d]?.state === 'ready') ?? '';
  const path = join(cluster.imageDirs(diskNodes.get(victimDisk) ?? '', 'mc')[0] ?? '', 'backing');
  const before = statSync(path, { bigint: true });
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from('bit rot'), 0, 7, 1000);
  closeSync(fd);
  const ns = before.mtimeNs;
  assert.equal(spawnSync('touch', ['-m', '-d', `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`, path]).status, 0);
  assert.equal(statSync(path, { bigint: true }).mtimeNs, ns);
  const r = await run(process.execPath, [CLI, '--server', cluster.url, 'bi', 'scrub', 'mc', '--wait', '--timeout', '120'], { env: cliEnv([CLI, '--server', cluster.url]), timeoutMs: 150_000 });
  assert.equal(r.code, 1, `a copy was repaired, so not clean: ${r.stdout}${r.stderr}`);
  // Another copy may get ready between the wait above and the request: the CLI says how many it asked for.
  const n = Number(/^backingimage.longhorn.io\/mc scrub requested for (\d+) ready copies$/m.exec(r.stdout)?.[1]);
  assert.ok(n >= 2, r.stdout);
  assert.match(r.stdout, new RegExp(`^disk ${victimDisk}: repaired by a scrub: 1 chunk had changed on disk \\(the first at offset 0\\) and was fetched again from peers$`, 'm'));
  assert.equal(r.stdout.match(/: verified: every byte hashes to the checksum$/gm)?.length, n - 1, 'the other copies are clean');
  assert.equal(await sha512(path), (await cluster.image('mc')).currentChecksum);
  const clean = await run(process.execPath, [CLI, '--server', cluster.url, 'bi', 'scrub', 'mc', '--wait', '--timeout', '120'], { env: cliEnv([CLI, '--server', cluster.url]), timeoutMs: 150_000 });
  assert.equal(clean.code, 0, clean.stdout + clean.stderr);
  const m = Number(/^backingimage.longhorn.io\/mc scrub requested for (\d+) ready copies$/m.exec(clean.stdout)?.[1]);
  assert.equal(clean.stdout.match(/: verified: every byte hashes to the checksum$/gm)?.length, m, 'a clean scrub clears the news of the repair');
});

test('kill -9 of a manager pod process: copies go unknown, the pod comes back, copies are ready with no transfer', async () => {
  const img = await cluster.image('mc');
  const disk = Object.keys(img.diskFileStatusMap)[0] ?? '';
  const node = (await cluster.diskNodes()).get(disk) ?? '';
  const bims = (await client.list('BackingImageManager', { namespace: NS })).items.filter((m) => (m.spec as { diskUUID?: string }).diskUUID === disk);
  const podName = bims[0]?.metadata.name ?? '';
  const pid = podPid(await getPod(cluster.url, NS, podName));
  assert.ok(pid, 'the manager pod has a pid');
  const file = join(cluster.imageDirs(node, 'mc')[0] ?? '', 'backing');
  const before = statSync(file, { bigint: true });
  process.kill(pid, 'SIGKILL');
  await cluster.waitCopies('mc', 'the copy to be unknown', (f) => f[disk]?.state === 'unknown', 20_000);
  await cluster.waitCopies('mc', 'the copy to be ready again', (f) => f[disk]?.state === 'ready', 60_000);
  const after = statSync(file, { bigint: true });
  assert.equal(after.ino, before.ino, 'the same file (no transfer)');
  assert.equal(after.mtimeNs, before.mtimeNs, 'the file was not rewritten');
  const newPid = podPid(await getPod(cluster.url, NS, podName));
  assert.notEqual(newPid, pid);
});

test('the manager killed and restarted ten times: no data-source pod is created, all copies are ready after each', async () => {
  const images = ['mc', 'bi-test1', 'bi-test2'];
  const { resourceVersion } = await client.list('Pod', { namespace: NS });
  for (let i = 0; i < 10; i++) {
    await cluster.manager.kill9();
    await cluster.manager.start();
    for (const name of images) {
      await cluster.waitCopies(name, `${name} ready after restart ${i + 1}`, (f) => Object.values(f).length > 0 && Object.values(f).every((x) => x.state === 'ready'), 30_000);
    }
  }
  const ac = new AbortController();
  const created: string[] = [];
  const timer = setTimeout(() => ac.abort(), 2000);
  for await (const ev of client.watch('Pod', { namespace: NS, resourceVersion, signal: ac.signal })) {
    if (ev.type === 'ADDED') created.push(ev.object.metadata.name ?? '');
  }
  clearTimeout(timer);
  assert.deepEqual(created.filter((n) => images.some((i) => n === `backing-image-ds-${i}`)), []);
});

test('a stopped node agent: its copies go unknown, the others stay ready; restarted, they are ready without a sync', async () => {
  const img = await cluster.image('mc');
  const diskNodes = await cluster.diskNodes();
  const [downDisk, upDisk] = Object.keys(img.diskFileStatusMap);
  const downNode = diskNodes.get(downDisk ?? '') ?? '';
  const file = join(cluster.imageDirs(downNode, 'mc')[0] ?? '', 'backing');
  const before = statSync(file, { bigint: true });
  await cluster.stopAgent(downNode);
  await cluster.waitCopies('mc', 'the stopped node\'s copy to be unknown', (f) => f[downDisk ?? '']?.state === 'unknown' && f[upDisk ?? '']?.state === 'ready', 30_000);
  await cluster.startAgent(downNode);
  // While the node was down its copy did not count as healthy, so a third copy may have been added meanwhile.
  await cluster.waitCopies('mc', 'both copies ready', (f) => f[downDisk ?? '']?.state === 'ready' && f[upDisk ?? '']?.state === 'ready', 60_000);
  const after = statSync(file, { bigint: true });
  assert.equal(after.ino, before.ino);
  assert.equal(after.mtimeNs, before.mtimeNs);
});

test('stratum bi upload of 1 GiB interrupted at ~50% and re-run completes; download returns the same bytes', async () => {
  const big = join(files.path, 'big.raw');
  await run('sh', ['-c', `head -c 1073741824 /dev/urandom > ${big}`], { timeoutMs: 120_000 });
  const sum = (await run('sha512sum', [big])).stdout.split(' ')[0] ?? '';
  const first = spawn(process.execPath, [CLI, '--server', cluster.url, 'bi', 'upload', 'up1', big, '--checksum', sum], { stdio: 'ignore', env: cliEnv([CLI, '--server', cluster.url]) });
  await waitFor('half of the upload', async () => {
    const r = await cluster.v1('GET', '/v1/backingimages/up1/upload').catch(() => undefined);
    return r?.status === 200 && Number(r.json['offset']) >= 512 * 1024 * 1024;
  }, 120_000);
  first.kill('SIGKILL');
  const offset = Number((await cluster.v1('GET', '/v1/backingimages/up1/upload')).json['offset']);
  assert.ok(offset > 0 && offset < 1073741824, `interrupted at ${offset}`);
  const second = await run(process.execPath, [CLI, '--server', cluster.url, 'bi', 'upload', 'up1', big, '--checksum', sum], { timeoutMs: 300_000 });
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /resuming the upload at \d+/);
  assert.equal((await cluster.image('up1')).currentChecksum, sum);
  const out = join(files.path, 'big.out');
  const dl = await run(process.execPath, [CLI, '--server', cluster.url, 'bi', 'download', 'up1', '-o', out], { timeoutMs: 300_000 });
  assert.equal(dl.code, 0, dl.stderr);
  assert.equal((await run('sha512sum', [out])).stdout.split(' ')[0], sum);
  await rm(big, { force: true });
  await rm(out, { force: true });
  assert.equal((await cluster.v1('DELETE', '/v1/backingimages/up1')).status, 204);
  // Gone before the next test counts the images.
  await waitFor('up1 to be gone', async () => (await cluster.v1('GET', '/v1/backingimages/up1')).status === 404, 60_000);
});

test('refused inputs get a clear 4xx and change nothing', async () => {
  const before = (await client.list('BackingImage', { namespace: NS })).items.length;
  const copiesBefore = Object.keys((await cluster.image('mc')).diskFileStatusMap).length;
  const scheme = await cluster.v1('POST', '/v1/backingimages', { name: 'bad-scheme', sourceType: 'download', parameters: { url: 'ftp://example.com/x.raw' } });
  assert.equal(scheme.status, 422);
  assert.match(String(scheme.json['message']), /http/);
  await cluster.setSetting('allow-private-download-urls', 'false');
  const loop = await createDownload('loopback', 'small.raw');
  assert.equal(loop.status, 422);
  assert.match(String(loop.json['message']), /allow-private-download-urls/);
  await cluster.setSetting('allow-private-download-urls', 'true');
  const dots = await cluster.v1('POST', '/v1/backingimages', { name: '../etc', sourceType: 'download', parameters: { url: `${web.url}/small.raw` } });
  assert.equal(dots.status, 422);
  assert.match(String(dots.json['message']), /name/);
  const unknownDisk = await cluster.v1('POST', '/v1/backingimages/mc?action=backingImageCleanup', { disks: ['no-such-disk'] });
  assert.equal(unknownDisk.status, 400);
  assert.match(String(unknownDisk.json['message']), /no-such-disk/);
  assert.equal((await client.list('BackingImage', { namespace: NS })).items.length, before);
  assert.equal(Object.keys((await cluster.image('mc')).diskFileStatusMap).length, copiesBefore);
});
