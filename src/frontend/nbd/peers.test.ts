// End-to-end tests of the NBD server against real peers nobody here wrote: nbdinfo and nbdcopy (libnbd),
// qemu-img and qemu-io (qemu), and fio's nbd engine, over TCP and a Unix socket, with FileBlockDevice exports.
// A test whose tool is missing is skipped by name and says which package provides it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdClient } from './client.js';
import { FileBlockDevice } from './file-device.js';
import { NbdServer } from './server.js';
import { ScriptedDevice, sleep } from './testing.js';

function missing(tool: string, args: string[], pkg: string): string | false {
  const r = spawnSync(tool, args, { stdio: 'ignore' });
  return r.status === 0 ? false : `${tool} is not installed or not usable (package ${pkg})`;
}

const noNbdinfo = missing('nbdinfo', ['--version'], 'libnbd-bin');
const noNbdcopy = missing('nbdcopy', ['--version'], 'libnbd-bin');
const noQemuImg = missing('qemu-img', ['--version'], 'qemu-utils');
const noQemuIo = missing('qemu-io', ['--version'], 'qemu-utils');
const noFio = missing('fio', ['--enghelp=nbd'], 'fio built with the nbd engine');

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a tool without blocking the event loop (the server under test lives in this process). */
function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], signal: AbortSignal.timeout(timeoutMs) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => reject(new Error(`${cmd} ${args.join(' ')} failed to run: ${err.message}`)));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function runOk(cmd: string, args: string[]): Promise<RunResult> {
  const r = await run(cmd, args);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

const SIZE = 64 * 1024 * 1024;
const SMALL = 16 * 1024 * 1024;
let dir = '';
let server: NbdServer;
let port = 0;
let socketPath = '';
let srcDigest = '';
let smallDigest = '';
const devices: FileBlockDevice[] = [];

const digest = async (path: string): Promise<string> => createHash('sha256').update(await readFile(path)).digest('hex');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stratum-nbd-peers-'));
  const src = join(dir, 'src.img');
  await writeFile(src, randomBytes(SIZE));
  srcDigest = await digest(src);
  smallDigest = createHash('sha256').update((await readFile(src)).subarray(0, SMALL)).digest('hex');
  server = new NbdServer();
  await server.listen({ host: '127.0.0.1', port: 0 });
  socketPath = join(dir, 'nbd.sock');
  await server.listen({ path: socketPath });
  port = server.address().tcp!.port;
  const disk = await FileBlockDevice.open(join(dir, 'disk.img'), { size: SIZE, create: true });
  const ro = await FileBlockDevice.open(src, { readOnly: true });
  const scratch = await FileBlockDevice.open(join(dir, 'scratch.img'), { size: SIZE, create: true });
  // The first 16 MiB of the source, for the many-clients test (a device may be smaller than its file).
  const small = await FileBlockDevice.open(src, { readOnly: true, size: SMALL });
  devices.push(disk, ro, scratch, small);
  server.addExport('disk', disk, { description: 'writable test disk' });
  server.addExport('ro', ro, { description: 'read-only source' });
  server.addExport('scratch', scratch);
  server.addExport('small', small);
});

after(async () => {
  await server?.close({ signal: AbortSignal.timeout(5000) });
  for (const d of devices) await d.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('nbdinfo reports the export size and transmission flags', { skip: noNbdinfo }, async (t) => {
  const text = await runOk('nbdinfo', [server.uri('disk')]);
  for (const line of text.stdout.trim().split('\n')) t.diagnostic(line.replace(/\t/g, '  '));
  const info = JSON.parse((await runOk('nbdinfo', ['--json', server.uri('disk')])).stdout);
  const e = info.exports[0];
  assert.equal(info.protocol, 'newstyle-fixed');
  assert.equal(e['export-size'], SIZE);
  assert.equal(e.description, 'writable test disk');
  for (const f of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_multi_conn', 'can_cache']) {
    assert.equal(e[f], true, f);
  }
  assert.equal(e.is_read_only, false);
  assert.equal(e.block_size_maximum, 32 * 1024 * 1024);
  const ro = JSON.parse((await runOk('nbdinfo', ['--json', server.uri('ro')])).stdout).exports[0];
  assert.equal(ro.is_read_only, true);
  assert.equal(ro.can_trim, false);
  assert.equal(ro.can_zero, false);
});

test('nbdinfo --list lists every export with its description', { skip: noNbdinfo }, async (t) => {
  const r = await runOk('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${port}`]);
  const exports = JSON.parse(r.stdout).exports as { 'export-name': string; description?: string }[];
  t.diagnostic(exports.map((x) => `${x['export-name']}: ${x.description ?? ''}`).join('; '));
  assert.deepEqual(exports.map((x) => x['export-name']).sort(), ['disk', 'ro', 'scratch', 'small']);
  assert.equal(exports.find((x) => x['export-name'] === 'ro')?.description, 'read-only source');
});

test('an unknown export name fails cleanly and the server keeps serving', { skip: noNbdinfo }, async () => {
  const r = await run('nbdinfo', [server.uri('no-such-export')]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /no-such-export/);
  await runOk('nbdinfo', ['--size', server.uri('disk')]);
});

test('nbdcopy copies 64 MiB of random data into an export and back out', { skip: noNbdcopy }, async () => {
  await runOk('nbdcopy', ['--flush', join(dir, 'src.img'), server.uri('disk')]);
  assert.equal(await digest(join(dir, 'disk.img')), srcDigest);
  await runOk('nbdcopy', [server.uri('disk'), join(dir, 'out.img')]);
  assert.equal(await digest(join(dir, 'out.img')), srcDigest);
  assert.ok(server.stats('disk')!.flushes >= 1);
});

test('nbdcopy and nbdinfo over the Unix socket', { skip: noNbdcopy || noNbdinfo }, async () => {
  const uri = server.uri('ro', 'unix');
  assert.equal(uri, `nbd+unix:///ro?socket=${socketPath}`);
  assert.equal((await runOk('nbdinfo', ['--size', uri])).stdout.trim(), String(SIZE));
  await runOk('nbdcopy', [uri, join(dir, 'out-unix.img')]);
  assert.equal(await digest(join(dir, 'out-unix.img')), srcDigest);
});

test('qemu-img writes an export, compares it with the file, sees a changed byte', { skip: noQemuImg }, async () => {
  const src = join(dir, 'src.img');
  const uri = server.uri('scratch');
  await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, uri]);
  const same = await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, uri]);
  assert.match(same.stdout, /Images are identical/);
  const client = await NbdClient.connect({ port }, { exportName: 'scratch' });
  const at = 24_112 * 512; // qemu-img reports mismatches at sector granularity
  const old = (await client.read(at, 1))[0]!;
  await client.write(at, new Uint8Array([old ^ 0xff]), { fua: true });
  await client.disconnect();
  const differ = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, uri]);
  assert.equal(differ.code, 1, differ.stderr);
  assert.match(differ.stdout, new RegExp(`Content mismatch at offset ${at}`));
});

