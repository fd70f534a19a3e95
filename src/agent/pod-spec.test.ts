// Unit tests of how a Pod becomes a process: image lookup and refusals, environment precedence and ports.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Pod } from '../api/pod.js';
import { isAgentError } from './errors.js';
import { BUILTIN_IMAGES, ImageCatalog, resolveEntries } from './images.js';
import { podArgv, podEnv, portEnvName, resolvePod } from './pod-spec.js';
import { podConfinementProblems } from './pod-confinement.js';

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
    ports: [{ name: 'http', containerPort: 8080 }, { name: 'admin-api', containerPort: 9090 }, { containerPort: 7000 }],
    args: ['--port', '$(PORT)', '$$(PORT)', '$(NOPE)'],
  });
  const { container, image } = resolvePod(p, catalog, 'node-1');
  const env = podEnv({ pod: p, container, image, ports: { http: 21001, 'admin-api': 21002, '7000': 21003 }, nodeName: 'node-1', hostIP: '10.0.0.2', managerUrl: 'http://m:9500', inherited: { PATH: '/bin', SECRET: 'x' } });
  assert.equal(env['STRATUM_IMAGE'], 'stratum-test-http:v1');
  assert.equal(env['PORT'], '21001', 'the agent decides ports');
  assert.equal(env[portEnvName('admin-api')], '21002');
  assert.equal(portEnvName('admin-api'), 'PORT_ADMIN_API');
  assert.equal(env['PATH'], '/bin');
  assert.equal(env['SECRET'], undefined, 'only a few variables are inherited from the agent');
  assert.equal(env['POD_NAME'], 'web');
  assert.equal(env['HOST'], '10.0.0.2');
  assert.equal(env['STRATUM_MANAGER'], 'http://m:9500');
  assert.deepEqual(podArgv(image, container, env).slice(2), ['--port', '21001', '$(PORT)', '$(NOPE)']);
});

test('confinement: exec probes, undeclared env, commands and other subcommands are refused, naming the field', () => {
  const refused = (c: Record<string, unknown>, field: RegExp) =>
    assert.throws(() => resolvePod(pod(c), catalog, 'node-1'), (e: unknown) => isAgentError(e, 'UnsupportedPodSpec') && field.test(e.message), JSON.stringify(c));
  refused({ readinessProbe: { exec: { command: ['/bin/sh', '-c', 'id'] } } }, /readinessProbe\.exec/);
  refused({ env: [{ name: 'NODE_OPTIONS', value: '--require /tmp/x.js' }] }, /env\[0\]\.name: .*NODE_OPTIONS/);
  refused({ readinessProbe: { httpGet: { host: '169.254.169.254', port: 80 } } }, /httpGet\.host/);
  refused({ image: 'stratum-bim:v1', args: ['up', '--data-dir', '/'] }, /args\[0\]/);
  assert.equal(resolvePod(pod({ image: 'stratum-bim:v1', args: ['bim', '--disk', '/d'] }), catalog, 'node-1').image.component, 'backing-image-manager');
  assert.equal(resolvePod(pod({ image: 'stratum-test-exit:v1', env: [{ name: 'EXIT_CODE', value: '1' }] }), catalog, 'node-1').image.component, 'test-exit');
});

test('confinement: disk arguments must be inside a disk of the node', () => {
  const p = (args: string[]) => pod({ image: 'stratum-bim:v1', args });
  assert.deepEqual(podConfinementProblems(p(['bim', '--disk', '/d1']), catalog, { disks: ['/d1'] }), []);
  assert.equal(podConfinementProblems(p(['bim', '--disk', '/etc']), catalog, { disks: ['/d1'] })[0]?.field, 'spec.containers[0].args[2]');
  assert.equal(podConfinementProblems(p(['bim', '--disk=/d1/../etc']), catalog, { disks: ['/d1'] })[0]?.field, 'spec.containers[0].args[1]');
  assert.equal(podConfinementProblems(p(['bim', '--disk', 'rel']), catalog, { disks: ['/d1'] }).length, 1);
});

test('confinement: the instance-manager pod as its controller writes it passes; a data root off the disks does not', () => {
  const im = (roots: string[]) =>
    pod({ image: 'stratum-im:v1', args: ['instance-manager', '--node', '$(NODE_NAME)', '--node-uid', 'u-1', '--host', '$(POD_IP)', '--port', '$(PORT)', ...roots.flatMap((r) => ['--data-root', r])] });
  assert.deepEqual(podConfinementProblems(im(['/d1', '/d2']), catalog, { disks: ['/d1', '/d2'] }), []);
  assert.equal(podConfinementProblems(im(['/d1', '/']), catalog, { disks: ['/d1', '/d2'] })[0]?.field, 'spec.containers[0].args[12]');
  assert.equal(podConfinementProblems(pod({ image: 'stratum-im:v1', args: ['replica', '--dir', '/etc'] }), catalog)[0]?.field, 'spec.containers[0].args[0]');
});

test('confinement: mounts of the pod\'s claims pass; a subPath that leaves its volume is refused', () => {
  const mounts = (subPath?: string) => pod({ image: 'registry.k8s.io/nginx-slim:0.8', volumeMounts: [{ name: 'www', mountPath: '/usr/share/nginx/html', ...(subPath === undefined ? {} : { subPath }) }] });
  assert.deepEqual(podConfinementProblems(mounts(), catalog), []);
  assert.deepEqual(podConfinementProblems(mounts('site/a'), catalog), []);
  assert.equal(podConfinementProblems(mounts('../../etc'), catalog)[0]?.field, 'spec.containers[0].volumeMounts[0].subPath');
  assert.equal(podConfinementProblems(mounts('/etc'), catalog)[0]?.field, 'spec.containers[0].volumeMounts[0].subPath');
});
