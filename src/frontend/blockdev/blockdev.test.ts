// Tests of the blockdev frontend with the real tools: an engine (in this process) over a replica, exposed as
// <deviceDir>/<volume> through nbdfuse + a loop device; written with dd (O_DIRECT), read back over NBD with nbdcopy;
// and the leftovers of an engine killed with SIGKILL cleaned up by the next device of the same volume.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { runEngine } from '../../engine/index.js';
import { runReplica } from '../../replica/index.js';
import { blockdevUnavailable, NbdLoopDevice } from './index.js';
import { loopsBackedBy, mountPoints } from './stale.js';

const run = promisify(execFile);
const SIZE = 16 * 1024 * 1024;
const CLI = fileURLToPath(new URL('../../cli/main.js', import.meta.url));
const unavailable = await blockdevUnavailable();

let root: string;
const replicaStop = new AbortController();
let replicaDone: Promise<void>;
let replicaAddress = '';

before(async () => {
  if (unavailable) return;
  root = await mkdtemp(join(tmpdir(), 'stratum-blockdev-'));
  await new Promise<void>((resolve, reject) => {
    replicaDone = runReplica(
      {
        dir: join(root, 'r1'),
        listen: { host: '127.0.0.1', port: 0 },
        create: { name: 'r1', size: SIZE },
        log: () => {},
        onListening: (a) => {
          replicaAddress = 'path' in a ? a.path : `${a.host}:${a.port}`;
          resolve();
        },
      },
      replicaStop.signal,
    );
    replicaDone.catch(reject);
  });
});

after(async () => {
  if (unavailable) return;
  replicaStop.abort();
  await replicaDone;
  await rm(root, { recursive: true, force: true });
});

/** Starts runEngine with the blockdev frontend; resolves once ready, with the way to stop it. */
async function startEngine(deviceDir: string): Promise<{ device: string; nbdUri: string; stop: () => Promise<void> }> {
  const ac = new AbortController();
  let done!: Promise<void>;
  const ready = await new Promise<{ device: string; nbdUri: string }>((resolve, reject) => {
    done = runEngine(
      {
        volume: 'vol-b',
        replicas: [{ name: 'r1', address: replicaAddress }],
        nbd: { host: '127.0.0.1', port: 0 },
        blockdev: { deviceDir },
        log: () => {},
        onReady: (r) => resolve({ device: r.device ?? '', nbdUri: r.nbdUri }),
      },
      ac.signal,
    );
    done.catch(reject);
  });
  return {
    ...ready,
    stop: async () => {
      ac.abort();
      await done;
    },
  };
}

async function assertGone(deviceDir: string): Promise<void> {
  const file = join(deviceDir, '.fuse', 'vol-b.fuse');
  await assert.rejects(lstat(join(deviceDir, 'vol-b')), { code: 'ENOENT' }, 'the symlink is removed');
  assert.deepEqual(await loopsBackedBy(file), [], 'no loop device is left on the FUSE file');
  assert.ok(!(await mountPoints()).has(file), 'the FUSE mount is gone');
  await assert.rejects(stat(file), { code: 'ENOENT' }, 'the placeholder file is removed');
}

test('blockdev frontend: a block device of the volume size; dd O_DIRECT writes are read back over NBD; close removes it all', { skip: unavailable ?? false }, async () => {
  const deviceDir = join(root, 'dev-a');
  const e = await startEngine(deviceDir);
  try {
    assert.equal(e.device, join(deviceDir, 'vol-b'));
    assert.ok((await lstat(e.device)).isSymbolicLink());
    const loop = await readlink(e.device);
    assert.match(loop, /^\/dev\/loop\d+$/);
    assert.ok((await stat(e.device)).isBlockDevice());
    assert.equal(Number((await run('blockdev', ['--getsize64', e.device])).stdout.trim()), SIZE);

    const data = randomBytes(1024 * 1024);
    await writeFile(join(root, 'data'), data);
    // 1 MiB at 3 MiB, bypassing the page cache: the bytes must reach the replicas through FUSE and NBD.
    await run('dd', [`if=${join(root, 'data')}`, `of=${e.device}`, 'bs=64K', 'seek=48', 'oflag=direct', 'conv=notrunc,fsync', 'status=none']);
    await run('nbdcopy', [e.nbdUri, join(root, 'back.raw')]);
    const back = await readFile(join(root, 'back.raw'));
    assert.equal(back.length, SIZE);
    assert.ok(back.subarray(3 * 1024 * 1024, 4 * 1024 * 1024).equals(data), 'NBD reads what dd wrote to the device');
    assert.ok(back.subarray(0, 3 * 1024 * 1024).every((b) => b === 0), 'the rest is still zero');
  } finally {
    await e.stop();
  }
  await assertGone(deviceDir);
});

test('blockdev frontend: leftovers of an engine killed with SIGKILL are cleaned by the next device of the volume', { skip: unavailable ?? false }, async () => {
  const deviceDir = join(root, 'dev-b');
  const child = spawn(process.execPath, [CLI, 'engine', '--volume', 'vol-b', '--replica', `r1=${replicaAddress}`, '--nbd', '127.0.0.1:0', '--control', '127.0.0.1:0', '--frontend', 'blockdev', '--device-dir', deviceDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise((r) => child.once('exit', r));
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`engine exited with ${code}: ${stderr}`)));
  });
  const ready = JSON.parse(first) as { ready: boolean; nbd: string; control: string; device: string };
  assert.equal(ready.device, join(deviceDir, 'vol-b'));
  const oldLoop = await readlink(ready.device);
  child.kill('SIGKILL');
  await exited;
  const file = join(deviceDir, '.fuse', 'vol-b.fuse');
  assert.deepEqual(await loopsBackedBy(file), [oldLoop], 'the killed engine left its loop device');
  assert.ok((await lstat(ready.device)).isSymbolicLink(), 'and its symlink');

  const e = await startEngine(deviceDir);
  try {
    assert.equal(Number((await run('blockdev', ['--getsize64', e.device])).stdout.trim()), SIZE);
    const loops = await loopsBackedBy(file);
    assert.equal(loops.length, 1, `one loop device on the file, not ${loops.join(', ')}`);
    assert.equal(await readlink(e.device), loops[0]);
    // The device works: it reads what the replica holds.
    const head = (await run('dd', [`if=${e.device}`, 'bs=4096', 'count=1', 'iflag=direct', 'status=none'], { encoding: 'buffer' })).stdout;
    assert.equal(head.length, 4096);
  } finally {
    await e.stop();
  }
  await assertGone(deviceDir);
});

test('NbdLoopDevice refuses volume names that are not one path component', { skip: unavailable ?? false }, async () => {
  await assert.rejects(NbdLoopDevice.create({ volume: '../x', nbdUri: 'nbd://127.0.0.1:1/x', deviceDir: join(root, 'dev-c') }), { code: 'BlockdevInvalidArgument' });
});
