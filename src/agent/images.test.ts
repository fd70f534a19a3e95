// Unit tests of the image catalog: parsing, validation messages, `from` inheritance, placeholders.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAgentError } from './errors.js';
import { BUILTIN_IMAGES, formatCatalog, ImageCatalog, imageEnv, parseCatalog, resolveEntries } from './images.js';

const ctx = { nodeBinary: '/bin/node', repo: '/repo', dir: '/etc/stratum' };

test('built-in images resolve with the repository and node binary', () => {
  const entries = resolveEntries([...BUILTIN_IMAGES], [], 'built-in', ctx);
  const http = entries.find((e) => e.name === 'stratum-test-http:v1');
  assert.deepEqual(http?.command, ['/bin/node', '/repo/dist/src/agent/test-images/http.js']);
  assert.equal(http?.component, 'test-http');
  assert.equal(http?.source, 'built-in');
  const im = entries.find((e) => e.name === 'stratum-im:v1');
  assert.deepEqual(im?.command, ['/bin/node', '/repo/dist/src/cli/main.js']);
  assert.equal(im?.component, 'instance-manager');
});

test('a YAML catalog adds images, and "from" inherits command and env with overrides', () => {
  const raw = parseCatalog(
    `images:
  - name: stratum-test-http:v2
    from: stratum-test-http:v1
    version: 2.0.0
    apiVersion: 2
    apiMinVersion: 1
    env: {STRATUM_API_VERSION: 2, EXTRA: yes}
  - name: my-tool:v1
    component: tool
    command: ["{node}", "{dir}/tool.js", "--flag"]
`,
    'catalog.yaml',
  );
  const catalog = new ImageCatalog(resolveEntries([...BUILTIN_IMAGES], raw, 'catalog.yaml', ctx));
  const v2 = catalog.get('stratum-test-http:v2');
  assert.ok(v2);
  assert.deepEqual(v2.command, ['/bin/node', '/repo/dist/src/agent/test-images/http.js']);
  assert.equal(v2.apiVersion, 2);
  assert.equal(v2.apiMinVersion, 1);
  assert.deepEqual(v2.env, { STRATUM_API_VERSION: '2', EXTRA: 'yes' });
  assert.equal(imageEnv(v2)['STRATUM_API_VERSION'], '2');
  assert.equal(imageEnv(v2)['STRATUM_COMPONENT'], 'test-http');
  assert.deepEqual(catalog.get('my-tool:v1')?.command, ['/bin/node', '/etc/stratum/tool.js', '--flag']);
  assert.equal(catalog.get('my-tool:v1')?.version, 'v1');
  assert.match(formatCatalog(catalog), /^IMAGE\s+COMPONENT\s+VERSION\s+API\s+SOURCE\n/);
  assert.match(formatCatalog(catalog), /stratum-test-http:v2\s+test-http\s+2\.0\.0\s+1-2\s+catalog\.yaml/);
});

test('a file entry replaces a built-in one of the same name', () => {
  const raw = parseCatalog('[{"name": "stratum-test-exit:v1", "component": "x", "command": ["/bin/true"]}]', 'c.json');
  const catalog = new ImageCatalog(resolveEntries([...BUILTIN_IMAGES], raw, 'c.json', ctx));
  assert.deepEqual(catalog.get('stratum-test-exit:v1')?.command, ['/bin/true']);
});

test('catalog errors name the file, the entry and the field', () => {
  const cases: [string, RegExp][] = [
    ['images: 3', /must be a list of images/],
    ['- {component: x}', /images\[0\]\.name: required/],
    ['- {name: a:v1, command: []}', /images\[0\]\.command: must be a non-empty list/],
    ['- {name: a:v1, apiVersion: 1.5}', /apiVersion: must be a non-negative integer/],
    ['- {name: a:v1, colour: red}', /images\[0\]\.colour: unknown field/],
    ['- {name: a:v1, env: {"1x": y}}', /env\.1x: not a valid environment variable name/],
    ['- {name: a:v1}\n- {name: a:v1}', /listed twice/],
    ['{ nope', /not valid YAML or JSON/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseCatalog(text, 'f.yaml'), (err: unknown) => isAgentError(err, 'InvalidCatalog') && re.test(err.message) && err.message.includes('f.yaml'), text);
  }
});

test('resolution errors: unknown base, cycles, missing command, inverted API range', () => {
  const bad = (yaml: string, re: RegExp): void => {
    assert.throws(() => resolveEntries([], parseCatalog(yaml, 'f'), 'f', ctx), (err: unknown) => isAgentError(err, 'InvalidCatalog') && re.test(err.message));
  };
  bad('- {name: a:v1, from: b:v1}', /"from" unknown image "b:v1"/);
  bad('- {name: a:v1, from: b:v1}\n- {name: b:v1, from: a:v1}', /inherits from itself/);
  bad('- {name: a:v1, component: x}', /needs a command and a component/);
  bad('- {name: a:v1, component: x, command: [x], apiVersion: 1, apiMinVersion: 2}', /apiMinVersion 2 above apiVersion 1/);
});
