// The release key on etcd, against a real one-member etcd: an upgrade stores its release only over the release the
// manager started on, so two upgrades sent to two managers at once cannot both be accepted.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { freePort, tempDir } from '../../test/helpers/processes.js';
import { hasEtcd, LocalEtcd } from '../store/etcd/local-cluster.js';
import { RELEASE_FILE, syncReleaseFromEtcd, writeReleaseToEtcd } from './release-store.js';

const skip = hasEtcd() ? false : 'etcd is not installed (Debian package etcd-server)';
const dir = tempDir('release-store');
let etcd: LocalEtcd | undefined;

before(async () => {
  if (skip) return;
  etcd = new LocalEtcd({ dir: dir.path, ports: [{ client: await freePort(), peer: await freePort() }], token: `release-${process.pid}` });
  await etcd.start();
});

after(async () => {
  await etcd?.stop('SIGKILL');
  dir.remove();
});

test('a release is stored only over the one its manager started on; the second of two concurrent upgrades is refused', { skip }, async () => {
  const o = { endpoints: etcd?.endpoints ?? [], prefix: `/r${process.pid}/` };
  const v1 = 'release: v1\n';
  const v2a = 'release: v2-a\n';
  const v2b = 'release: v2-b\n';
  assert.equal(await writeReleaseToEtcd(o, v1, 'release: v0\n'), false, 'nothing stored yet: a manager that expects v0 is stale');
  assert.equal(await writeReleaseToEtcd(o, v1, undefined), true, 'the first release over none');
  // Two managers that both started on v1 accept two different upgrades at once: one store wins.
  const [a, b] = await Promise.all([writeReleaseToEtcd(o, v2a, v1), writeReleaseToEtcd(o, v2b, v1)]);
  assert.equal(Number(a) + Number(b), 1, `exactly one of the two is stored (a ${a}, b ${b})`);
  assert.equal(await writeReleaseToEtcd(o, v2b, undefined), false, 'a manager that started with none stored is stale too');
  const dataDir = mkdtempSync(join(dir.path, 'manager-'));
  assert.equal(await syncReleaseFromEtcd({ ...o, dataDir }), 'written');
  assert.equal(readFileSync(join(dataDir, RELEASE_FILE), 'utf8'), a ? v2a : v2b, 'every manager starts on the one that won');
});
