import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Fastify from 'fastify';
import { issueToken, TokenTable } from '../../auth/index.js';
import { installApiGuard } from '../guard.js';
import { isUiAssetPath, registerUiRoutes } from './index.js';

/** A built UI at <tmp>/build, so <tmp>/secret.txt sits just outside it. */
function builtUi(): { dir: string; remove(): void } {
  const top = mkdtempSync(join(tmpdir(), 'stratum-ui-static-'));
  const dir = join(top, 'build');
  mkdirSync(join(dir, 'assets'), { recursive: true });
  writeFileSync(join(top, 'secret.txt'), 'no');
  writeFileSync(join(dir, 'index.html'), '<!doctype html><div id="root"></div>');
  writeFileSync(join(dir, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
  writeFileSync(join(dir, 'assets', 'index-abc123.js'), 'console.log(1)');
  return { dir, remove: () => rmSync(top, { recursive: true, force: true }) };
}

test('serves index.html at / (revalidated) and hashed assets (cached for good), with their types', async () => {
  const ui = builtUi();
  const app = Fastify();
  registerUiRoutes(app, { dir: ui.dir });
  try {
    const index = await app.inject({ url: '/' });
    assert.equal(index.statusCode, 200);
    assert.match(index.headers['content-type'] as string, /^text\/html/);
    assert.equal(index.headers['cache-control'], 'no-cache');
    assert.match(index.body, /id="root"/);
    const js = await app.inject({ url: '/ui/assets/index-abc123.js' });
    assert.equal(js.statusCode, 200);
    assert.match(js.headers['content-type'] as string, /^text\/javascript/);
    assert.match(js.headers['cache-control'] as string, /immutable/);
    const icon = await app.inject({ url: '/ui/favicon.svg' });
    assert.equal(icon.statusCode, 200);
    assert.equal(icon.headers['cache-control'], 'no-cache');
  } finally {
    await app.close();
    ui.remove();
  }
});

test('never serves a file outside the build folder, and names the missing build', async () => {
  const ui = builtUi();
  const app = Fastify();
  registerUiRoutes(app, { dir: ui.dir });
  try {
    for (const url of ['/ui/../secret.txt', '/ui/assets/../../secret.txt', '/ui/%2e%2e/secret.txt', '/ui/assets/%2e%2e/%2e%2e/secret.txt',
      '/ui/assets/nope.js', '/ui/assets', '/ui/', '/index.html', '/assets/index-abc123.js']) {
      const res = await app.inject({ url });
      assert.equal(res.statusCode, 404, url);
      assert.doesNotMatch(res.body, /^no$/);
    }
  } finally {
    await app.close();
    ui.remove();
  }
  const empty = Fastify();
  registerUiRoutes(empty, { dir: join(tmpdir(), 'stratum-ui-not-built') });
  const res = await empty.inject({ url: '/' });
  assert.equal(res.statusCode, 404);
  assert.match(res.body, /npm run build/);
  await empty.close();
});

test('the UI paths are only the static ones: every API path stays with the API', () => {
  for (const p of ['/', '/ui/assets/index-1.js', '/ui/favicon.svg']) assert.ok(isUiAssetPath(p), p);
  for (const p of ['/api', '/apis/longhorn.io/v1beta2', '/v1/backingimages', '/openapi/v3', '/version', '/healthz', '/metrics', '/assets/x.js']) {
    assert.ok(!isUiAssetPath(p), p);
  }
});

test('behind the API guard the page loads without a token; the API next to it does not', async () => {
  const ui = builtUi();
  const authFile = join(ui.dir, '..', 'auth.json');
  const token = issueToken(authFile, { name: 'admin', role: 'admin' });
  const app = Fastify();
  installApiGuard(app, {
    tokens: new TokenTable(authFile),
    origins: { hostNames: [], corsOrigins: [] },
    policy: { podNode: async () => undefined, volumeNode: async () => undefined, isReadOnlySetting: () => false },
  });
  registerUiRoutes(app, { dir: ui.dir });
  app.get('/v1/settings', async () => ({ data: [] }));
  const host = { host: '127.0.0.1:9500' };
  try {
    for (const url of ['/', '/ui/assets/index-abc123.js', '/ui/favicon.svg']) {
      const res = await app.inject({ url, headers: host });
      assert.equal(res.statusCode, 200, `${url}: ${res.body}`);
    }
    assert.equal((await app.inject({ url: '/v1/settings', headers: host })).statusCode, 401);
    // The page's own calls: same origin, with the token.
    const own = await app.inject({ url: '/v1/settings', headers: { ...host, origin: 'http://127.0.0.1:9500', authorization: `Bearer ${token}` } });
    assert.equal(own.statusCode, 200, own.body);
    // Another site's page cannot even load the UI through a rebinding name.
    assert.equal((await app.inject({ url: '/', headers: { host: 'evil.example:9500' } })).statusCode, 403);
  } finally {
    await app.close();
    ui.remove();
  }
});
