// Unit tests of the auth package: token files and rotation, the role policy, Host/Origin checks, the data-plane
// HTTP hook, the TCP handshake proofs and kubeconfig files.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Fastify from 'fastify';
import {
  checkClusterAuthorization,
  clientProof,
  clusterAuthHeaders,
  ensureAuthFile,
  hostProblem,
  issueToken,
  isAuthError,
  nbdPsk,
  newNonce,
  newSecret,
  originProblem,
  readKubeconfig,
  refusal,
  requireClusterCredential,
  revokeToken,
  serverProof,
  TokenTable,
  verifyClientProof,
  verifyServerProof,
  writeKubeconfig,
  type ApiRequest,
  type Identity,
} from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'stratum-auth-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('tokens', () => {
  it('issues, authenticates, rotates and revokes tokens; only hashes are stored', async () => {
    const path = join(dir, 'auth.json');
    const f = ensureAuthFile(path);
    assert.match(f.clusterSecret, /^[0-9a-f]{64}$/);
    const admin = issueToken(path, { name: 'admin', role: 'admin' });
    const table = new TokenTable(path, { recheckMs: 0 });
    assert.deepEqual(table.authenticate(admin), { name: 'admin', role: 'admin' });
    assert.equal(table.authenticate(`${admin}x`), undefined);
    assert.equal(table.authenticate(''), undefined);
    assert.ok(!JSON.stringify(ensureAuthFile(path)).includes(admin), 'the plaintext token is not in auth.json');
    // rotation: a new token of the same name replaces the old one
    await new Promise((r) => setTimeout(r, 5));
    const rotated = issueToken(path, { name: 'admin', role: 'admin' });
    assert.equal(table.authenticate(admin), undefined);
    assert.equal(table.authenticate(rotated)?.role, 'admin');
    const node = issueToken(path, { name: 'node-1', role: 'node', node: 'node-1' });
    assert.deepEqual(table.authenticate(node), { name: 'node-1', role: 'node', node: 'node-1' });
    assert.equal(revokeToken(path, 'node-1'), true);
    assert.equal(table.authenticate(node), undefined);
    assert.equal(ensureAuthFile(path).clusterSecret, f.clusterSecret, 'the cluster secret survives token changes');
  });

  it('refuses a malformed auth.json with InvalidCredentialsFile', () => {
    const path = join(dir, 'bad.json');
    writeFileSync(path, '{"clusterSecret":"abc","tokens":[]}');
    assert.throws(() => new TokenTable(path), (e: unknown) => isAuthError(e, 'InvalidCredentialsFile'));
  });
});

