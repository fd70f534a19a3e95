// End-to-end tests of the volume data path with real processes: replicas and the engine (with its NBD frontend and
// control API) run as child processes over a compressed qcow2 backing image made by qemu-img, and tools nobody here
// wrote drive and check them: qemu-img compare, fio (nbd engine, crc32c verify), nbdcopy, debugfs, e2fsck.
//   1. a fresh volume reads exactly as its backing image;
//   2. 10,000 random NBD operations, detach/attach (all processes restarted), then a full read equals the model;
//   3. fio randwrite+verify while one replica is kill -9'd: no fio error, the replica goes ERR; a rebuild onto a
//      fresh replica copies only the written extents and the data verifies from the rebuilt replica alone;
//   4. an ext4 image (qcow2) served as a volume: files and fsck intact, and intact after writing through it.
// Seeds: DATAPATH_SEED replays a run; the seed in use is printed on every failure.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdClient } from '../src/frontend/nbd/index.js';
import { Rng } from '../src/replica/testing.js';
import { EngineProcess, mustRun, startReplica, tool, type DataPathProcess, type ReplicaReady } from './helpers/datapath.js';
import { hasTool } from './helpers/processes.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SEED = process.env['DATAPATH_SEED'] !== undefined ? Number(process.env['DATAPATH_SEED']) : Date.now() % 1_000_000;
const missing = ['qemu-img', 'fio', 'nbdcopy', 'mkfs.ext4', 'debugfs', 'e2fsck'].filter((t) => !hasTool(t));
const SKIP = missing.length > 0 ? `needs ${missing.join(', ')} (packages qemu-utils, fio, libnbd-bin, e2fsprogs); test skipped` : false;

let root = '';
let backingRaw = new Uint8Array(0);
let backingQcow = '';
const BACKING_SIZE = 64 * MiB;
const procs: DataPathProcess<unknown>[] = [];

before(async () => {
  if (SKIP) return;
  root = await mkdtemp(join(tmpdir(), 'stratum-datapath-'));
  // Random (incompressible), patterned (compressible: becomes compressed qcow2 clusters) and zero megabytes.
  backingRaw = new Uint8Array(BACKING_SIZE);
  for (let m = 0; m < BACKING_SIZE / MiB; m++) {
    if (m % 3 === 0) backingRaw.set(randomBytes(MiB), m * MiB);
    else if (m % 3 === 1) {
      const pattern = randomBytes(512);
      for (let o = 0; o < MiB; o += 512) backingRaw.set(pattern, m * MiB + o);
    }
  }
  await writeFile(join(root, 'backing.raw'), backingRaw);
  backingQcow = join(root, 'backing.qcow2');
  await mustRun('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', join(root, 'backing.raw'), backingQcow]);
  const check = JSON.parse((await mustRun('qemu-img', ['check', '--output=json', backingQcow])).toString()) as Record<string, number>;
  // The reader must meet all three kinds of cluster: compressed, plain (random data does not compress) and absent.
  const compressed = check['compressed-clusters'] ?? 0;
  const allocated = check['allocated-clusters'] ?? 0;
  assert.ok(compressed > 0 && allocated > compressed && allocated < (check['total-clusters'] ?? 0), JSON.stringify(check));
});

after(async () => {
  for (const p of procs) await p.kill9();
  if (root) await rm(root, { recursive: true, force: true });
});

/** A replica on its own disk: the disk holds its own ready copy of the backing file (rebuild never copies it). */
async function replicaOnDisk(volume: string, name: string, size: number, backing: string): Promise<{ name: string; address: string; proc: DataPathProcess<ReplicaReady>; dir: string; backingPath: string }> {
  const disk = join(root, `disk-${volume}-${name}`);
  const biDir = join(disk, 'backing-images', 'bi-0f3c');
  await mkdir(biDir, { recursive: true });
  const backingPath = join(biDir, 'backing');
  await copyFile(backing, backingPath);
  const dir = join(disk, 'replicas', `${volume}-${name}`);
  const r = await startReplica({ name, dir, size, backing: { name: 'bi', uuid: '0f3c', path: backingPath } });
  procs.push(r.proc);
  return { name, ...r, dir, backingPath };
}

