// Unit tests of the replica gate decision.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BackingImage } from '../../api/backing-image.js';
import { gateFor } from './replica-gate.js';

const bi = (state: string | undefined, progress = 0): BackingImage => ({
  apiVersion: 'longhorn.io/v1beta2',
  kind: 'BackingImage',
  metadata: { name: 'img' },
  spec: { diskFileSpecMap: { d1: {} } },
  status: { uuid: 'u1', diskFileStatusMap: state ? { d1: { state: state as never, progress, message: state === 'failed' ? 'checksum mismatch' : '' } } : {} },
});

test('a replica waits until the copy on its own disk is ready, and says which copy and why', () => {
  assert.match(gateFor(undefined, 'img', 'd1', '/disk').message, /img does not exist/);
  assert.equal(gateFor(undefined, 'img', 'd1', '/disk').reason, 'GetBackingImageFailed');
  assert.match(gateFor(bi(undefined), 'img', 'd1', '/disk').message, /disk d1: not started yet/);
  const inProgress = gateFor(bi('in-progress', 45), 'img', 'd1', '/disk');
  assert.equal(inProgress.waiting, true);
  assert.match(inProgress.message, /on disk d1: it is in-progress \(45%\)/);
  assert.match(gateFor(bi('failed'), 'img', 'd1', '/disk').message, /failed: checksum mismatch/);
  assert.equal(gateFor(bi('ready'), 'img', 'd2', '/disk').waiting, true, 'a ready copy on another disk does not count');
  const ready = gateFor(bi('ready'), 'img', 'd1', '/disk');
  assert.equal(ready.waiting, false);
  assert.equal(ready.path, '/disk/backing-images/img-u1/backing');
});
