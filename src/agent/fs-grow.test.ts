// Growing an ext4 filesystem to its device after an expansion, on a regular file standing in for the device (no
// root, no loop device): made at 64 MiB, the file grown to 96 MiB, grown once, then nothing to do. Skipped where
// e2fsprogs is not installed.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ext4Bytes, growExtFilesystem, type Exec } from './fs-grow.js';
import { runTool } from './run-tool.js';

const MiB = 2 ** 20;
const missing = ['mkfs.ext4', 'dumpe2fs', 'e2fsck', 'resize2fs'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

const exec: Exec = runTool;

test('the size of an ext filesystem from dumpe2fs -h', () => {
  assert.equal(ext4Bytes('Filesystem volume name:   <none>\nBlock count:              16384\nBlock size:               4096\n'), 64 * MiB);
  assert.equal(ext4Bytes('Block count: x\n'), undefined);
});

test('an ext4 filesystem grows to a larger device once, and is left alone after', { skip }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fs-grow-'));
  try {
    const dev = join(dir, 'disk.img');
    const signal = new AbortController().signal;
    await writeFile(dev, '');
    await truncate(dev, 64 * MiB);
    assert.equal((await exec('mkfs.ext4', ['-q', '-F', dev], signal)).code, 0);
    assert.equal(await growExtFilesystem(exec, dev, signal), undefined, 'the filesystem fills the device');
    await truncate(dev, 96 * MiB);
    assert.match((await growExtFilesystem(exec, dev, signal)) ?? '', new RegExp(`^grew the filesystem on .* from ${64 * MiB} to ${96 * MiB} bytes$`));
    assert.equal(ext4Bytes((await exec('dumpe2fs', ['-h', dev], signal)).stdout), 96 * MiB);
    assert.equal(await growExtFilesystem(exec, dev, signal), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
