// End-to-end: the real kubectl and the `stratum` CLI against a real `stratum manager` process.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { hasTool, kubectl, kubectlArgs, ManagerProcess, REPO, run, stratum, tempDir, waitFor } from './helpers/processes.js';
import { authFor } from './helpers/credentials.js';

const SEED = join(REPO, 'test', 'fixtures', 'seed-backing-images.yaml');
const NS = 'longhorn-system';
const skipKubectl = hasTool('kubectl') ? false : 'kubectl is not installed';

const dir = tempDir('kubectl');
const manager = new ManagerProcess(join(dir.path, 'manager'));

before(async () => {
  await manager.start();
});

after(async () => {
  await manager.stop();
  dir.remove();
});

test('the ten seed BackingImages apply with `stratum apply -f` and list as v1beta2', async () => {
  const res = await stratum(manager.url, ['apply', '-f', SEED]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stdout.trim().split('\n').length, 10);
  assert.match(res.stdout, /backingimage\.longhorn\.io\/bi-test1 created/);
  const again = await stratum(manager.url, ['apply', '-f', SEED]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /bi-test10 unchanged/);
  const list = await (await fetch(`${manager.url}/apis/longhorn.io/v1beta2/namespaces/${NS}/backingimages`, { headers: authFor(manager.url) })).json() as { items: { apiVersion: string; spec: { sourceType: string; sourceParameters: { url: string } } }[] };
  assert.equal(list.items.length, 10);
  for (const item of list.items) {
    assert.equal(item.apiVersion, 'longhorn.io/v1beta2');
    assert.equal(item.spec.sourceType, 'download');
    assert.match(item.spec.sourceParameters.url, /parrot\.qcow2$/);
  }
});

test('kubectl apply -f (create and update), get, -o yaml', { skip: skipKubectl }, async () => {
  const seed = readFileSync(SEED, 'utf8').replaceAll('bi-test', 'kc-test');
  const file = join(dir.path, 'kc.yaml');
  writeFileSync(file, seed);
  const created = await kubectl(manager.url, ['apply', '-f', file]);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stdout, /backingimage\.longhorn\.io\/kc-test1 created/);
  writeFileSync(file, seed.replace('spec:\n', 'spec:\n  minNumberOfCopies: 2\n'));
  const updated = await kubectl(manager.url, ['apply', '-f', file]);
  assert.equal(updated.code, 0, updated.stderr);
  assert.match(updated.stdout, /kc-test1 configured/);
  assert.match(updated.stdout, /kc-test2 unchanged/);
  const get = await kubectl(manager.url, ['get', 'backingimages.longhorn.io', '-n', NS]);
  assert.equal(get.code, 0, get.stderr);
  assert.equal(get.stdout.trim().split('\n').filter((l) => l.startsWith('kc-test')).length, 10);
  const yaml = await kubectl(manager.url, ['get', 'lhbi', 'kc-test1', '-n', NS, '-o', 'yaml']);
  assert.equal(yaml.code, 0, yaml.stderr);
  assert.match(yaml.stdout, /apiVersion: longhorn\.io\/v1beta2/);
  assert.match(yaml.stdout, /minNumberOfCopies: 2/);
});

test('kubectl patch (merge and json), describe and delete', { skip: skipKubectl }, async () => {
  const doc = `apiVersion: longhorn.io/v1beta2\nkind: BackingImage\nmetadata:\n  name: patched\n  namespace: ${NS}\nspec:\n  sourceType: download\n  sourceParameters:\n    url: https://example.com/x.raw\n`;
  assert.equal((await kubectl(manager.url, ['apply', '-f', '-'], doc)).code, 0);
  const merge = await kubectl(manager.url, ['patch', 'lhbi', 'patched', '-n', NS, '--type', 'merge', '-p', '{"spec":{"minNumberOfCopies":2}}']);
  assert.equal(merge.code, 0, merge.stderr);
  const json = await kubectl(manager.url, ['patch', 'lhbi', 'patched', '-n', NS, '--type', 'json', '-p', '[{"op":"replace","path":"/spec/minNumberOfCopies","value":3}]']);
  assert.equal(json.code, 0, json.stderr);
  const obj = await (await fetch(`${manager.url}/apis/longhorn.io/v1beta2/namespaces/${NS}/backingimages/patched`, { headers: authFor(manager.url) })).json() as { spec: { minNumberOfCopies: number }; metadata: { generation: number } };
  assert.equal(obj.spec.minNumberOfCopies, 3);
  assert.equal(obj.metadata.generation, 3);
  const desc = await kubectl(manager.url, ['describe', 'lhbi', 'patched', '-n', NS]);
  assert.equal(desc.code, 0, desc.stderr);
  assert.match(desc.stdout, /Min Number Of Copies:\s+3/);
  const del = await kubectl(manager.url, ['delete', 'lhbi', 'patched', '-n', NS]);
  assert.equal(del.code, 0, del.stderr);
  assert.match(del.stdout, /deleted/);
  const gone = await fetch(`${manager.url}/apis/longhorn.io/v1beta2/namespaces/${NS}/backingimages/patched`, { headers: authFor(manager.url) });
  assert.equal(gone.status, 404);
});