async function restartReplica(name: string, dir: string): Promise<{ name: string; address: string }> {
  // Same directory, no create options: runReplica opens the existing replica (and fails if it is gone).
  const r = await startReplica({ name, dir });
  procs.push(r.proc);
  return { name, address: r.address };
}

async function startEngine(volume: string, size: number, replicas: { name: string; address: string }[]): Promise<EngineProcess> {
  const e = await EngineProcess.start(volume, size, replicas);
  procs.push(e.proc);
  return e;
}

async function nbd(e: EngineProcess): Promise<NbdClient> {
  return NbdClient.connect({ host: '127.0.0.1', port: e.nbdPort }, { exportName: e.exportName });
}

function diff(a: Uint8Array, b: Uint8Array): number {
  if (Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))) return -1;
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return Math.min(a.length, b.length);
}

async function readAll(client: NbdClient, size: number, chunk = 4 * MiB): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  const parts: Promise<void>[] = [];
  for (let o = 0; o < size; o += chunk) parts.push(client.read(o, Math.min(chunk, size - o)).then((d) => out.set(d, o)));
  await Promise.all(parts);
  return out;
}

test('volume data path: compare, 10,000 random NBD operations, detach/attach, full read', { skip: SKIP, timeout: 120_000 }, async (t) => {
  const size = 96 * MiB; // larger than the backing image: the tail must read as zeros
  const reps = [];
  for (const n of ['r1', 'r2', 'r3']) reps.push(await replicaOnDisk('va', n, size, backingQcow));
  let engine = await startEngine('va', size, reps);

  const cmp = await tool('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', backingQcow, engine.nbdUri]);
  assert.equal(cmp.code, 0, `qemu-img compare: ${cmp.stdout.toString()} ${cmp.stderr}`);
  assert.match(cmp.stdout.toString(), /Images are identical/);

  const model = new Uint8Array(size);
  model.set(backingRaw);
  const rng = new Rng(SEED);
  let client = await nbd(engine);
  const counts = { write: 0, fua: 0, trim: 0, zero: 0, flush: 0, read: 0, bytes: 0 };
  for (let done = 0; done < 10_000; ) {
    const ops = Array.from({ length: Math.min(16, 10_000 - done) }, () => {
      const len = 1 + rng.int(rng.int(50) === 0 ? MiB : 64 * KiB);
      return { off: rng.int(size - len), len, kind: rng.int(20) };
    });
    // Reads in flight with overlapping writes have no defined order (NBD): a read is only issued when no
    // mutation of its batch, before or after it, touches its range.
    const mutated = ops.filter((o) => o.kind < 11);
    const batch: Promise<void>[] = [];
    for (const { off, len, kind } of ops) {
      const at = `seed ${SEED}, op ${done}`;
      if (kind < 9) {
        const data = rng.bytes(len);
        const fua = kind === 0;
        batch.push(client.write(off, data, { fua }));
        model.set(data, off);
        counts[fua ? 'fua' : 'write']++;
        counts.bytes += len;
      } else if (kind < 11) {
        batch.push(kind === 9 ? client.trim(off, len) : client.writeZeroes(off, len));
        model.fill(0, off, off + len);
        counts[kind === 9 ? 'trim' : 'zero']++;
      } else if (kind < 12) {
        batch.push(client.flush());
        counts.flush++;
      } else if (!mutated.some((m) => off < m.off + m.len && m.off < off + len)) {
        const want = model.slice(off, off + len);
        batch.push(client.read(off, len).then((got) => assert.equal(diff(got, want), -1, `${at}: read ${off}+${len}`)));
        counts.read++;
      } else continue;
      done++;
    }
    await Promise.all(batch);
  }
  t.diagnostic(`seed ${SEED}: ${JSON.stringify(counts)}`);
  await client.disconnect();

  // Detach / attach: every process stops gracefully and starts again over the same directories.
  assert.equal(await engine.proc.stop(), 0, engine.proc.log);
  for (const r of reps) assert.equal(await r.proc.stop(), 0, r.proc.log);
  const again = [];
  for (const r of reps) again.push(await restartReplica(r.name, r.dir));
  engine = await startEngine('va', size, again);
  const s = await engine.status();
  assert.deepEqual(s.replicas.map((r) => r.mode), ['RW', 'RW', 'RW'], JSON.stringify(s));
  assert.equal(new Set(s.replicas.map((r) => r.revision)).size, 1, `revisions agree: ${JSON.stringify(s.replicas)}`);
  client = await nbd(engine);
  const got = await readAll(client, size);
  assert.equal(diff(got, model), -1, `seed ${SEED}: full read after reattach differs from the model`);
  await client.disconnect();
  await writeFile(join(root, 'model-va.raw'), model);
  const cmp2 = await tool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', join(root, 'model-va.raw'), engine.nbdUri]);
  assert.equal(cmp2.code, 0, `seed ${SEED}: qemu-img compare with the model: ${cmp2.stdout.toString()}`);
  await engine.proc.stop();
});

