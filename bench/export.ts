// Export benchmark: exporting a volume as a raw (and a qcow2) image with Stratum's export, against `qemu-img
// convert` of the equivalent qcow2 overlay chain, side by side in one run.
//
//   setup      a 2 GiB qcow2 backing image holding 256 MiB of random data (1 MiB in every 8), converted from a raw
//              file by `qemu-img convert`; 256 MiB of writes (1 MiB each, at random 1 MiB-aligned offsets of the
//              4 GiB volume) prepared once.
//   ours       a 4 GiB volume over the backing image: one replica (LayeredReplica behind a ReplicaServer on loopback
//              TCP) and its engine with its control API, the writes made through the engine; then the export of a
//              data source (src/datasource/export.ts: the engine snapshots, the replica serves the snapshot
//              flattened over the replica protocol, the file is written with holes and hashed with SHA-512 as it
//              goes), then verified and sealed (imagefmt inspection, fsync, rename) as every data source does.
//   baseline   `qemu-img create -f qcow2 -b backing.qcow2 -F qcow2 overlay.qcow2 4G`, the same writes through
//              `qemu-nbd` on a unix socket, then `qemu-img convert -f qcow2 -O raw overlay.qcow2 out.raw` (sparse
//              output: qemu-img skips zeros) followed by an fsync of the output; no checksum is computed.
//   figures    time and allocated bytes (st_blocks) of the raw image (and the time against convert + `sha512sum` of its
//              output, since ours computes the SHA-512 every data source computes), the same for `-O qcow2`; outputs are
//              checked identical with `qemu-img compare` before any figure is printed. The backing image is read
//              once first so both sides start from a warm page cache.
//
//   npm run bench -- export [--keep] [--small]

import { randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ControlServer } from '../src/engine/control.js';
import { Engine } from '../src/engine/engine.js';
import { exportVolume } from '../src/datasource/export.js';
import { ProgressMeter } from '../src/datasource/progress.js';
import { verifyAndSeal } from '../src/datasource/verify.js';
import { WorkFile } from '../src/datasource/workfile.js';
import { NbdClient } from '../src/frontend/nbd/index.js';
import { LayeredReplica, ReplicaClient, ReplicaServer } from '../src/replica/index.js';
import { mulberry32 } from '../src/util/prng.js';
import { allocatedBytes, Budget, check, Children, exec, fsyncFile, GiB, hasTool, interruptOnSignals, MiB, waitUntil } from './transfer-kit.js';

let VOLUME = 4 * GiB;
let BACKING = 2 * GiB;
let WRITES = 256;

/** Reads a file once, so both sides start from a warm page cache. */
function warm(path: string): void {
  const f = openSync(path, 'r');
  const buf = Buffer.alloc(4 * MiB);
  try {
    for (let at = 0; readSync(f, buf, 0, buf.length, at) > 0; at += buf.length);
  } finally {
    closeSync(f);
  }
}

function ratio(ours: number, base: number): string {
  return (ours / base).toFixed(2);
}

export async function run(args: string[]): Promise<void> {
  for (const t of ['qemu-img', 'qemu-nbd']) if (!hasTool(t)) throw new Error(`the export bench needs ${t}`);
  const keep = args.includes('--keep');
  // --small: an eighth of everything, to check the bench itself quickly (its figures are not the issue's).
  if (args.includes('--small')) {
    VOLUME /= 8;
    BACKING /= 8;
    WRITES /= 8;
  }
  const root = mkdtempSync(join(tmpdir(), 'stratum-bench-export-'));
  const budget = new Budget(30 * 60_000);
  const kids = new Children();
  const stopSignals = interruptOnSignals(budget, kids);
  try {
    await measure(root, budget, kids);
  } finally {
    stopSignals();
    await kids.stopAll();
    if (!keep) rmSync(root, { recursive: true, force: true });
    else process.stderr.write(`kept ${root}\n`);
  }
}

