// A copy must not fill the disk it lands on: the volumes on that disk write into what is left. Real `stratum bim`
// processes; the receivers' disks are small tmpfs mounts (root). A sync that cannot fit is refused before a byte is
// written; a disk that fills up during a sync (another writer) gets its space back, the partial data removed. A data
// source's download or upload keeps the same reserve.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ensureSpace } from '../src/datasource/workfile.js';
import { BimProcess, exec, makeDisk, randomFile, sha512sum, stagedPath, type FileInfo } from './helpers/bim.js';
import { skipWithoutRootAnd, tempDir, waitFor } from './helpers/processes.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const skip = skipWithoutRootAnd(['head']);
const root = tempDir('bim-disk-full');
const mounts: string[] = [];

/** A tmpfs of `mib` MiB at root/label, holding a disk. */
function smallDisk(label: string, mib: number): { path: string; uuid: string } {
  const at = join(root.path, label);
  mkdirSync(at, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', at]);
  mounts.push(at);
  return makeDisk(at, 'disk');
}

const used = (path: string) => {
  const st = statfsSync(path);
  return (st.blocks - st.bfree) * st.bsize;
};

// The source sends at 16 MiB/s, so the 64 MiB sync lasts about 4 s: time to fill the disk under it.
let source: BimProcess | undefined;
const receivers: BimProcess[] = [];
let sha = '';

before(async () => {
  if (skip) return;
  source = new BimProcess(makeDisk(root.path, 'source'), { args: ['--bandwidth-limit', '16Mi'] });
  await source.start();
  const src = stagedPath(source.disk, 'img');
  await randomFile(src, SIZE);
  sha = await sha512sum(src);
  await source.fetchReady('img', 'u1', src, SIZE, { expectedChecksum: sha });
});

after(async () => {
  await Promise.all([source?.stop(), ...receivers.map((r) => r.stop())]);
  for (const m of mounts) execFileSync('umount', ['-l', m]);
  root.remove();
});

async function failed(bim: BimProcess): Promise<FileInfo> {
  return waitFor('the copy to fail', async () => {
    const f = await bim.file('img');
    if (f.state === 'ready') assert.fail('the copy became ready on a disk without room for it');
    return f.state === 'failed' ? f : undefined;
  }, 60_000);
}

test('a sync that does not fit is refused before a byte is written, naming what it needs and what is free', { skip }, async () => {
  const disk = smallDisk('tiny', 48);
  const b = new BimProcess(disk);
  receivers.push(b);
  await b.start();
  const before = used(disk.path);
  const r = await b.api('POST', '/v1/files/img/sync', { uuid: 'u1', size: SIZE, expectedChecksum: sha, sources: [source!.url] });
  assert.ok(r.status === 202 || r.status === 200, JSON.stringify(r.body));
  const f = await failed(b);
  assert.match(f.message, /^img needs 64\.0 MiB more on this disk and 2\.4 MiB must stay free for the volumes on it, but only 4\d\.\d MiB is free; free space or put the copy on another disk/);
  assert.ok(used(disk.path) - before < MiB, `nothing written: ${used(disk.path) - before} bytes more in use`);
});

test('a disk that fills up during a sync gets its space back: the partial data is removed and the copy fails', { skip }, async () => {
  const disk = smallDisk('filling', 96);
  const b = new BimProcess(disk);
  receivers.push(b);
  await b.start();
  const r = await b.api('POST', '/v1/files/img/sync', { uuid: 'u1', size: SIZE, expectedChecksum: sha, sources: [source!.url] });
  assert.ok(r.status === 202 || r.status === 200, JSON.stringify(r.body));
  await waitFor('the sync to move data', async () => (await b.file('img')).processedSize >= 8 * MiB, 30_000);
  // Another writer takes 60 MiB of the 96 while the copy still needs more than 40.
  const filler = join(disk.path, 'filler');
  await exec('sh', ['-c', `head -c ${60 * MiB} /dev/zero > ${filler} || true`]);
  const f = await failed(b);
  assert.match(f.message, /^the disk filled up while receiving img \(.*ENOSPC.*\); the partial copy was removed to give the space back to the volumes on this disk/);
  assert.equal(existsSync(join(disk.path, 'backing-images', 'img-u1', 'backing.partial')), false);
  rmSync(filler);
  assert.ok(used(disk.path) < 2 * MiB, `the disk is empty again: ${used(disk.path)} bytes in use`);
});

test("a data source's upload or download that would leave less than the disk's reserve is refused", { skip }, async () => {
  const disk = smallDisk('source-reserve', 48);
  // 48 MiB keeps 2.4 MiB free for the volumes: 40 MiB fits, 46.5 MiB does not.
  await ensureSpace(disk.path, 40 * MiB);
  await assert.rejects(ensureSpace(disk.path, 46.5 * MiB), /^DataSourceError: the file needs 48758784 more bytes and 2516582 must stay free for the volumes on this disk, but the disk has 5\d{7} free$/);
});
