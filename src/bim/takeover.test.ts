// The take-over of a disk's folder by a manager of another image (an upgrade): a copy left half-received by the
// old manager is failed (its data kept), one left by a restart of the same image stays pending for a resume; ready
// files stay ready either way.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BackingImageManager } from './manager.js';
import { writeIntent } from './meta.js';
import { FILES, OWNER_FILE } from './names.js';

const root = mkdtempSync(join(tmpdir(), 'bim-takeover-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function diskWithPartial(label: string, owner: string | undefined): Promise<{ disk: string; uuid: string }> {
  const disk = join(root, label);
  const uuid = randomUUID();
  mkdirSync(join(disk, 'backing-images', 'big-u1'), { recursive: true });
  writeFileSync(join(disk, 'longhorn-disk.cfg'), JSON.stringify({ diskUUID: uuid }));
  const dir = join(disk, 'backing-images', 'big-u1');
  await writeIntent(join(dir, FILES.intent), { version: 1, name: 'big', uuid: 'u1', size: 4 << 20, expectedChecksum: 'a'.repeat(128), chunkSize: 1 << 20, startedAt: new Date().toISOString() });
  writeFileSync(join(dir, FILES.partial), Buffer.alloc(4 << 20));
  if (owner) writeFileSync(join(disk, 'backing-images', OWNER_FILE), JSON.stringify({ image: owner }));
  return { disk, uuid };
}

async function open(disk: string, uuid: string, image: string): Promise<BackingImageManager> {
  return BackingImageManager.open({ disk, diskUUID: uuid, clusterSecret: 's', image });
}

test('a manager of a new image fails a copy the old one left in progress, keeps its data, and records itself', async () => {
  const { disk, uuid } = await diskWithPartial('upgraded', 'stratum-bim:v1');
  const m = await open(disk, uuid, 'stratum-bim:v2');
  try {
    const f = await m.get('big', 'u1');
    assert.equal(f.state, 'failed');
    assert.match(f.message, /taken over from the manager of image stratum-bim:v1 while in progress/);
    assert.ok(readFileSync(join(disk, 'backing-images', 'big-u1', FILES.partial)).length > 0, 'the partial data is kept');
    assert.deepEqual(JSON.parse(readFileSync(join(disk, 'backing-images', OWNER_FILE), 'utf8')), { image: 'stratum-bim:v2' });
    assert.equal((await m.list()).length, 1, 'the owner record is not listed as a file');
  } finally {
    await m.close();
  }
});

test('a restart of the same image (or a folder without an owner yet) keeps the copy pending for a resume', async () => {
  for (const owner of ['stratum-bim:v1', undefined]) {
    const { disk, uuid } = await diskWithPartial(`restarted-${owner ?? 'none'}`, owner);
    const m = await open(disk, uuid, 'stratum-bim:v1');
    try {
      assert.equal((await m.get('big', 'u1')).state, 'pending', `owner ${owner}`);
    } finally {
      await m.close();
    }
  }
});