function fioArgs(uri: string, extra: string[]): string[] {
  return ['--name=datapath', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bsrange=1k-64k', '--offset=16M', '--size=48M', '--iodepth=16', '--verify=crc32c', '--verify_fatal=1', `--randseed=${SEED}`, '--output-format=json', ...extra];
}

interface FioJob {
  error: number;
  job_runtime: number;
  write: { io_bytes: number; iops: number };
  read: { io_bytes: number };
}

async function runFio(uri: string, name: string, extra: string[] = []): Promise<{ proc: Promise<{ code: number | null; stderr: string }>; result: () => Promise<FioJob> }> {
  const out = join(root, `${name}.json`);
  const proc = tool('fio', fioArgs(uri, [`--output=${out}`, ...extra]), 120_000);
  return { proc, result: async () => (JSON.parse(await readFile(out, 'utf8')) as { jobs: FioJob[] }).jobs[0]! };
}

test('fio with a replica killed: no error, the replica goes ERR; rebuild copies written extents only', { skip: SKIP, timeout: 120_000 }, async (t) => {
  const size = 1024 * MiB;
  const reps = [];
  for (const n of ['r1', 'r2', 'r3']) reps.push(await replicaOnDisk('vb', n, size, backingQcow));
  const engine = await startEngine('vb', size, reps);

  const fio = await runFio(engine.nbdUri, 'fio-write');
  let fioDone = false;
  void fio.proc.then(() => (fioDone = true));
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(fioDone, false, 'fio is still running when the replica is killed');
  await reps[1]!.proc.kill9(); // while fio writes its 48 MiB (it reads everything back to verify afterwards)
  const done = await fio.proc;
  const job = await fio.result();
  assert.equal(done.code, 0, `fio: ${done.stderr}`);
  assert.equal(job.error, 0, 'fio reports no I/O or verify error');
  assert.equal(job.read.io_bytes, job.write.io_bytes, 'fio verified everything it wrote');
  const s1 = await engine.waitFor('r2 ERR', (s) => s.replicas.find((r) => r.name === 'r2')?.mode === 'ERR');
  assert.deepEqual(s1.replicas.map((r) => r.mode), ['RW', 'ERR', 'RW']);
  t.diagnostic(`fio: wrote ${job.write.io_bytes} B at ${Math.round(job.write.iops)} IOPS, verified ${job.read.io_bytes} B, ${job.job_runtime} ms; r2 ERR: ${s1.replicas[1]!.error}`);

  const r4 = await replicaOnDisk('vb', 'r4', size, backingQcow);
  await engine.addReplica('r4', r4.address);
  const s2 = await engine.waitFor('rebuild of r4', (s) => s.rebuild?.state !== 'running' && s.replicas.find((r) => r.name === 'r4')?.mode !== 'WO', 60_000);
  const rb = s2.rebuild!;
  assert.equal(rb.state, 'complete', JSON.stringify(rb));
  assert.equal(s2.replicas.find((r) => r.name === 'r4')?.mode, 'RW');
  t.diagnostic(`rebuild: ${rb.bytesCopied} data bytes copied + ${rb.zeroBytes} zero bytes, ${rb.bytesListed} B listed as written, ${rb.chunks} windows, volume ${size} B`);
  assert.ok(rb.bytesCopied >= 46 * MiB && rb.bytesCopied <= 56 * MiB, `copied ${rb.bytesCopied} B: about the 48 MiB fio wrote`);
  assert.ok(rb.bytesCopied < size / 20, 'copied bytes ≪ volume size: the backing image and unwritten blocks were not copied');

  // Only the rebuilt replica is left to serve reads.
  for (const name of ['r1', 'r2', 'r3']) await engine.removeReplica(name);
  const s3 = await engine.status();
  assert.deepEqual(s3.replicas.map((r) => [r.name, r.mode]), [['r4', 'RW']]);
  const verify = await runFio(engine.nbdUri, 'fio-verify', ['--verify_only']);
  const vdone = await verify.proc;
  const vjob = await verify.result();
  assert.equal(vdone.code, 0, `fio --verify_only: ${vdone.stderr}`);
  assert.equal(vjob.error, 0);
  assert.ok(vjob.read.io_bytes >= 46 * MiB, `verified ${vjob.read.io_bytes} B from the rebuilt replica`);
  const client = await nbd(engine);
  const before = await client.read(0, 16 * MiB);
  assert.equal(diff(before, backingRaw.subarray(0, 16 * MiB)), -1, 'unwritten blocks read from the backing image on the rebuilt replica');
  const tail = await client.read(size - 4 * MiB, 4 * MiB);
  assert.ok(tail.every((b) => b === 0), 'past the backing image: zeros');
  await client.disconnect();
  await engine.proc.stop();
});

test('ext4 on a qcow2 backing image: files and fsck intact through the volume, and after writing through it', { skip: SKIP, timeout: 120_000 }, async () => {
  const img = join(root, 'fs.raw');
  await writeFile(img, new Uint8Array(0));
  await mustRun('truncate', ['-s', '64M', img]);
  await mustRun('mkfs.ext4', ['-F', '-q', img]);
  const files: Record<string, Buffer> = { f1: randomBytes(1 * MiB + 123), f2: randomBytes(100 * KiB), 'd/f3': randomBytes(300 * KiB + 7) };
  const host = join(root, 'host-files');
  await mkdir(host, { recursive: true });
  const cmds = ['mkdir d'];
  for (const [name, data] of Object.entries(files)) {
    const p = join(host, name.replace('/', '_'));
    await writeFile(p, data);
    cmds.push(`write ${p} ${name}`);
  }
  await writeFile(join(root, 'debugfs.cmds'), `${cmds.join('\n')}\n`);
  await mustRun('debugfs', ['-w', '-f', join(root, 'debugfs.cmds'), img]);
  const fsQcow = join(root, 'fs.qcow2');
  await mustRun('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', img, fsQcow]);

  const size = 64 * MiB;
  const reps = [];
  for (const n of ['r1', 'r2', 'r3']) reps.push(await replicaOnDisk('vc', n, size, fsQcow));
  const engine = await startEngine('vc', size, reps);

  const checkFs = async (path: string, expect: Record<string, Buffer | undefined>): Promise<void> => {
    const fsck = await tool('e2fsck', ['-fn', path]);
    assert.equal(fsck.code, 0, `e2fsck -fn: ${fsck.stdout.toString()} ${fsck.stderr}`);
    for (const [name, data] of Object.entries(expect)) {
      const cat = await tool('debugfs', ['-R', `cat ${name}`, path]);
      if (data === undefined) assert.match(cat.stderr, /not found|File not found/i, `${name} should be gone`);
      else assert.ok(cat.stdout.equals(data), `file ${name}: ${cat.stdout.length} B read, ${data.length} B expected`);
    }
  };

  const out = join(root, 'fs-out.raw');
  await mustRun('nbdcopy', [engine.nbdUri, out]);
  await checkFs(out, files);

  // Write through the volume: change the filesystem in a local copy, copy it into the volume, read it back.
  const f4 = randomBytes(777 * KiB);
  await writeFile(join(host, 'f4'), f4);
  await writeFile(join(root, 'debugfs2.cmds'), `write ${join(host, 'f4')} f4\nrm f2\n`);
  await mustRun('debugfs', ['-w', '-f', join(root, 'debugfs2.cmds'), out]);
  await mustRun('nbdcopy', [out, engine.nbdUri]);
  const out2 = join(root, 'fs-out2.raw');
  await mustRun('nbdcopy', [engine.nbdUri, out2]);
  await checkFs(out2, { f1: files['f1'], 'd/f3': files['d/f3'], f4, f2: undefined });
  const cmp = await tool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', out, engine.nbdUri]);
  assert.equal(cmp.code, 0, `qemu-img compare: ${cmp.stdout.toString()}`);
  await engine.proc.stop();
});
