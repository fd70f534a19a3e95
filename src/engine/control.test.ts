// Tests of the engine's control API over HTTP with in-process replicas: status, adding a replica (rebuilt in the
// background to RW), removing one, and errors as {code, message} with the mapped HTTP status. Also the address
// parser the API and runEngine share.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { ControlServer, parseEndpoint } from './control.js';
import { Engine } from './engine.js';
import { isEngineError } from './errors.js';
import type { EngineStatus } from './types.js';
import { Fixture, testSeed } from './testing.js';

const fixtures: Fixture[] = [];
after(async () => {
  for (const f of fixtures) await f.cleanup();
});

test('parseEndpoint reads host:port, [v6]:port and unix paths, and refuses the rest', () => {
  assert.deepEqual(parseEndpoint('10.0.0.5:9502'), { host: '10.0.0.5', port: 9502 });
  assert.deepEqual(parseEndpoint('[::1]:80'), { host: '::1', port: 80 });
  assert.deepEqual(parseEndpoint('unix:/run/r.sock'), { path: '/run/r.sock' });
  assert.deepEqual(parseEndpoint('/run/r.sock'), { path: '/run/r.sock' });
  for (const bad of ['host', 'host:0', 'host:70000', ':80', '']) assert.throws(() => parseEndpoint(bad), (err) => isEngineError(err, 'InvalidArgument'), bad);
});

test('control API: status, add (rebuilt to RW), remove, and errors with codes', async () => {
  const fx = await Fixture.create(4 * 1024 * 1024, 1024 * 1024, testSeed());
  fixtures.push(fx);
  const r1 = await fx.replica('r1');
  const engine = await Engine.start({ volume: 'vol', replicas: [{ name: 'r1', backend: await r1.connect() }], pingIntervalMs: 0 });
  await engine.write(4096, new Uint8Array(8192).fill(3), { fua: true });
  const control = new ControlServer(engine);
  const addr = await control.listen({ port: 0 });
  const base = `http://127.0.0.1:${'port' in addr ? addr.port : 0}/v1/engine`;
  try {
    const get = async (): Promise<EngineStatus> => (await (await fetch(base)).json()) as EngineStatus;
    assert.equal((await get()).state, 'healthy');
    const r2 = await fx.replica('r2');
    const add = await fetch(`${base}/replicas`, { method: 'POST', body: JSON.stringify({ name: 'r2', address: `127.0.0.1:${r2.port}` }) });
    assert.equal(add.status, 202);
    let s = await get();
    for (let i = 0; i < 100 && s.rebuild?.state !== 'complete'; i++) {
      await new Promise((r) => setTimeout(r, 20));
      s = await get();
    }
    assert.deepEqual(s.replicas.map((r) => [r.name, r.mode]), [['r1', 'RW'], ['r2', 'RW']]);
    assert.equal(s.rebuild?.bytesCopied, 8192);

    const dup = await fetch(`${base}/replicas`, { method: 'POST', body: JSON.stringify({ name: 'r2', address: `127.0.0.1:${r2.port}` }) });
    assert.equal(dup.status, 409);
    assert.equal(((await dup.json()) as { code: string }).code, 'ReplicaExists');
    const bad = await fetch(`${base}/replicas`, { method: 'POST', body: '{"name": 1}' });
    assert.equal(bad.status, 400);
    const unknown = await fetch(`${base}/replicas/nope`, { method: 'DELETE' });
    assert.equal(unknown.status, 404);
    const del = await fetch(`${base}/replicas/r1`, { method: 'DELETE' });
    assert.equal(del.status, 200);
    const last = await fetch(`${base}/replicas/r2`, { method: 'DELETE' });
    assert.equal(last.status, 409, 'the last RW replica cannot be removed');
    assert.equal((await fetch(`${base}/nothing`)).status, 404);
  } finally {
    await control.close();
    await engine.close();
  }
});

test('control API watch: the status now, then a line after a change, ended by close()', async () => {
  const fx = await Fixture.create(4 * 1024 * 1024, 1024 * 1024, testSeed());
  fixtures.push(fx);
  const r1 = await fx.replica('r1');
  const hooks: { control?: ControlServer } = {};
  const engine = await Engine.start({ volume: 'vol', replicas: [{ name: 'r1', backend: await r1.connect() }], pingIntervalMs: 0, onChange: () => hooks.control?.changed() });
  const control = (hooks.control = new ControlServer(engine));
  const addr = await control.listen({ port: 0 });
  const base = `http://127.0.0.1:${'port' in addr ? addr.port : 0}/v1/engine`;
  const lines: { type: string; status?: EngineStatus }[] = [];
  const res = await fetch(`${base}?watch=true`);
  assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
  const reading = (async () => {
    let buf = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += Buffer.from(chunk).toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        lines.push(JSON.parse(buf.slice(0, nl)) as { type: string; status?: EngineStatus });
        buf = buf.slice(nl + 1);
      }
    }
  })();
  try {
    const r2 = await fx.replica('r2');
    await fetch(`${base}/replicas`, { method: 'POST', body: JSON.stringify({ name: 'r2', address: `127.0.0.1:${r2.port}` }) });
    for (let i = 0; i < 200 && !lines.some((l) => l.status?.replicas.some((r) => r.name === 'r2' && r.mode === 'RW')); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(lines[0]?.type, 'SNAPSHOT');
    assert.deepEqual(lines[0]?.status?.replicas.map((r) => r.name), ['r1']);
    assert.ok(lines.some((l) => l.type === 'MODIFIED' && l.status?.replicas.some((r) => r.name === 'r2' && r.mode === 'RW')), JSON.stringify(lines.map((l) => l.type)));
  } finally {
    await control.close();
    await reading;
    await engine.close();
  }
});
