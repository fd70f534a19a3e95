// Keys: namespace/name round trip, cluster scope, malformed keys.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { keyFor, keyOf, splitKey } from './keys.js';

describe('keys', () => {
  it('round-trips namespaced and cluster-scoped keys', () => {
    const k = keyOf({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'ns' } });
    assert.equal(k, 'ns/p');
    assert.deepEqual(splitKey(k), ['ns', 'p']);
    assert.equal(keyFor('', 'n1'), 'n1');
    assert.deepEqual(splitKey('n1'), ['', 'n1']);
  });

  it('rejects malformed keys', () => {
    for (const bad of ['', 'a/b/c', '/b', 'a/']) assert.throws(() => splitKey(bad), /Cannot split key/);
  });
});
