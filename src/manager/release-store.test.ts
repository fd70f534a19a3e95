// The release key on etcd, against a real one-member etcd: an upgrade stores its release only over the release the
// manager started on, so two upgrades sent to two managers at once cannot both be accepted; and a manager without a
// supervisor stops when the release changes under it, to be started again on the new one.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { freePort, ManagerProcess, tempDir, waitFor } from '../../test/helpers/processes.js';
import { hasEtcd, LocalEtcd } from '../store/etcd/local-cluster.js';
import { RELEASE_FILE, syncReleaseFromEtcd, watchReleaseInEtcd, writeReleaseToEtcd } from './release-store.js';
import { EXIT_RELEASE_CHANGED } from './index.js';

const skip = hasEtcd() ? false : 'etcd is not installed (Debian package etcd-server)';
const dir = tempDir('release-store');
let etcd: LocalEtcd | undefined;

before(async () => {
  if (skip) return;
  etcd = new LocalEtcd({ dir: dir.path, ports: [{ client: await freePort(), peer: await freePort() }], token: `release-${process.pid}` });
  await etcd.start();
});

const managers: ManagerProcess[] = [];
after(async () => {
  for (const m of managers) await m.stop();
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

test('the release watch fires once, on the first stored release that is not the one started on, also one stored before it began', { skip }, async () => {
  const o = { endpoints: etcd?.endpoints ?? [], prefix: `/w${process.pid}/` };
  const seen: (string | undefined)[] = [];
  const unwatch = await watchReleaseInEtcd(o, undefined, (now) => seen.push(now));
  assert.equal(await writeReleaseToEtcd(o, 'release: 1.0.1\n', undefined), true);
  await waitFor('the watch to see release 1.0.1', async () => seen.length > 0);
  assert.equal(await writeReleaseToEtcd(o, 'release: 1.0.2\n', 'release: 1.0.1\n'), true);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(seen, ['release: 1.0.1\n'], 'once, with the text stored');
  await unwatch();

  // Started on 1.0.2 while 1.0.2 is stored: nothing; a rewrite of the same text: nothing.
  const quiet: (string | undefined)[] = [];
  const unwatchQuiet = await watchReleaseInEtcd(o, 'release: 1.0.2\n', (now) => quiet.push(now));
  assert.equal(await writeReleaseToEtcd(o, 'release: 1.0.2\n', 'release: 1.0.2\n'), true);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(quiet, []);
  await unwatchQuiet();

  // A manager that read 1.0.1, while 1.0.2 was stored before its watch began: the watch reports it at once.
  const late: (string | undefined)[] = [];
  const unwatchLate = await watchReleaseInEtcd(o, 'release: 1.0.1\n', (now) => late.push(now));
  assert.deepEqual(late, ['release: 1.0.2\n']);
  await unwatchLate();
});

test('the release watch outlives a restart of etcd: a release stored after it still reaches the manager', { skip, timeout: 60_000 }, async () => {
  const o = { endpoints: etcd?.endpoints ?? [], prefix: `/x${process.pid}/` };
  const seen: (string | undefined)[] = [];
  const unwatch = await watchReleaseInEtcd(o, undefined, (now) => seen.push(now));
  await etcd?.stop('SIGKILL');
  await etcd?.start();
  assert.deepEqual(seen, [], 'a restart is no change');
  assert.equal(await writeReleaseToEtcd(o, 'release: 2.0.0\n', undefined), true);
  await waitFor('the watch to see release 2.0.0 after the restart', async () => seen.length > 0, 30_000);
  assert.deepEqual(seen, ['release: 2.0.0\n']);
  await unwatch();
});

test('a manager on etcd without a supervisor exits with status 75 when the release changes, and starts again on the new one', { skip }, async () => {
  const prefix = `/m${process.pid}/`;
  const o = { endpoints: etcd?.endpoints ?? [], prefix };
  const m = new ManagerProcess(mkdtempSync(join(dir.path, 'manager-')), ['--etcd', o.endpoints.join(','), '--etcd-prefix', prefix]);
  managers.push(m);
  await m.start();
  assert.match(m.log, /release 1\.0\.0 \(built-in\)/);
  // Another manager (under a supervisor) accepted an upgrade: it stored the release over none.
  assert.equal(await writeReleaseToEtcd(o, 'release: 1.1.0\nimages: []\n', undefined), true);
  const code = await waitFor('the manager to exit', async () => m.exitCode ?? undefined);
  assert.equal(code, EXIT_RELEASE_CHANGED, m.log);
  assert.match(m.log, /the cluster's release changed to release 1\.1\.0 while this manager runs release 1\.0\.0; stopping/);
  assert.match(m.log, /exiting with status 75/);
  // Its service manager starts it again: it runs the stored release and stays up.
  await m.start();
  assert.match(m.log, /release 1\.1\.0 \(/);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(m.exitCode, null, m.log);
});
