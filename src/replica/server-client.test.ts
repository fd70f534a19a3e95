// Tests of ReplicaServer and ReplicaClient over real sockets (TCP and Unix): every operation end to end against a
// real store, pipelining with out-of-order completion, per-request timeouts with late answers dropped, remote
// errors with their status, a client that breaks the protocol, and graceful versus abrupt server shutdown.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReplicaClient } from './client.js';
import { isReplicaError, type ReplicaError } from './errors.js';
import { WireStatus } from './protocol.js';
import { ReplicaServer } from './server.js';
import { ReplicaStore } from './store.js';
import { FaultDevice, Rng } from './testing.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'stratum-replica-net-'));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const KiB = 1024;

async function fixture(): Promise<{ dir: string; store: ReplicaStore; backing: Uint8Array }> {
  const dir = await tempDir();
  const backing = new Rng(9).bytes(256 * KiB);
  await writeFile(join(dir, 'backing'), backing);
  const store = await ReplicaStore.create(join(dir, 'r'), { name: 'r-1', size: 512 * KiB, backing: { name: 'bi', uuid: 'u-1', path: '../backing' } });
  return { dir, store, backing };
}

for (const transport of ['tcp', 'unix'] as const) {
  test(`every operation round-trips over ${transport}`, async () => {
    const { dir, store, backing } = await fixture();
    const server = new ReplicaServer(store);
    const addr = await server.listen(transport === 'tcp' ? { port: 0 } : { path: join(dir, 'r.sock') });
    const client = await ReplicaClient.connect(addr, { timeoutMs: 5000 });
    try {
      await client.ping();
      const info = await client.info();
      assert.deepEqual(info, { name: 'r-1', size: 512 * KiB, blockSize: 4096, revision: 0, generation: 1, backing: { name: 'bi', uuid: 'u-1', format: 'raw', virtualSize: 256 * KiB } });
      assert.deepEqual(Buffer.from(await client.read(1000, 5000)), Buffer.from(backing.subarray(1000, 6000)));
      await client.write(4096 * 3 + 7, new Uint8Array([1, 2, 3]), { fua: true });
      await client.trim(8 * 4096, 2 * 4096);
      await client.writeZeroes(20 * 4096, 4096, { fua: false });
      await client.flush();
      const got = await client.read(4096 * 3, 4096);
      assert.deepEqual([...got.subarray(7, 10)], [1, 2, 3]);
      assert.deepEqual(Buffer.from(got.subarray(10)), Buffer.from(backing.subarray(4096 * 3 + 10, 4096 * 4)));
      assert.ok(Buffer.from(await client.read(8 * 4096, 2 * 4096)).equals(Buffer.alloc(2 * 4096)), 'trimmed blocks hide the backing image');
      const p1 = await client.listExtents(0, 2);
      assert.deepEqual(p1.extents, [{ offset: 3 * 4096, length: 4096, state: 'data' }, { offset: 8 * 4096, length: 2 * 4096, state: 'zero' }]);
      const p2 = await client.listExtents(p1.nextOffset!, 2);
      assert.deepEqual(p2, { extents: [{ offset: 20 * 4096, length: 4096, state: 'zero' }], nextOffset: undefined });
      const ext = await client.readExtent(2 * 4096, 8 * 4096);
      assert.deepEqual(ext.runs.map((r) => [r.length / 4096, r.state]), [[1, 0], [1, 1], [4, 0], [2, 2]]);
      assert.equal(ext.data.length, 4096);
      await assert.rejects(client.read(0, 33 * 1024 * 1024), (err) => isReplicaError(err, 'InvalidArgument'), 'refused locally, never sent');
      await client.ping(); // the connection survived
      await client.setRevision(1234);
      assert.equal((await client.info()).revision, 1234);
      const bad = await client.read(512 * KiB, 1).catch((e: unknown) => e as ReplicaError);
      assert.ok(isReplicaError(bad, 'Remote') && bad.status === WireStatus.EINVAL, String(bad));
    } finally {
      await client.close();
      await server.close();
      await store.close();
    }
    const again = await ReplicaStore.open(join(dir, 'r'));
    assert.equal(again.info().revision, 1234, 'a set revision is made durable by the flush at close');
    await again.close();
  });
}

