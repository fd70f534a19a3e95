// End-to-end: holes kept from the source to every copy. A sparse raw image downloaded and uploaded by a real
// `stratum data-source`, taken over by a real `stratum bim` (which reads nothing: the data source left the chunk
// manifest it built while writing) and synced to a second manager; a qcow2 made by the real qemu-img through the
// same path. Allocation is measured with `du` and st_blocks, contents with sha512sum and `qemu-img compare`.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BimProcess, exec, makeDisk, sha512sum } from './helpers/bim.js';
import { DataSourceProcess, OriginServer, sha512, testBytes } from './helpers/http-fixtures.js';
import { dataPlaneAuth } from './helpers/credentials.js';
import { hasTool, tempDir } from './helpers/processes.js';

const MiB = 1024 * 1024;
const root = tempDir('holes');
const cleanups: (() => Promise<void>)[] = [];
let seq = 0;

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  root.remove();
});

/** 128 MiB holding 8 MiB of data in two runs that start and end inside 64 KiB blocks, zeros to the end. */
function sparseImage(): { data: Buffer; dataBytes: number } {
  const data = Buffer.alloc(128 * MiB);
  testBytes(4 * MiB, 7).copy(data, 3 * MiB + 1000);
  testBytes(4 * MiB, 8).copy(data, 61 * MiB + 12_345);
  return { data, dataBytes: 8 * MiB };
}

async function du(path: string): Promise<number> {
  const r = await exec('du', ['-B1', path]);
  assert.equal(r.code, 0, r.stderr);
  return Number(r.stdout.split('\t')[0]);
}

async function bim(label: string): Promise<BimProcess> {
  const b = new BimProcess(makeDisk(root.path, label));
  await b.start();
  cleanups.push(() => b.stop());
  return b;
}

async function dataSource(disk: string, args: string[]): Promise<DataSourceProcess> {
  const p = new DataSourceProcess(['--disk', disk, '--name', 'img', '--uuid', `u${++seq}`, ...args]);
  cleanups.push(() => p.stop());
  return p.start();
}

/** Takes the data source's finished file over the way the controller does, then syncs it to `to`. */
async function takeOverAndSync(f: Record<string, unknown>, from: BimProcess, to: BimProcess, uuid: string): Promise<{ first: string; copy: string }> {
  const hashed = (await from.stats()).hashedBytes;
  const size = f.size as number;
  const r = await from.api('POST', '/v1/files/img/fetch', {
    uuid,
    sourcePath: f.filePath,
    size,
    expectedChecksum: f.currentChecksum,
    sha512: f.currentChecksum,
    identity: f.identity,
  });
  assert.ok(r.status === 202 || r.status === 200, JSON.stringify(r.body));
  await from.waitState('img', ['ready']);
  assert.equal((await from.stats()).hashedBytes, hashed, 'the take-over read nothing');
  const m = await from.api('GET', `/v1/files/img/chunks?uuid=${uuid}`);
  assert.equal(m.status, 200, 'the chunk manifest is there at once: the data source built it while writing');
  assert.equal((await from.stats()).hashedBytes, hashed, 'serving the manifest read nothing');
  const s = await to.api('POST', '/v1/files/img/sync', { uuid, size, expectedChecksum: f.currentChecksum, sources: [from.url] });
  assert.ok(s.status === 202 || s.status === 200, JSON.stringify(s.body));
  const done = await to.waitState('img', ['ready'], 120_000);
  assert.equal(done.currentChecksum, f.currentChecksum);
  const dir = `img-${uuid}`;
  return { first: join(from.disk.path, 'backing-images', dir, 'backing'), copy: join(to.disk.path, 'backing-images', dir, 'backing') };
}

