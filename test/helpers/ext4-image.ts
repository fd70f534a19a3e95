// A qcow2 backing image holding an ext4 filesystem made from a directory: the shape the seed's backing images take
// (a bootable disk with files), made by the real tools (mkfs.ext4 -d, qemu-img convert -c).

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './processes.js';

/** Writes `<workDir>/fs.raw` (kept) and `out`, a compressed qcow2 of an ext4 filesystem of `size` bytes holding `content`. */
export async function ext4Qcow2(content: string, workDir: string, size: number, out: string): Promise<void> {
  const raw = join(workDir, 'fs.raw');
  writeFileSync(raw, Buffer.alloc(0));
  assert.equal((await run('truncate', ['-s', String(size), raw])).code, 0);
  const mk = await run('mkfs.ext4', ['-q', '-F', '-d', content, raw]);
  assert.equal(mk.code, 0, mk.stderr);
  const cv = await run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, out]);
  assert.equal(cv.code, 0, cv.stderr);
}
