// Unit tests of instance specs (normalisation, where a replica may live) and of the bounded log buffer.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LineRing } from './line-ring.js';
import { checkOnDisk, parseCreateRequest, sameSpec, type InstanceSpec } from './spec.js';

test('specs are normalised so that key order and defaults do not make them differ', () => {
  const a = parseCreateRequest({ type: 'engine', name: 'e1', engine: { size: 10, volume: 'v', replicas: [] } }, []);
  const b = parseCreateRequest({ name: 'e1', type: 'engine', engine: { volume: 'v', replicas: [], frontend: 'nbd', size: 10 } }, []);
  assert.ok(sameSpec(a.spec, b.spec));
  const c = parseCreateRequest({ name: 'e1', type: 'engine', engine: { volume: 'v', replicas: [], frontend: 'blockdev', size: 10 } }, []);
  assert.ok(!sameSpec(a.spec, c.spec));
  assert.deepEqual(c.spec, { type: 'engine', engine: { volume: 'v', size: 10, replicas: [], frontend: 'blockdev', deviceDir: '/dev/longhorn' } });
});

test('a replica must sit in <disk>/replicas/<name> on a registered disk and read a backing file of that disk', async () => {
  const disk = await mkdtemp(join(tmpdir(), 'stratum-spec-'));
  const outside = await mkdtemp(join(tmpdir(), 'stratum-spec-outside-'));
  try {
    const spec = (dir: string, backing?: string): InstanceSpec => ({ type: 'replica', replica: { dir, size: 4096, ...(backing ? { backing: { name: 'b', uuid: 'u', path: backing } } : {}) } });
    const roots = [disk];
    await assert.rejects(checkOnDisk(spec(join(disk, 'replicas', 'r1')), roots), /not on a registered disk: .* holds no longhorn-disk\.cfg/);
    await writeFile(join(disk, 'longhorn-disk.cfg'), '{}');
    await checkOnDisk(spec(join(disk, 'replicas', 'r1'), join(disk, 'backing-images', 'bi-u', 'backing')), roots);
    await assert.rejects(checkOnDisk(spec(join(disk, 'elsewhere', 'r1')), roots), /must be <disk>\/replicas\/<name>/);
    await assert.rejects(checkOnDisk(spec(join(disk, 'replicas', 'r1'), join(disk, 'replicas', 'r2', 'head.img')), roots), /must be a backing-image file of the replica's disk/);
    // Without data roots nothing is a replica directory; a symlink inside the disk cannot lead out of it.
    await assert.rejects(checkOnDisk(spec(join(disk, 'replicas', 'r1')), []), /not inside the data roots .*it has none/);
    await mkdir(join(disk, 'replicas'), { recursive: true });
    await mkdir(join(outside, 'victim'));
    await symlink(join(outside, 'victim'), join(disk, 'replicas', 'r9'));
    await assert.rejects(checkOnDisk(spec(join(disk, 'replicas', 'r9')), roots), /resolves to .*victim, outside the data roots/);
  } finally {
    await rm(disk, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  }
});

test('LineRing keeps the last lines, joins split chunks, and bounds a line without newline', () => {
  const ring = new LineRing(3);
  const seen: string[] = [];
  ring.push('a\nb', (l) => seen.push(l));
  ring.push('c\nd\ne\n', (l) => seen.push(l));
  assert.deepEqual(seen, ['a', 'bc', 'd', 'e']);
  assert.deepEqual(ring.tail(), ['bc', 'd', 'e']);
  assert.deepEqual(ring.tail(1), ['e']);
  ring.push('tail');
  ring.end();
  assert.equal(ring.last(), 'tail');
  ring.push('x'.repeat(70 * 1024));
  assert.equal(ring.tail(1)[0]?.length, 70 * 1024);
});