async function measure(root: string, budget: Budget, kids: Children): Promise<void> {
  const rand = mulberry32(2026);
  // The backing image: 1 MiB of random data in every 8 MiB of 2 GiB.
  const baseRaw = join(root, 'base.raw');
  const fd = openSync(baseRaw, 'w');
  const chunk = Buffer.alloc(MiB);
  for (let at = 0; at < BACKING; at += 8 * MiB) {
    randomFillSync(chunk);
    writeSync(fd, chunk, 0, MiB, at);
  }
  closeSync(fd);
  const backing = join(root, 'backing.qcow2');
  check(await exec(kids, budget, 'truncate', ['-s', String(BACKING), baseRaw]), 'truncate');
  check(await exec(kids, budget, 'qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', baseRaw, backing]), 'qemu-img convert (setup)');
  rmSync(baseRaw);
  const writes: { offset: number; data: Buffer }[] = [];
  for (let i = 0; i < WRITES; i++) {
    const data = Buffer.alloc(MiB);
    randomFillSync(data);
    writes.push({ offset: Math.floor(rand() * (VOLUME / MiB)) * MiB, data });
  }
  warm(backing);

  // Baseline: an overlay on the same backing file, the same writes, qemu-img convert.
  const overlay = join(root, 'overlay.qcow2');
  check(await exec(kids, budget, 'qemu-img', ['create', '-q', '-f', 'qcow2', '-b', backing, '-F', 'qcow2', overlay, String(VOLUME)]), 'qemu-img create');
  const sock = join(root, 'nbd.sock');
  const nbd = kids.spawn('qemu-nbd', ['-f', 'qcow2', '--cache=writeback', '-k', sock, '-x', 'vol', overlay]);
  const client = await waitUntil('qemu-nbd', budget, async () => NbdClient.connect({ path: sock }, { exportName: 'vol' }).catch(() => undefined), 100);
  for (const w of writes) await client.write(w.offset, w.data);
  await client.flush();
  await client.disconnect();
  await kids.stop(nbd);
  const baseOut = join(root, 'baseline.raw');
  let t0 = performance.now();
  check(await exec(kids, budget, 'qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', overlay, baseOut]), 'qemu-img convert -O raw');
  fsyncFile(baseOut);
  const baseRawMs = performance.now() - t0;
  // The same with the checksum every data source computes: what it costs to hash the image qemu-img wrote.
  const sum = check(await exec(kids, budget, 'sha512sum', [baseOut]), 'sha512sum');
  const baseRawSumMs = baseRawMs + sum.ms;
  const baseQcow = join(root, 'baseline.qcow2');
  t0 = performance.now();
  check(await exec(kids, budget, 'qemu-img', ['convert', '-f', 'qcow2', '-O', 'qcow2', overlay, baseQcow]), 'qemu-img convert -O qcow2');
  fsyncFile(baseQcow);
  const baseQcowMs = performance.now() - t0;

  // Ours: a volume over the same backing file, the same writes through the engine, then the export.
  const replicaDir = join(root, 'disk', 'replicas', 'r0');
  const store = await LayeredReplica.create(replicaDir, { name: 'r0', size: VOLUME, backing: { name: 'bi', uuid: 'u', path: backing } });
  const server = new ReplicaServer(store);
  const addr = await server.listen({ port: 0, host: '127.0.0.1' });
  const port = 'port' in addr ? addr.port : 0;
  const engine = await Engine.start({ volume: 'vol', replicas: [{ name: 'r0', backend: await ReplicaClient.connect({ port }, { timeoutMs: 60_000 }) }], pingIntervalMs: 0 });
  const control = new ControlServer(engine);
  const caddr = await control.listen({ port: 0 });
  const engineUrl = `http://127.0.0.1:${'port' in caddr ? caddr.port : 0}/v1/engine`;
  try {
    for (const w of writes) await engine.write(w.offset, w.data, { fua: false });
    await engine.flush();
    const ours: Record<string, { ms: number; path: string; checksum: string }> = {};
    for (const type of ['raw', 'qcow2'] as const) {
      const file = await WorkFile.open(join(root, 'disk', 'tmp', `exp-${type}`), type);
      await file.openPart();
      const t = performance.now();
      await exportVolume(
        {
          file,
          meter: new ProgressMeter(),
          parameters: { 'volume-name': 'vol', 'export-type': type, 'engine-url': engineUrl, 'replica-address': `127.0.0.1:${port}`, 'replica-name': 'r0' },
          name: `exp-${type}`,
          uuid: '00000000',
          clusterSecret: undefined,
          onBytes: () => {},
          log: () => {},
        },
        { signal: AbortSignal.timeout(budget.left('exporting')) },
      );
      const sealed = await verifyAndSeal(file, { name: `exp-${type}`, uuid: '00000000' }, undefined, { signal: AbortSignal.timeout(budget.left('sealing')) });
      ours[type] = { ms: performance.now() - t, path: file.filePath, checksum: sealed.checksum };
      await file.close();
    }
    for (const [type, fmt, base] of [['raw', 'raw', baseOut], ['qcow2', 'qcow2', baseQcow]] as const) {
      const cmp = check(await exec(kids, budget, 'qemu-img', ['compare', '-f', fmt, '-F', fmt, ours[type]!.path, base]), `qemu-img compare (${type})`);
      if (!/identical/.test(cmp.stdout)) throw new Error(`the ${type} exports differ: ${cmp.stdout}`);
    }
    const line = (what: string, o: number, b: number, unit: string, digits: number) =>
      process.stdout.write(`${what}: ours ${o.toFixed(digits)} ${unit}, baseline ${b.toFixed(digits)} ${unit}, ratio ${ratio(o, b)}\n`);
    process.stdout.write(`# ${VOLUME / MiB} MiB volume, ${WRITES} MiB written over a ${BACKING / MiB} MiB qcow2 image holding ${BACKING / 8 / MiB} MiB; baseline qemu-img convert of the overlay chain (ours also computes SHA-512)\n`);
    line('export raw time', ours['raw']!.ms / 1000, baseRawMs / 1000, 's', 2);
    line('export raw time (baseline + sha512sum of its output)', ours['raw']!.ms / 1000, baseRawSumMs / 1000, 's', 2);
    if (sum.stdout.split(' ')[0] !== ours['raw']!.checksum) throw new Error('the raw export\'s SHA-512 differs from sha512sum of qemu-img\'s output');
    line('export raw allocated', allocatedBytes(ours['raw']!.path) / MiB, allocatedBytes(baseOut) / MiB, 'MiB', 1);
    line('export qcow2 time', ours['qcow2']!.ms / 1000, baseQcowMs / 1000, 's', 2);
    line('export qcow2 allocated', allocatedBytes(ours['qcow2']!.path) / MiB, allocatedBytes(baseQcow) / MiB, 'MiB', 1);
  } finally {
    await control.close();
    await engine.close();
    await server.destroy();
    await store.close();
  }
}
