import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { test } from 'node:test';
import { identityFromStat, parseIdentity, sameIdentity } from './file-identity.js';

test('an identity survives JSON, and the legacy `ino` spelling is read as inode', () => {
  const id = identityFromStat(statSync(process.execPath, { bigint: true }));
  assert.deepEqual(parseIdentity(JSON.parse(JSON.stringify(id))), id);
  assert.deepEqual(parseIdentity({ size: 3, mtimeNs: '17', ino: '42' }), { size: 3, mtimeNs: '17', inode: '42' });
  assert.ok(sameIdentity(id, { ...id }));
  assert.ok(!sameIdentity(id, { ...id, inode: `${id.inode}1` }));
  for (const bad of [null, 'x', { size: -1, mtimeNs: '1', inode: '1' }, { size: 1, mtimeNs: '1.5', inode: '1' }, { size: 1, mtimeNs: '1' }]) {
    assert.equal(parseIdentity(bad), undefined, JSON.stringify(bad));
  }
});