test('requests are pipelined and answered out of order; a timed-out request does not block the others', async () => {
  const { store } = await fixture();
  const device = new FaultDevice(store);
  device.delayMs = (op, offset) => (op === 'read' && offset === 0 ? 400 : 0);
  const server = new ReplicaServer(device);
  const addr = await server.listen({ port: 0 });
  const client = await ReplicaClient.connect(addr, { timeoutMs: 200 });
  try {
    const order: string[] = [];
    const slow = client.read(0, 4096).then(
      () => order.push('slow'),
      (err: unknown) => order.push(isReplicaError(err, 'Timeout') ? 'slow timed out' : String(err)),
    );
    const fast = Array.from({ length: 20 }, (_, i) => client.read(4096 * (i + 1), 4096).then(() => order.push('fast')));
    await Promise.all([slow, ...fast]);
    assert.equal(order.indexOf('slow timed out'), 20, `order: ${order.join(',')}`);
    await new Promise((r) => setTimeout(r, 300)); // the late answer arrives and is dropped
    assert.equal(client.inFlight, 0);
    await client.ping({ timeoutMs: 1000 }); // still usable
  } finally {
    client.destroy();
    await server.close();
    await store.close();
  }
});

test('a client that breaks the protocol is dropped and reported with the offset', async () => {
  const { store } = await fixture();
  const errors: Error[] = [];
  const server = new ReplicaServer(store, { onError: (e) => errors.push(e) });
  const addr = await server.listen({ port: 0 });
  const client = await ReplicaClient.connect(addr);
  await client.ping();
  const raw = net.connect(addr as { port: number });
  await new Promise((r) => raw.once('connect', r));
  raw.write(Buffer.alloc(32, 0x41));
  await new Promise((r) => raw.once('close', r));
  const err = errors.find((e) => isReplicaError(e, 'Protocol'));
  assert.ok(err && isReplicaError(err) && err.offset === 0, String(err));
  await client.ping(); // other connections are unaffected
  client.destroy();
  await server.close();
  await store.close();
});

test('close answers requests in flight; destroy fails them with ConnectionClosed', async () => {
  const { store } = await fixture();
  const device = new FaultDevice(store);
  const server = new ReplicaServer(device);
  const addr = await server.listen({ port: 0 });
  const client = await ReplicaClient.connect(addr);
  const release = device.hold();
  const held = client.write(0, new Uint8Array(4096).fill(7));
  await new Promise((r) => setTimeout(r, 50));
  const closing = server.close();
  release();
  await held; // answered before the connection closed
  await closing;
  await client.closed;
  await assert.rejects(client.ping(), (err) => isReplicaError(err, 'ConnectionClosed'));
  await assert.rejects(ReplicaClient.connect(addr, { connectTimeoutMs: 1000 }), (err) => isReplicaError(err, 'ConnectionClosed'));

  const server2 = new ReplicaServer(device);
  const addr2 = await server2.listen({ port: 0 });
  const client2 = await ReplicaClient.connect(addr2);
  const release2 = device.hold();
  const stuck = client2.read(0, 4096);
  await new Promise((r) => setTimeout(r, 50));
  await Promise.all([server2.destroy(), assert.rejects(stuck, (err) => isReplicaError(err, 'ConnectionClosed'))]);
  release2();
  await store.close();
});

test('a listener with the cluster secret: OPEN with the credential gets in; none, a wrong one, or a mismatch on either side does not', async () => {
  const { store } = await fixture();
  const secret = 'ab'.repeat(32);
  const errors: Error[] = [];
  const server = new ReplicaServer(store, { clusterSecret: secret, onError: (e) => errors.push(e) });
  const addr = await server.listen({ port: 0 });
  const plain = new ReplicaServer(store);
  const plainAddr = await plain.listen({ port: 0 });
  try {
    const client = await ReplicaClient.connect(addr, { name: 'r-1', clusterSecret: secret, timeoutMs: 5000 });
    assert.equal((await client.info()).name, 'r-1');
    await client.close();
    // No credential: the server closes the connection at OPEN.
    await assert.rejects(ReplicaClient.connect(addr, { name: 'r-1', timeoutMs: 5000 }), (e: ReplicaError) => isReplicaError(e, 'ConnectionClosed'));
    await assert.rejects(ReplicaClient.connect(addr, { name: 'r-1', clusterSecret: 'cd'.repeat(32), timeoutMs: 5000 }), (e: ReplicaError) => isReplicaError(e, 'ConnectionClosed'));
    assert.ok(errors.some((e) => isReplicaError(e, 'Unauthenticated') && /without a credential/.test(e.message)), errors.map((e) => e.message).join('; '));
    assert.ok(errors.some((e) => isReplicaError(e, 'Unauthenticated') && /wrong credential/.test(e.message)), errors.map((e) => e.message).join('; '));
    // A client with a secret against a listener without one: no greeting, so no credential is ever sent.
    await assert.rejects(ReplicaClient.connect(plainAddr, { name: 'r-1', clusterSecret: secret, connectTimeoutMs: 300 }), (e: ReplicaError) => isReplicaError(e, 'Timeout') && /greeting/.test(e.message));
    // The listener keeps serving the cluster.
    const again = await ReplicaClient.connect(addr, { name: 'r-1', clusterSecret: secret, timeoutMs: 5000 });
    await again.ping();
    await again.close();
  } finally {
    await server.close();
    await plain.close();
    await store.close();
  }
});
