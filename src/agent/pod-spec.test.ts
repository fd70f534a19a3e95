// Unit tests of how a Pod becomes a process: image lookup and refusals, environment precedence and ports.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Pod } from '../api/pod.js';
import { isAgentError } from './errors.js';
import { BUILTIN_IMAGES, ImageCatalog, resolveEntries } from './images.js';
import { podArgv, podEnv, portEnvName, resolvePod } from './pod-spec.js';

const catalog = new ImageCatalog(resolveEntries([...BUILTIN_IMAGES], [], 'built-in', { nodeBinary: '/bin/node', repo: '/repo', dir: '/' }));

function pod(container: Record<string, unknown>, extra = 0): Pod {
  const c = { name: 'web', image: 'stratum-test-http:v1', ...container };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace: 'default', uid: 'u-1' },
    spec: { nodeName: 'node-1', containers: [c, ...Array.from({ length: extra }, (_, i) => ({ ...c, name: `c${i}` }))] } as Pod['spec'],
  } as Pod;
}

test('unknown images, several containers and command overrides are refused with a reason', () => {
  assert.throws(() => resolvePod(pod({ image: 'x:v9' }), catalog, 'node-1'), (e: unknown) => isAgentError(e, 'ImageNotFound') && /"x:v9" is not in the image catalog of node-1/.test(e.message));
  assert.throws(() => resolvePod(pod({}, 1), catalog, 'node-1'), (e: unknown) => isAgentError(e, 'UnsupportedPodSpec') && /2 containers/.test(e.message));
  assert.throws(() => resolvePod(pod({ command: ['/bin/sh'] }), catalog, 'node-1'), (e: unknown) => isAgentError(e, 'UnsupportedPodSpec') && /use args/.test(e.message));
  assert.equal(resolvePod(pod({}), catalog, 'node-1').image.component, 'test-http');
});

test('environment: image < container < agent; PORT for the first port, PORT_<NAME> per named port', () => {
  const p = pod({
    env: [{ name: 'STRATUM_COMPONENT', value: 'mine' }, { name: 'PORT', value: '1' }, { name: 'GREETING', value: 'hi' }],
    ports: [{ name: 'http', containerPort: 8080 }, { name: 'admin-api', containerPort: 9090 }, { containerPort: 7000 }],
    args: ['--port', '$(PORT)', '$$(PORT)', '$(NOPE)'],
  });
  const { container, image } = resolvePod(p, catalog, 'node-1');
  const env = podEnv({ pod: p, container, image, ports: { http: 21001, 'admin-api': 21002, '7000': 21003 }, nodeName: 'node-1', hostIP: '10.0.0.2', managerUrl: 'http://m:9500', inherited: { PATH: '/bin', SECRET: 'x' } });
  assert.equal(env['STRATUM_COMPONENT'], 'mine', 'the container overrides the image');
  assert.equal(env['STRATUM_IMAGE'], 'stratum-test-http:v1');
  assert.equal(env['PORT'], '21001', 'the agent decides ports');
  assert.equal(env[portEnvName('admin-api')], '21002');
  assert.equal(portEnvName('admin-api'), 'PORT_ADMIN_API');
  assert.equal(env['GREETING'], 'hi');
  assert.equal(env['PATH'], '/bin');
  assert.equal(env['SECRET'], undefined, 'only a few variables are inherited from the agent');
  assert.equal(env['POD_NAME'], 'web');
  assert.equal(env['HOST'], '10.0.0.2');
  assert.equal(env['STRATUM_MANAGER'], 'http://m:9500');
  assert.deepEqual(podArgv(image, container, env).slice(2), ['--port', '21001', '$(PORT)', '$(NOPE)']);
});
