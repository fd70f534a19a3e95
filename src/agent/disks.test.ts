// Unit tests of disks: the --disk flag, the identity file (created once, reused, mismatch reported), and the
// diskStatus entry.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DISK_CONFIG_FILE, diskStatusFor, flagDuplicateDisks, parseDiskFlag, probeDisk, type DiskProbe } from './disks.js';

const root = mkdtempSync(join(tmpdir(), 'stratum-disks-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('--disk PATH[:tag,tag]', () => {
  assert.deepEqual(parseDiskFlag('/data/d1'), { path: '/data/d1', tags: undefined });
  assert.deepEqual(parseDiskFlag('/data/d1:ssd,fast'), { path: '/data/d1', tags: ['ssd', 'fast'] });
  assert.deepEqual(parseDiskFlag('rel/d', '/base'), { path: '/base/rel/d', tags: undefined });
  assert.throws(() => parseDiskFlag('/d:bad tag'), /tag "bad tag"/);
});

test('the identity file is created once and reused; a different UUID is reported, not adopted', async () => {
  const path = join(root, 'd1');
  mkdirSync(path);
  const first = await probeDisk({ nodeName: 'node-1', diskName: 'disk-1', path, recordedUUID: undefined });
  assert.ok(first.ok);
  const cfg = JSON.parse(readFileSync(join(path, DISK_CONFIG_FILE), 'utf8')) as { diskName: string; diskUUID: string };
  assert.deepEqual(cfg, { diskName: 'disk-1', diskUUID: first.uuid });
  assert.ok(first.maximum > 0 && first.available > 0 && first.available <= first.maximum);
  const again = await probeDisk({ nodeName: 'node-1', diskName: 'disk-1', path, recordedUUID: first.uuid });
  assert.equal(again.ok && again.uuid, first.uuid);
  const other = await probeDisk({ nodeName: 'node-1', diskName: 'disk-1', path, recordedUUID: 'recorded-uuid' });
  assert.equal(other.ok, false);
  assert.equal(!other.ok && other.reason, 'DiskFilesystemChanged');
  assert.match(!other.ok ? other.message : '', /holds diskUUID .* but the node recorded recorded-uuid/);
  rmSync(join(path, DISK_CONFIG_FILE));
  const missing = await probeDisk({ nodeName: 'node-1', diskName: 'disk-1', path, recordedUUID: first.uuid });
  assert.match(!missing.ok ? missing.message : '', /is missing but the node recorded/);
  const absent = await probeDisk({ nodeName: 'node-1', diskName: 'disk-2', path: join(root, 'nope'), recordedUUID: undefined });
  assert.equal(!absent.ok && absent.reason, 'DiskNotFound');
  writeFileSync(join(path, DISK_CONFIG_FILE), '{broken');
  const broken = await probeDisk({ nodeName: 'node-1', diskName: 'disk-1', path, recordedUUID: undefined });
  assert.equal(!broken.ok && broken.reason, 'NoDiskInfo');
});

test('disk status: Ready/Schedulable, pressure, and scheduler-owned fields kept', () => {
  const now = '2025-01-01T00:00:00Z';
  const spec = { path: '/d', diskType: 'filesystem' as const };
  const ok: DiskProbe = { ok: true, uuid: 'u1', maximum: 100 * 2 ** 30, available: 50 * 2 ** 30 };
  const s = diskStatusFor({ nodeName: 'n', diskName: 'disk-1', spec, old: { scheduledReplica: { r1: 5 }, storageScheduled: 5 }, probe: ok, minimalAvailablePercent: 25, now });
  assert.equal(s.diskUUID, 'u1');
  assert.equal(s.storageMaximum, 100 * 2 ** 30);
  assert.deepEqual(s.scheduledReplica, { r1: 5 });
  assert.equal(s.storageScheduled, 5);
  assert.deepEqual(s.conditions?.map((c) => [c.type, c.status]), [['Ready', 'True'], ['Schedulable', 'True']]);
  const full = diskStatusFor({ nodeName: 'n', diskName: 'disk-1', spec, old: s, probe: { ...ok, available: 10 * 2 ** 30 }, minimalAvailablePercent: 25, now: '2025-01-01T00:05:00Z' });
  const sched = full.conditions?.find((c) => c.type === 'Schedulable');
  assert.equal(sched?.reason, 'DiskPressure');
  assert.match(sched?.message ?? '', /10\.0 GiB available of 100\.0 GiB/);
  assert.equal(full.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime, now);
  const bad = diskStatusFor({ nodeName: 'n', diskName: 'disk-1', spec, old: s, probe: { ok: false, reason: 'DiskFilesystemChanged', message: 'm', uuid: 'u1' }, minimalAvailablePercent: 25, now });
  assert.equal(bad.diskUUID, 'u1');
  assert.deepEqual(bad.conditions?.map((c) => [c.type, c.status, c.reason]), [['Ready', 'False', 'DiskFilesystemChanged'], ['Schedulable', 'False', 'DiskNotReady']]);
});

test('two disks on one filesystem: the second is flagged', () => {
  const probes = new Map<string, DiskProbe>([
    ['a', { ok: true, uuid: 'same', maximum: 1, available: 1 }],
    ['b', { ok: true, uuid: 'same', maximum: 1, available: 1 }],
  ]);
  flagDuplicateDisks(probes);
  assert.equal(probes.get('a')?.ok, true);
  const b = probes.get('b');
  assert.equal(b?.ok, false);
  assert.match(b && !b.ok ? b.message : '', /same disk as a/);
});
