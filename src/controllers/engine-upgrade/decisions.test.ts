// Unit tests of the engine-upgrade decisions: what keeps an attached volume from a live swap, and the per-node slot.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Engine } from '../../api/engine.js';
import type { Volume } from '../../api/volume.js';
import { liveBlocker, slotBlocker, upgrading } from './index.js';

const vol = (state: string, robustness: string, image = 'e:v2', current = 'e:v1'): Volume => ({
  apiVersion: 'longhorn.io/v1beta2', kind: 'Volume', metadata: { name: 'v' },
  spec: { image }, status: { state: state as never, robustness: robustness as never, currentImage: current },
});
const engine = (state: string, modes: Record<string, string> = { r1: 'RW', r2: 'RW' }): Engine => ({
  apiVersion: 'longhorn.io/v1beta2', kind: 'Engine', metadata: { name: 'v-e-0' }, spec: {}, status: { currentState: state as never, replicaModeMap: modes as never },
});

test('an attached volume is swapped live only when healthy, with its engine running and no replica rebuilding', () => {
  assert.equal(liveBlocker(vol('attached', 'healthy'), engine('running')), undefined);
  assert.equal(liveBlocker(vol('attached', 'degraded'), engine('running', { r1: 'RW', r2: 'ERR' })), 'the volume is attached and degraded');
  assert.equal(liveBlocker(vol('attaching', 'unknown'), engine('starting')), 'the volume is attaching and unknown');
  assert.equal(liveBlocker(vol('attached', 'healthy'), engine('running', { r1: 'RW', r2: 'WO' })), 'replica r2 is rebuilding');
  assert.equal(liveBlocker(vol('attached', 'healthy'), undefined), 'its engine is not running');
  assert.equal(liveBlocker(vol('attached', 'healthy'), engine('stopped')), 'its engine is not running');
});

test('the per-node slot: at most `limit` volumes of a node upgrading', () => {
  assert.equal(slotBlocker([], 1, 'node-1'), undefined);
  assert.equal(slotBlocker(['a'], 1, 'node-1'), 'a on node-1 already upgrading (per-node limit 1)');
  assert.equal(slotBlocker(['a'], 2, 'node-1'), undefined);
  assert.equal(slotBlocker(['a', 'b'], 2, ''), 'a, b on its node already upgrading (per-node limit 2)');
  assert.equal(upgrading(vol('attached', 'healthy')), true);
  assert.equal(upgrading(vol('attached', 'healthy', 'e:v1', 'e:v1')), false);
});
