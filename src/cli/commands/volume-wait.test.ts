// Unit tests of the CLI's volume wait loop, driven by a scripted sequence of /v1 volumes and a fake clock.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { endpointOf, parseDuration, waitForVolume, type V1Volume } from './volume-wait.js';

function vol(over: Partial<V1Volume>): V1Volume {
  return {
    name: 'v1', size: '2147483648', state: 'detached', robustness: 'unknown', frontend: 'nbd', disableFrontend: false,
    backingImage: 'bi-1', nodeID: 'node-1', currentNodeID: '', conditions: {}, controllers: [], ...over,
  };
}

function clock() {
  let t = 0;
  return { now: () => t, sleep: async (ms: number) => void (t += ms) };
}

const attached = (v: V1Volume) => v.state === 'attached' && endpointOf(v, 'node-1') !== '';

test('reports each change once and returns the volume that is done', async () => {
  const seq = [
    vol({ state: 'attaching' }),
    vol({ state: 'attaching' }),
    vol({ state: 'attaching', conditions: { WaitForBackingImage: { type: 'WaitForBackingImage', status: 'True', reason: 'Waiting', message: 'copy on disk d1 is in-progress (40%)' } } }),
    vol({ state: 'attached', robustness: 'healthy', currentNodeID: 'node-1', controllers: [{ name: 'v1-e-0', hostId: 'node-1', endpoint: 'nbd://127.0.0.1:20001' }] }),
  ];
  const lines: string[] = [];
  const v = await waitForVolume('v1', async () => seq.shift(), attached, { what: 'attached', timeoutMs: 10_000, report: (l) => lines.push(l), ...clock() });
  assert.equal(endpointOf(v, 'node-1'), 'nbd://127.0.0.1:20001');
  assert.deepEqual(lines, [
    'volume v1: state attaching, robustness unknown',
    'volume v1: state attaching, robustness unknown; WaitForBackingImage=True (Waiting): copy on disk d1 is in-progress (40%)',
  ]);
});

test('attached without an endpoint is not done; a timeout names the state and the condition messages', async () => {
  const v = vol({
    state: 'attached', currentNodeID: 'node-1', controllers: [{ name: 'v1-e-0', hostId: 'node-1', endpoint: '' }],
    conditions: { WaitForBackingImage: { type: 'WaitForBackingImage', status: 'True', reason: 'Waiting', message: 'backing image bi-1 has no ready copy on disk d1' } },
  });
  await assert.rejects(
    waitForVolume('v1', async () => v, attached, { what: 'attached on node-1', timeoutMs: 2000, report: () => undefined, ...clock() }),
    /timed out after 2s waiting for volume "v1" to be attached on node-1: state attached, robustness unknown, on node node-1; WaitForBackingImage=True \(Waiting\): backing image bi-1 has no ready copy on disk d1/,
  );
});

test('a volume deleted while waiting ends the wait', async () => {
  await assert.rejects(waitForVolume('v1', async () => undefined, attached, { what: 'attached', timeoutMs: 1000, report: () => undefined, ...clock() }), /was deleted/);
});

test('durations', () => {
  assert.equal(parseDuration('--timeout', '120s'), 120_000);
  assert.equal(parseDuration('--timeout', '120'), 120_000);
  assert.equal(parseDuration('--timeout', '2m'), 120_000);
  assert.equal(parseDuration('--timeout', '500ms'), 500);
  assert.throws(() => parseDuration('--timeout', 'soon'), /--timeout must be a duration/);
});