test('a read-only export refuses writes from real clients', { skip: noNbdcopy || noQemuIo }, async (t) => {
  const before = server.stats('ro')!;
  const copy = await run('nbdcopy', [join(dir, 'src.img'), server.uri('ro')]);
  t.diagnostic(`nbdcopy: exit ${copy.code}: ${copy.stderr.trim()}`);
  assert.notEqual(copy.code, 0);
  assert.match(copy.stderr, /read-only|read only/i);
  const io = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x55 0 4k', server.uri('ro')]);
  t.diagnostic(`qemu-io: exit ${io.code}: ${(io.stderr + io.stdout).trim()}`);
  assert.notEqual(io.code, 0);
  assert.match(io.stderr + io.stdout, /read-only|read only|permission|not permitted/i);
  assert.equal(server.stats('ro')!.bytesWritten, before.bytesWritten);
  assert.equal(await digest(join(dir, 'src.img')), srcDigest);
});

test('fio nbd engine: random 4k writes at iodepth 16 verify with crc32c', { skip: noFio }, async (t) => {
  const r = await runOk('fio', [
    '--name=nbd-verify',
    '--ioengine=nbd',
    `--uri=${server.uri('scratch')}`,
    '--rw=randwrite',
    '--bs=4k',
    '--iodepth=16',
    '--size=32m',
    '--verify=crc32c',
    '--do_verify=1',
    '--verify_fatal=1',
    '--output-format=json',
  ]);
  const job = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0];
  t.diagnostic(
    `fio: error=${job.error} write ${Math.round(job.write.iops)} IOPS (${job.write.total_ios} ios), ` +
      `verify read ${Math.round(job.read.iops)} IOPS (${job.read.total_ios} ios)`,
  );
  assert.equal(job.error, 0);
  assert.equal(job.write.io_bytes, 32 * 1024 * 1024);
  assert.equal(job.read.io_bytes, 32 * 1024 * 1024, 'every written block was read back and verified');
});

test('many concurrent nbdcopy clients read the same export', { skip: noNbdcopy }, async (t) => {
  let peak = 0;
  const poll = setInterval(() => (peak = Math.max(peak, server.stats('small')!.connections)), 2);
  try {
    const outs = Array.from({ length: 12 }, (_, i) => join(dir, `many-${i}.img`));
    await Promise.all(outs.map((o) => runOk('nbdcopy', ['--connections=4', server.uri('small'), o])));
    for (const o of outs) assert.equal(await digest(o), smallDigest, o);
    await Promise.all(outs.map((o) => rm(o)));
  } finally {
    clearInterval(poll);
  }
  t.diagnostic(`peak concurrent connections on "small": ${peak}`);
  assert.ok(peak > 4, `expected overlapping clients, saw at most ${peak} connections`);
  await sleep(50);
  assert.equal(server.stats('small')!.connections, 0);
});

test('close() while nbdcopy is connected finishes in-flight work and ends the copy', { skip: noNbdcopy }, async (t) => {
  const device = new ScriptedDevice(SIZE);
  device.delay = () => 20;
  const slow = new NbdServer();
  await slow.listen({ port: 0 });
  slow.addExport('slow', device);
  const copy = run('nbdcopy', ['--connections=1', '--requests=1', slow.uri('slow'), 'null:']);
  while ((slow.stats('slow')?.reads ?? 0) < 3) await sleep(10);
  const started = Date.now();
  await slow.close({ signal: AbortSignal.timeout(5000) });
  const took = Date.now() - started;
  const result = await copy;
  t.diagnostic(`close() took ${took} ms; nbdcopy exited ${result.code}: ${result.stderr.trim().split('\n')[0] ?? ''}`);
  assert.ok(took < 2000, `close() took ${took} ms`);
  assert.notEqual(result.code, 0, 'the copy cannot have completed');
  assert.equal(device.active, 0);
});