test('kubectl get -w prints an update made through stratum within 1 s', { skip: skipKubectl }, async () => {
  const doc = `apiVersion: longhorn.io/v1beta2\nkind: BackingImage\nmetadata:\n  name: watched\n  namespace: ${NS}\nspec:\n  sourceType: download\n  sourceParameters:\n    url: https://example.com/w.raw\n`;
  assert.equal((await stratum(manager.url, ['apply', '-f', '-'], doc)).code, 0);
  const { spawn } = await import('node:child_process');
  const child = spawn('kubectl', [...kubectlArgs(manager.url, []), 'get', 'backingimages', '-n', NS, '-w', '-o', 'custom-columns=NAME:.metadata.name,COPIES:.spec.minNumberOfCopies'], {
    env: { ...process.env, KUBECONFIG: '/dev/null' },
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  try {
    await waitFor('initial kubectl listing', async () => /watched\s+1/.test(out));
    const started = Date.now();
    const res = await stratum(manager.url, ['apply', '-f', '-'], doc.replace('spec:\n', 'spec:\n  minNumberOfCopies: 4\n'));
    assert.equal(res.code, 0, res.stderr);
    await waitFor('the update in kubectl -w output', async () => /watched\s+4/.test(out), 5000);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 1000 + 1500, `update seen after ${elapsed} ms (includes the CLI's own start-up)`);
  } finally {
    child.kill();
  }
});

test('invalid inputs each get a clear 4xx', async () => {
  const base = `${manager.url}/apis/longhorn.io/v1beta2/namespaces/${NS}/backingimages`;
  const post = (body: string, type = 'application/json', url = base) =>
    fetch(url, { method: 'POST', headers: { ...authFor(manager.url), 'content-type': type }, body });
  const good = (name: string, spec: string) =>
    `{"apiVersion":"longhorn.io/v1beta2","kind":"BackingImage","metadata":{"name":"${name}"},"spec":${spec}}`;
  const cases: [string, Promise<Response>, number, RegExp][] = [
    ['unknown kind', post('{}', 'application/json', `${manager.url}/apis/longhorn.io/v1beta2/namespaces/${NS}/frobnicators`), 404, /frobnicators/],
    ['bad name ../x', post(good('../x', '{"sourceType":"download","sourceParameters":{"url":"https://e.com/a"}}')), 422, /metadata\.name/],
    ['uppercase name', post(good('Upper', '{"sourceType":"download","sourceParameters":{"url":"https://e.com/a"}}')), 422, /metadata\.name/],
    ['wrong field type', post(good('t1', '{"sourceType":"download","sourceParameters":{"url":"https://e.com/a"},"minNumberOfCopies":"x"}')), 422, /spec\.minNumberOfCopies/],
    ['missing required field', post(good('t2', '{"sourceParameters":{}}')), 422, /spec\.sourceType/],
    ['malformed JSON', post('{"apiVersion": "longhorn.io/v1beta2",'), 400, /position|JSON/],
    ['malformed YAML', post('metadata:\n  name: [x\n', 'application/yaml'), 400, /line \d+/],
    ['oversized body', post(`{"x":"${'a'.repeat(4 * 1024 * 1024)}"}`), 413, /larger than/],
  ];
  for (const [what, resP, code, msg] of cases) {
    const res = await resP;
    const body = await res.json() as { kind: string; message: string };
    assert.equal(res.status, code, `${what}: ${body.message}`);
    assert.equal(body.kind, 'Status', what);
    assert.match(body.message, msg, what);
  }
  const cli = await stratum(manager.url, ['apply', '-f', '-'], 'kind: BackingImage\napiVersion: longhorn.io/v1beta2\nmetadata: {name: "x"\n');
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /^error: .*malformed YAML at line \d+/);
});

const legacy = process.env['KUBECTL_LEGACY'];
test('Debian\'s kubectl 1.20 (kubernetes-client) applies, gets, patches and deletes', { skip: legacy ? false : 'KUBECTL_LEGACY does not point at a kubectl 1.20 binary (.ci/run unpacks one)' }, async () => {
  const env = { ...process.env, KUBECONFIG: '/dev/null' };
  const k = (args: string[], input?: string) => run(legacy ?? 'kubectl', kubectlArgs(manager.url, args), { env, ...(input === undefined ? {} : { input }) });
  const version = await k(['version', '--client', '--short']);
  assert.match(version.stdout, /v1\.20\./);
  const seed = readFileSync(SEED, 'utf8').replaceAll('bi-test', 'old-test');
  const created = await k(['apply', '-f', '-'], seed);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stdout, /backingimage\.longhorn\.io\/old-test1 created/);
  const again = await k(['apply', '-f', '-'], seed);
  assert.match(again.stdout, /old-test1 unchanged/);
  const get = await k(['get', 'lhbi', '-n', NS]);
  assert.match(get.stdout, /^old-test1\s+[0-9a-f]{8}\s+download/m);
  const patch = await k(['patch', 'lhbi', 'old-test1', '-n', NS, '--type', 'merge', '-p', '{"spec":{"minNumberOfCopies":2}}']);
  assert.equal(patch.code, 0, patch.stderr);
  const del = await k(['delete', 'lhbi', 'old-test1', '-n', NS]);
  assert.equal(del.code, 0, del.stderr);
});