describe('policy', () => {
  const ctx = {
    podNode: async (_ns: string, name: string) => (name === 'mine' ? 'node-1' : 'node-2'),
    volumeNode: async (_ns: string, name: string) => ({ free: '', mine: 'node-1', theirs: 'node-2' } as Record<string, string>)[name],
    isReadOnlySetting: (n: string) => n === 'ro',
  };
  const req = (method: string, path: string, body?: unknown): ApiRequest => {
    const u = new URL(path, 'http://x');
    return { method, segments: u.pathname.split('/').filter(Boolean), query: u.searchParams, ...(body === undefined ? {} : { body }) };
  };
  const admin: Identity = { name: 'admin', role: 'admin' };
  const view: Identity = { name: 'v', role: 'view' };
  const node: Identity = { name: 'node-1', role: 'node', node: 'node-1' };

  it('admin may do anything but write a read-only setting', async () => {
    assert.equal(await refusal(admin, req('DELETE', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/volumes/v'), ctx), undefined);
    assert.match((await refusal(admin, req('PATCH', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/settings/ro'), ctx)) ?? '', /read-only/);
    assert.match((await refusal(admin, req('PUT', '/v1/settings/ro'), ctx)) ?? '', /read-only/);
    assert.equal(await refusal(admin, req('PUT', '/v1/settings/rw'), ctx), undefined);
  });

  it('view reads but writes nothing, and reads no logs or image bytes', async () => {
    assert.equal(await refusal(view, req('GET', '/api/v1/namespaces/default/pods?watch=true'), ctx), undefined);
    assert.equal(await refusal(view, req('GET', '/v1/volumes'), ctx), undefined);
    for (const [m, p] of [['POST', '/v1/volumes/v?action=detach'], ['DELETE', '/api/v1/namespaces/default/pods/p'], ['PUT', '/v1/settings/rw']]) {
      assert.match((await refusal(view, req(m ?? '', p ?? ''), ctx)) ?? '', /only read/);
    }
    assert.match((await refusal(view, req('GET', '/api/v1/namespaces/default/pods/p/log'), ctx)) ?? '', /logs/);
    assert.match((await refusal(view, req('GET', '/v1/backingimages/b/download'), ctx)) ?? '', /image data/);
  });

  it('node acts only for its own node', async () => {
    const ok = async (m: string, p: string, body?: unknown) => assert.equal(await refusal(node, req(m, p, body), ctx), undefined, `${m} ${p}`);
    const no = async (m: string, p: string, body?: unknown) => assert.ok(await refusal(node, req(m, p, body), ctx), `${m} ${p} should be refused`);
    await ok('GET', '/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&watch=true');
    await no('GET', '/api/v1/pods');
    await no('GET', '/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-2');
    await ok('PUT', '/api/v1/namespaces/default/pods/mine/status');
    await no('PATCH', '/api/v1/namespaces/default/pods/theirs');
    await no('POST', '/api/v1/namespaces/default/pods', { metadata: { name: 'x' } });
    await ok('POST', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/nodes', { metadata: { name: 'node-1' } });
    await no('POST', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/nodes', { metadata: { name: 'node-2' } });
    await ok('PUT', '/apis/coordination.k8s.io/v1/namespaces/longhorn-system/leases/node-1');
    await no('PUT', '/apis/coordination.k8s.io/v1/namespaces/longhorn-system/leases/node-2');
    await no('GET', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/volumes');
    await no('POST', '/v1/volumes/v?action=detach');
    await no('GET', '/api/v1/namespaces/default/pods/mine/log');
    await ok('GET', '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/settings/x');
    await ok('GET', '/apis');
  });
});

describe('host and origin', () => {
  const p = { hostNames: ['stratum.example'], corsOrigins: ['https://ui.example'] };
  it('accepts IP literals, localhost and configured names; refuses other names (DNS rebinding)', () => {
    for (const h of ['127.0.0.1:9500', 'localhost:9500', '[::1]:9500', '10.0.0.5', 'STRATUM.example:9500']) assert.equal(hostProblem(h, p), undefined, h);
    for (const h of ['evil.example:9500', '', 'a b', '127.0.0.1:9500@evil', undefined]) assert.ok(hostProblem(h, p), String(h));
  });
  it('accepts same-origin and configured CORS origins only', () => {
    assert.equal(originProblem(undefined, '127.0.0.1:9500', p), undefined);
    assert.equal(originProblem('http://127.0.0.1:9500', '127.0.0.1:9500', p), undefined);
    assert.equal(originProblem('https://ui.example', '127.0.0.1:9500', p), undefined);
    assert.ok(originProblem('http://evil.example', '127.0.0.1:9500', p));
    assert.ok(originProblem('null', '127.0.0.1:9500', p));
    assert.ok(originProblem('http://127.0.0.1:8080', '127.0.0.1:9500', p));
  });
});

describe('data-plane credential', () => {
  const secret = newSecret();
  it('HTTP: requireClusterCredential answers 401 without the header, serves with it, keeps /healthz open', async () => {
    const app = Fastify();
    requireClusterCredential(app, { secret });
    app.get('/healthz', async () => 'ok');
    app.get('/v1/files', async () => ({ files: [] }));
    try {
      assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200);
      const no = await app.inject({ url: '/v1/files' });
      assert.equal(no.statusCode, 401);
      assert.equal((no.json() as { code: string }).code, 'Unauthorized');
      assert.equal((await app.inject({ url: '/v1/files', headers: clusterAuthHeaders(newSecret()) })).statusCode, 401);
      assert.equal((await app.inject({ url: '/v1/files', headers: { authorization: secret } })).statusCode, 401, 'the raw secret is not the token');
      assert.equal((await app.inject({ url: '/v1/files', headers: clusterAuthHeaders(secret) })).statusCode, 200);
      assert.equal((await app.inject({ url: '/nope', headers: clusterAuthHeaders(secret) })).statusCode, 404);
    } finally {
      await app.close();
    }
    assert.equal(checkClusterAuthorization(undefined, secret), false);
    assert.equal(checkClusterAuthorization(['a', 'b'], secret), false);
  });

  it('TCP handshake: both proofs verify with the secret, fail with another secret, another name or a replayed nonce', () => {
    const h = { purpose: 'replica', name: 'vol-r-1', serverNonce: newNonce(), clientNonce: newNonce() };
    const proof = clientProof(secret, h);
    verifyClientProof(secret, h, proof);
    verifyServerProof(secret, h, serverProof(secret, h));
    const fails = (fn: () => void) => assert.throws(fn, (e: unknown) => isAuthError(e, 'HandshakeFailed'));
    fails(() => verifyClientProof(newSecret(), h, proof));
    fails(() => verifyClientProof(secret, { ...h, name: 'vol-r-2' }, proof));
    fails(() => verifyClientProof(secret, { ...h, serverNonce: newNonce() }, proof));
    fails(() => verifyClientProof(secret, { ...h, purpose: 'engine' }, proof));
    fails(() => verifyClientProof(secret, h, proof.subarray(1)));
    fails(() => verifyServerProof(secret, h, proof));
  });

  it('NBD PSKs differ per export and per cluster', () => {
    assert.match(nbdPsk(secret, 'vol1'), /^[0-9a-f]{64}$/);
    assert.notEqual(nbdPsk(secret, 'vol1'), nbdPsk(secret, 'vol2'));
    assert.notEqual(nbdPsk(secret, 'vol1'), nbdPsk(newSecret(), 'vol1'));
  });
});

describe('kubeconfig', () => {
  it('round-trips server and token', () => {
    const path = join(dir, 'kubeconfig');
    writeKubeconfig(path, { server: 'http://127.0.0.1:9500', token: 'stratum-abc' });
    assert.deepEqual(readKubeconfig(path), { server: 'http://127.0.0.1:9500', token: 'stratum-abc' });
  });
});

describe('policy: a node and its pods\' volumes', () => {
  const ctx = {
    podNode: async () => 'node-1',
    volumeNode: async (_ns: string, name: string) => ({ free: '', mine: 'node-1', theirs: 'node-2' } as Record<string, string>)[name],
    isReadOnlySetting: () => false,
  };
  const node: Identity = { name: 'node-1', role: 'node', node: 'node-1' };
  const vol = '/apis/longhorn.io/v1beta2/namespaces/longhorn-system/volumes/';
  const patch = (name: string, body: unknown): ApiRequest => ({ method: 'PATCH', segments: `${vol}${name}`.split('/').filter(Boolean), query: new URLSearchParams(), body });

  it('reads a claim, a PV and a Volume by name, but lists none of them', async () => {
    const get = (p: string): ApiRequest => ({ method: 'GET', segments: p.split('/').filter(Boolean), query: new URLSearchParams() });
    assert.equal(await refusal(node, get('/api/v1/namespaces/default/persistentvolumeclaims/www-0'), ctx), undefined);
    assert.equal(await refusal(node, get('/api/v1/persistentvolumes/pv-1'), ctx), undefined);
    assert.equal(await refusal(node, get(`${vol}free`), ctx), undefined);
    assert.match((await refusal(node, get('/api/v1/namespaces/default/persistentvolumeclaims'), ctx)) ?? '', /may not read/);
  });

  it('attaches a Volume to itself and detaches it from itself, and nothing else', async () => {
    assert.equal(await refusal(node, patch('free', { spec: { nodeID: 'node-1' }, metadata: { resourceVersion: '7' } }), ctx), undefined);
    assert.equal(await refusal(node, patch('mine', { spec: { nodeID: '' } }), ctx), undefined);
    assert.match((await refusal(node, patch('theirs', { spec: { nodeID: '' } }), ctx)) ?? '', /only/);
    assert.match((await refusal(node, patch('free', { spec: { nodeID: 'node-2' } }), ctx)) ?? '', /own node/);
    assert.match((await refusal(node, patch('free', { spec: { nodeID: 'node-1', numberOfReplicas: 1 } }), ctx)) ?? '', /only set spec.nodeID/);
    assert.match((await refusal(node, patch('gone', { spec: { nodeID: 'node-1' } }), ctx)) ?? '', /does not exist/);
  });
});
