// A disk that stops answering under a scrub. The disk is ext4 on a loop device over nbdfuse over qemu-nbd; stopping
// qemu-nbd (SIGSTOP) leaves every read that misses the page cache waiting, as on a hung disk. A real `stratum bim`
// scrubs a ready copy there: the scrub must not read for ever. After the stall deadline the copy fails with a message
// that says the disk may be hung, the manager keeps answering, and no job is left holding the file. Root.

import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { BimProcess, makeDisk, randomFile, sha512sum, stagedPath } from './helpers/bim.js';
import { skipWithoutRootAnd, tempDir, waitFor } from './helpers/processes.js';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const STALL_MS = 3000;
const skip = skipWithoutRootAnd(['qemu-nbd', 'nbdfuse', 'losetup', 'mkfs.ext4', 'fusermount3']);
const root = tempDir('bim-hung-disk');
const sock = join(root.path, 'nbd.sock');
const fuseDir = join(root.path, 'fuse');
// nbdfuse mounts on the directory and serves the device as this one file in it.
const fuseFile = join(fuseDir, 'dev');
const mnt = join(root.path, 'mnt');
const children: ChildProcess[] = [];
let loop = '';
let bim: BimProcess | undefined;
let qemuNbd: ChildProcess | undefined;

function start(cmd: string, args: string[]): ChildProcess {
  const child = spawn(cmd, args, { stdio: 'ignore' });
  children.push(child);
  return child;
}

before(async () => {
  if (skip) return;
  mkdirSync(fuseDir);
  mkdirSync(mnt);
  const raw = join(root.path, 'disk.raw');
  writeFileSync(raw, '');
  execFileSync('truncate', ['-s', '160M', raw]);
  qemuNbd = start('qemu-nbd', ['-f', 'raw', '-k', sock, '-t', raw]);
  await waitFor('qemu-nbd to listen', async () => existsSync(sock));
  start('nbdfuse', [fuseFile, '--unix', sock]);
  await waitFor('nbdfuse to serve', async () => existsSync(fuseFile));
  loop = execFileSync('losetup', ['--find', '--show', fuseFile], { encoding: 'utf8' }).trim();
  execFileSync('mkfs.ext4', ['-q', loop]);
  execFileSync('mount', [loop, mnt]);
  bim = new BimProcess(makeDisk(mnt, 'disk'), { env: { STRATUM_BIM_STALL_TIMEOUT_MS: String(STALL_MS) } });
  await bim.start();
  const src = stagedPath(bim.disk, 'img');
  await randomFile(src, SIZE);
  await bim.fetchReady('img', 'u1', src, SIZE, { expectedChecksum: await sha512sum(src) });
});

after(async () => {
  // Whatever failed, the disk answers again first: everything below reads or writes it.
  if (qemuNbd?.pid) process.kill(qemuNbd.pid, 'SIGCONT');
  await bim?.stop();
  const quiet = (cmd: string, args: string[]) => {
    try {
      execFileSync(cmd, args, { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  // The manager's reads that waited on the disk may still be ending: busy for a moment.
  for (let i = 0; i < 20 && existsSync(join(mnt, 'disk')) && !quiet('umount', [mnt]); i++) await sleep(250);
  if (existsSync(join(mnt, 'disk'))) quiet('umount', ['-l', mnt]);
  if (loop) quiet('losetup', ['-d', loop]);
  quiet('fusermount3', ['-u', fuseDir]);
  for (const c of children) if (c.exitCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
  root.remove();
});

// A timeout of its own: the hooks then still run and let the disk answer again (a stopped qemu-nbd left behind would
// hang every later `sync` on the machine).
test('a scrub on a disk that stops answering fails the copy after the stall deadline; the manager keeps serving', { skip, timeout: 120_000 }, async () => {
  const b = bim!;
  // Nothing of the file may stay cached: the scrub must go to the disk.
  execFileSync('sync', ['-f', mnt]);
  writeFileSync('/proc/sys/vm/drop_caches', '3');
  process.kill(qemuNbd!.pid!, 'SIGSTOP');
  const r = await b.api('POST', '/v1/files/img/scrub', { uuid: 'u1' });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const failed = await waitFor('the copy to fail', async () => {
    const f = await b.file('img');
    return f.state === 'failed' ? f : undefined;
  }, 30_000);
  assert.equal(failed.message, `scrub of img stalled: nothing read for ${STALL_MS / 1000} s; the disk may be hung, and the volumes reading this copy with it`);
  assert.equal((await b.api('GET', '/v1/version')).status, 200, 'the manager keeps answering');
  // No scrub holds the disk any more: a second one is refused for the copy's state, not as busy.
  const again = await b.api('POST', '/v1/files/img/scrub', { uuid: 'u1' });
  assert.equal(again.status, 409, JSON.stringify(again.body));
  assert.equal((again.body as { code?: string }).code, 'NotReady', JSON.stringify(again.body));
});
