// The provisioner's end-to-end tests again, on three managers sharing a three-member etcd: claims, PVs and Volumes
// are written by the leader's controllers and read back through any manager.

import { skipEtcd } from './helpers/etcd-managers.js';

process.env['STRATUM_TEST_STORE'] = 'etcd';
if (skipEtcd) {
  const { test } = await import('node:test');
  test('the provisioner on etcd with three managers', { skip: skipEtcd }, () => undefined);
} else {
  await import('./provisioner.test.js');
}
