// Tests of the pure block arithmetic: write planning into partial and whole blocks, the merge of a partial block,
// the dirty-run snapshot a flush journals, and the paginated listing of written runs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockMap, BlockState, mergeBlock, planWrite } from './block-map.js';
import { Rng, testSeed } from './testing.js';

test('planWrite splits a write into partial edges and one run of whole blocks', () => {
  assert.deepEqual(planWrite(0, 8192, 4096), [{ kind: 'full', block: 0, count: 2, dataStart: 0, dataEnd: 8192 }]);
  assert.deepEqual(planWrite(100, 50, 4096), [{ kind: 'partial', block: 0, within: 100, dataStart: 0, dataEnd: 50 }]);
  assert.deepEqual(planWrite(0, 100, 4096), [{ kind: 'partial', block: 0, within: 0, dataStart: 0, dataEnd: 100 }]);
  assert.deepEqual(planWrite(4000, 10000, 4096), [
    { kind: 'partial', block: 0, within: 4000, dataStart: 0, dataEnd: 96 },
    { kind: 'full', block: 1, count: 2, dataStart: 96, dataEnd: 8288 },
    { kind: 'partial', block: 3, within: 0, dataStart: 8288, dataEnd: 10000 },
  ]);
  assert.deepEqual(planWrite(4096, 4097, 4096), [
    { kind: 'full', block: 1, count: 1, dataStart: 0, dataEnd: 4096 },
    { kind: 'partial', block: 2, within: 0, dataStart: 4096, dataEnd: 4097 },
  ]);
  assert.deepEqual(planWrite(10, 0, 4096), []);
});

test('planWrite covers every byte exactly once (random)', () => {
  const seed = testSeed();
  const rng = new Rng(seed);
  for (let i = 0; i < 2000; i++) {
    const bs = 512 << rng.int(5);
    const offset = rng.int(20 * bs);
    const length = 1 + rng.int(6 * bs);
    const seen = new Uint8Array(length);
    for (const s of planWrite(offset, length, bs)) {
      const start = s.kind === 'full' ? s.block * bs : s.block * bs + s.within;
      assert.equal(start, offset + s.dataStart, `seed ${seed}: segment start`);
      if (s.kind === 'full') assert.equal(s.dataEnd - s.dataStart, s.count * bs, `seed ${seed}`);
      else assert.ok(s.within + (s.dataEnd - s.dataStart) <= bs, `seed ${seed}: partial stays in its block`);
      for (let j = s.dataStart; j < s.dataEnd; j++) seen[j]!++;
    }
    assert.ok(seen.every((n) => n === 1), `seed ${seed}: offset ${offset} length ${length} block ${bs}`);
  }
});

test('mergeBlock lays data over a copy of the block', () => {
  const base = new Uint8Array([1, 2, 3, 4, 5, 6]);
  const merged = mergeBlock(base, new Uint8Array([9, 9]), 2);
  assert.deepEqual([...merged], [1, 2, 9, 9, 5, 6]);
  assert.deepEqual([...base], [1, 2, 3, 4, 5, 6]);
});

test('takeDirty returns the current states of changed blocks as sorted, merged runs', () => {
  const map = new BlockMap(4096, new Uint8Array(100));
  map.set(50, 10, BlockState.DATA);
  map.set(10, 5, BlockState.ZERO);
  map.set(55, 10, BlockState.ZERO); // overlaps the first
  map.set(12, 1, BlockState.DATA);
  assert.deepEqual(map.takeDirty(), [
    { start: 10, count: 2, state: BlockState.ZERO },
    { start: 12, count: 1, state: BlockState.DATA },
    { start: 13, count: 2, state: BlockState.ZERO },
    { start: 50, count: 5, state: BlockState.DATA },
    { start: 55, count: 10, state: BlockState.ZERO },
  ]);
  assert.equal(map.hasDirty, false);
  assert.deepEqual(map.takeDirty(), []);
});

test('written lists DATA and ZERO runs page by page', () => {
  const map = new BlockMap(512, new Uint8Array(64));
  map.set(0, 2, BlockState.DATA);
  map.set(2, 2, BlockState.ZERO);
  map.set(10, 1, BlockState.DATA);
  map.set(63, 1, BlockState.ZERO);
  const p1 = map.written(0, 2);
  assert.deepEqual(p1, { runs: [{ start: 0, count: 2, state: 1 }, { start: 2, count: 2, state: 2 }], next: 10 });
  const p2 = map.written(p1.next!, 2);
  assert.deepEqual(p2, { runs: [{ start: 10, count: 1, state: 1 }, { start: 63, count: 1, state: 2 }], next: undefined });
  assert.deepEqual(map.countWritten(), { dataBlocks: 3, zeroBlocks: 3 });
});
