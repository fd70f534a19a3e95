// `stratum version`'s table: every running engine, per node, with the engine image its Engine status says it runs
// (and the image it is moving to during a live upgrade); stopped engines are not listed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BUILTIN_RELEASE } from '../../release/index.js';
import { versionText, type UpgradeSnapshot } from './upgrade-progress.js';

const snap = (engines: UpgradeSnapshot['engines']): UpgradeSnapshot => ({
  release: {
    release: BUILTIN_RELEASE,
    source: 'built-in',
    images: {
      'stratum-engine:v1': { component: 'engine', version: '1.0.0', apiMinVersion: 1, apiVersion: 1 },
      'stratum-engine:v2': { component: 'engine', version: '2.0.0', apiMinVersion: 1, apiVersion: 1 },
    },
  },
  defaults: { 'default-engine-image': 'stratum-engine:v2' },
  backingImageManagers: [],
  instanceManagers: [],
  engines,
  volumes: [],
  engineUpgradeLimit: 0,
});

test('stratum version shows per node which engine image each running engine runs', () => {
  const text = versionText(snap([
    { metadata: { name: 'a-e-0' }, spec: { nodeID: 'node-1', volumeName: 'a', image: 'stratum-engine:v2' }, status: { currentImage: 'stratum-engine:v2', currentState: 'running' } },
    { metadata: { name: 'b-e-0' }, spec: { nodeID: 'node-2', volumeName: 'b', image: 'stratum-engine:v2' }, status: { currentImage: 'stratum-engine:v1', currentState: 'running' } },
    { metadata: { name: 'c-e-0' }, spec: { nodeID: '', volumeName: 'c', image: 'stratum-engine:v2' }, status: { currentImage: '', currentState: 'stopped' } },
  ]));
  assert.match(text, /^node-1\s+engine\s+a-e-0\s+stratum-engine:v2\s+2\.0\.0\s+1\s+running\s+volume a\s*$/m);
  assert.match(text, /^node-2\s+engine\s+b-e-0\s+stratum-engine:v1\s+1\.0\.0\s+1\s+running\s+volume b, moving to stratum-engine:v2\s*$/m);
  assert.doesNotMatch(text, /c-e-0/);
});
