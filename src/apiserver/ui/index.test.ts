import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Fastify from 'fastify';
import { isUiAssetPath, registerUiRoutes } from './index.js';

/** A built UI at <tmp>/build, so <tmp>/secret.txt sits just outside it. */
function builtUi(): { dir: string; remove(): void } {
  const top = mkdtempSync(join(tmpdir(), 'stratum-ui-static-'));
  const dir = join(top, 'build');
  mkdirSync(join(dir, 'assets'), { recursive: true });
  writeFileSync(join(top, 'secret.txt'), 'no');
  writeFileSync(join(dir, 'index.html'), '<!doctype html><div id="root"></div>');
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
    const js = await app.inject({ url: '/assets/index-abc123.js' });
    assert.equal(js.statusCode, 200);
    assert.match(js.headers['content-type'] as string, /^text\/javascript/);
    assert.match(js.headers['cache-control'] as string, /immutable/);
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
    for (const url of ['/assets/../../secret.txt', '/assets/%2e%2e/%2e%2e/secret.txt', '/assets/nope.js']) {
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
  for (const p of ['/', '/index.html', '/assets/index-1.js', '/favicon.svg']) assert.ok(isUiAssetPath(p), p);
  for (const p of ['/api', '/apis/longhorn.io/v1beta2', '/v1/backingimages', '/openapi/v3', '/version', '/healthz', '/metrics']) {
    assert.ok(!isUiAssetPath(p), p);
  }
});
