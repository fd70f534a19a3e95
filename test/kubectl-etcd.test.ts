// The kubectl / control-plane end-to-end tests again, on three managers sharing a three-member etcd.

import { skipEtcd } from './helpers/etcd-managers.js';

process.env['STRATUM_TEST_STORE'] = 'etcd';
if (skipEtcd) {
  const { test } = await import('node:test');
  test('kubectl and the control plane on etcd with three managers', { skip: skipEtcd }, () => undefined);
} else {
  await import('./kubectl.test.js');
}
