// Tests of LruCache: the bound holds, recency is refreshed by get, deleteIf leaves newer entries alone.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LruCache } from './lru.js';

test('evicts the least recently used entry beyond the bound', () => {
  const c = new LruCache<number, string>(2);
  c.set(1, 'a');
  c.set(2, 'b');
  assert.equal(c.get(1), 'a'); // 1 is now the most recent
  c.set(3, 'c');
  assert.equal(c.size, 2);
  assert.equal(c.get(2), undefined);
  assert.equal(c.get(1), 'a');
  assert.equal(c.get(3), 'c');
});

test('deleteIf removes only the same value', () => {
  const c = new LruCache<string, object>(4);
  const old = {};
  const fresh = {};
  c.set('k', old);
  c.set('k', fresh);
  c.deleteIf('k', old);
  assert.equal(c.get('k'), fresh);
  c.deleteIf('k', fresh);
  assert.equal(c.get('k'), undefined);
});

test('needs at least one entry', () => {
  assert.throws(() => new LruCache(0), RangeError);
});