test('a downloaded sparse raw stays sparse on the first copy and on a synced one; the take-over and its manifest read nothing', async (t) => {
  const { data, dataBytes } = sparseImage();
  const origin = new OriginServer({});
  origin.files.set('/sparse.raw', data);
  await origin.start();
  cleanups.push(() => origin.close());
  const a = await bim('dl-a');
  const b = await bim('dl-b');
  const ds = await dataSource(a.disk.path, ['--source-type', 'download', '--parameters', `url=${origin.url}/sparse.raw`, '--checksum', sha512(data)]);
  const f = await ds.waitState(['ready-for-transfer', 'failed'], 60_000);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  const file = f.filePath as string;
  const dsAllocated = await du(file);
  assert.equal(statSync(file).size, data.length);
  assert.equal(await sha512sum(file), sha512(data));
  assert.ok(existsSync(`${file}.chunks-4194304.json`), 'the chunk manifest is left beside the file');

  const { first, copy } = await takeOverAndSync(f, a, b, f.uuid as string);
  const firstAllocated = await du(first);
  const copyAllocated = await du(copy);
  t.diagnostic(`data ${dataBytes}; allocated: data source ${dsAllocated}, first copy ${firstAllocated}, synced copy ${copyAllocated} (du -B1)`);
  for (const n of [dsAllocated, firstAllocated, copyAllocated]) assert.ok(n <= 1.1 * dataBytes, `${n} bytes allocated for ${dataBytes} of data`);
  assert.equal(statSync(copy).blocks * 512, copyAllocated);
  assert.equal(await sha512sum(copy), sha512(data));
  assert.equal((await b.file('img')).realSize, copyAllocated);
  const tr = await fetch(`${ds.url}/v1/transfer`, { method: 'POST', headers: dataPlaneAuth() });
  assert.equal(tr.status, 200);
  assert.equal(existsSync(`${file}.chunks-4194304.json`), false, 'the data source removes its manifest after the transfer');
});

test('an uploaded sparse raw stays sparse; zeros inside a chunk sent as data are not written either', async () => {
  const { data, dataBytes } = sparseImage();
  const disk = makeDisk(root.path, 'up');
  const ds = await dataSource(disk.path, ['--source-type', 'upload']);
  const declared = await fetch(`${ds.url}/v1/upload?size=${data.length}&checksum=${sha512(data)}`, { method: 'POST', headers: dataPlaneAuth() });
  assert.equal(declared.status, 200);
  for (const [from, to] of [[0, 50 * MiB], [50 * MiB, data.length]] as const) {
    const res = await fetch(`${ds.url}/v1/upload?offset=${from}`, { method: 'PUT', body: data.subarray(from, to), headers: { ...dataPlaneAuth(), 'content-type': 'application/octet-stream' } });
    assert.equal(res.status, 200, await res.text());
  }
  const f = await ds.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  const allocated = await du(f.filePath as string);
  assert.ok(allocated <= 1.1 * dataBytes, `${allocated} bytes allocated for ${dataBytes} of data`);
  assert.equal(await sha512sum(f.filePath as string), sha512(data));
});

test('a qcow2 image: unallocated clusters cost nothing on the first copy or a synced one', { skip: hasTool('qemu-img') ? false : 'qemu-img is not installed' }, async (t) => {
  const work = join(root.path, 'qcow2-src');
  mkdirSync(work, { recursive: true });
  const raw = join(work, 'in.raw');
  const { data } = sparseImage();
  writeFileSync(raw, data);
  const qcow = join(work, 'img.qcow2');
  const c = await exec('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow]);
  assert.equal(c.code, 0, c.stderr);
  const bytes = await readFile(qcow);
  const origin = new OriginServer({});
  origin.files.set('/img.qcow2', bytes);
  await origin.start();
  cleanups.push(() => origin.close());
  const a = await bim('q-a');
  const b = await bim('q-b');
  const ds = await dataSource(a.disk.path, ['--source-type', 'download', '--parameters', `url=${origin.url}/img.qcow2`]);
  const f = await ds.waitState(['ready-for-transfer', 'failed'], 60_000);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  assert.equal(f.format, 'qcow2');
  const { first, copy } = await takeOverAndSync(f, a, b, f.uuid as string);
  const source = await du(qcow);
  const firstAllocated = await du(first);
  const copyAllocated = await du(copy);
  t.diagnostic(`qcow2 of ${bytes.length} bytes (${source} allocated, virtual ${data.length}); first copy ${firstAllocated}, synced copy ${copyAllocated}`);
  for (const n of [firstAllocated, copyAllocated]) assert.ok(n <= 1.1 * source, `${n} bytes allocated for a qcow2 file allocating ${source}`);
  const cmp = await exec('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', copy, raw]);
  assert.equal(cmp.code, 0, `qemu-img compare: ${cmp.stdout}${cmp.stderr}`);
});
