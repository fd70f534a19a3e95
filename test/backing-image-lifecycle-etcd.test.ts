// The backing-image lifecycle end-to-end tests again, on three managers sharing a three-member etcd.

import { skipEtcd } from './helpers/etcd-managers.js';

process.env['STRATUM_TEST_STORE'] = 'etcd';
if (skipEtcd) {
  const { test } = await import('node:test');
  test('backing-image lifecycle on etcd with three managers', { skip: skipEtcd }, () => undefined);
} else {
  await import('./backing-image-lifecycle.test.js');
}
