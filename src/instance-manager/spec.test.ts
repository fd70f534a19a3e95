// Unit tests of instance specs (normalisation, the argv of the children) and of the bounded log buffer.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineRing } from './line-ring.js';
import { childArgs, parseCreateRequest, sameSpec } from './spec.js';

test('specs are normalised so that key order and defaults do not make them differ', () => {
  const a = parseCreateRequest({ type: 'engine', name: 'e1', engine: { size: 10, volume: 'v', replicas: [] } }, []);
  const b = parseCreateRequest({ name: 'e1', type: 'engine', engine: { volume: 'v', replicas: [], frontend: 'nbd', size: 10 } }, []);
  assert.ok(sameSpec(a.spec, b.spec));
  const c = parseCreateRequest({ name: 'e1', type: 'engine', engine: { volume: 'v', replicas: [], frontend: 'blockdev', size: 10 } }, []);
  assert.ok(!sameSpec(a.spec, c.spec));
  assert.deepEqual(c.spec, { type: 'engine', engine: { volume: 'v', size: 10, replicas: [], frontend: 'blockdev', deviceDir: '/dev/longhorn' } });
});

test('children listen on the manager host, port 0, IPv6 bracketed', () => {
  const r = parseCreateRequest({ name: 'r1', type: 'replica', replica: { dir: '/d/r1', size: 4096, backing: { name: 'b', uuid: 'u', path: '/d/b' } } }, ['/d']);
  assert.deepEqual(childArgs(r.name, r.spec, '::1'), [
    'replica', '--dir', '/d/r1', '--listen', '[::1]:0', '--create', '--name', 'r1', '--size', '4096',
    '--backing-file', '/d/b', '--backing-name', 'b', '--backing-uuid', 'u',
  ]);
  const e = parseCreateRequest({ name: 'e1', type: 'engine', engine: { volume: 'v', size: 8, replicas: [{ name: 'r1', address: '10.0.0.1:5' }] } }, []);
  assert.deepEqual(childArgs(e.name, e.spec, '10.0.0.2'), [
    'engine', '--volume', 'v', '--size', '8', '--nbd', '10.0.0.2:0', '--control', '10.0.0.2:0', '--frontend', 'nbd', '--replica', 'r1=10.0.0.1:5',
  ]);
});

test('LineRing keeps the last lines, joins split chunks, and bounds a line without newline', () => {
  const ring = new LineRing(3);
  const seen: string[] = [];
  ring.push('a\nb', (l) => seen.push(l));
  ring.push('c\nd\ne\n', (l) => seen.push(l));
  assert.deepEqual(seen, ['a', 'bc', 'd', 'e']);
  assert.deepEqual(ring.tail(), ['bc', 'd', 'e']);
  assert.deepEqual(ring.tail(1), ['e']);
  ring.push('tail');
  ring.end();
  assert.equal(ring.last(), 'tail');
  ring.push('x'.repeat(70 * 1024));
  assert.equal(ring.tail(1)[0]?.length, 70 * 1024);
});
