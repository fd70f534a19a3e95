// Tests of the one-pass qcow2 writer: images with data in scattered clusters (across L2 tables, at the end of an
// odd-sized disk, none at all) read back exactly through our reader and, where qemu-img is installed, pass
// `qemu-img check` and compare identical with the raw content; unallocated clusters take no space in the file.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openImageReader } from './index.js';
import { planQcow2 } from './qcow2-writer.js';

const dir = mkdtempSync(join(tmpdir(), 'stratum-qcow2w-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const hasQemuImg = (() => {
  try {
    execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

function build(name: string, virtualSize: number, clusters: number[], bits: number): { path: string; raw: Buffer; fileSize: number } {
  const plan = planQcow2(virtualSize, clusters, bits);
  const cs = plan.clusterSize;
  const raw = Buffer.alloc(virtualSize);
  const file = Buffer.alloc(plan.fileSize);
  plan.prefix.copy(file, 0);
  clusters.forEach((c, i) => {
    const data = Buffer.alloc(cs, (c % 251) + 1);
    data.writeUInt32BE(c, 0);
    const n = Math.min(cs, virtualSize - c * cs);
    data.copy(raw, c * cs, 0, n);
    data.copy(file, plan.dataOffset(i));
  });
  const path = join(dir, `${name}.qcow2`);
  writeFileSync(path, file);
  writeFileSync(join(dir, `${name.replace(/ /g, '-')}.raw`), raw);
  return { path, raw, fileSize: plan.fileSize };
}

// 4 KiB clusters make an L2 table cover 2 MiB, so a small image spans several (and a refcount block 8 MiB).
const cases: [string, number, number[], number][] = [
  ['empty', 64 * 1024 * 1024, [], 16],
  ['scattered over L2 tables', 24 * 1024 * 1024, [0, 1, 7, 511, 512, 513, 2000, 4095, 6143], 12],
  ['odd-size-end', 5 * 1024 * 1024 + 512, [0, 80], 16],
];

for (const [name, size, clusters, bits] of cases) {
  test(`qcow2 export layout: ${name}`, async () => {
    const { path, raw, fileSize } = build(name.replace(/ /g, '-'), size, clusters, bits);
    assert.ok(fileSize <= (clusters.length + 16) * 2 ** bits, 'only data clusters and a few metadata clusters');
    const r = await openImageReader(path);
    try {
      assert.equal(r.format, 'qcow2');
      assert.equal(r.virtualSize, size);
      const buf = Buffer.alloc(size);
      await r.read(buf, 0);
      assert.ok(buf.equals(raw), 'our reader reads the content back');
    } finally {
      await r.close();
    }
    if (!hasQemuImg) return;
    execFileSync('qemu-img', ['check', '-f', 'qcow2', path]);
    const out = execFileSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', path, join(dir, `${name.replace(/ /g, '-')}.raw`)]).toString();
    assert.match(out, /Images are identical/);
  });
}
