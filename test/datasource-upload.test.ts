// End-to-end: `stratum data-source --source-type upload` as a real process; a real HTTP client uploads in chunks,
// is cut off mid-body, resumes from the offset the server reports, and overruns the declared size. The last chunk is
// answered once durable; verification follows (and is taken up again by a data source restarted meanwhile).

import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { dataPlaneAuth } from './helpers/credentials.js';
import { DataSourceProcess, sha512, testBytes } from './helpers/http-fixtures.js';
import { hasTool, run, tempDir, waitFor } from './helpers/processes.js';

const MiB = 1024 * 1024;
const dir = tempDir('datasource-upload');
const procs: DataSourceProcess[] = [];
let seq = 0;

after(async () => {
  for (const p of procs) await p.stop();
  dir.remove();
});

async function uploader(extra: string[] = []): Promise<DataSourceProcess & { workDir: string }> {
  const n = ++seq;
  const disk = join(dir.path, `disk-${n}`);
  const p = Object.assign(new DataSourceProcess(['--disk', disk, '--name', 'up', '--uuid', `u${n}`, '--source-type', 'upload', ...extra]), {
    workDir: join(disk, 'tmp', `up-u${n}`),
  });
  procs.push(p);
  return p.start();
}

async function declare(p: DataSourceProcess, size: number, checksum?: string): Promise<Response> {
  return fetch(`${p.url}/v1/upload?size=${size}${checksum ? `&checksum=${checksum}` : ''}`, { method: 'POST', headers: dataPlaneAuth() });
}

async function headOffset(p: DataSourceProcess): Promise<number> {
  const res = await fetch(`${p.url}/v1/upload`, { method: 'HEAD', headers: dataPlaneAuth() });
  assert.equal(res.status, 200);
  return Number(res.headers.get('upload-offset'));
}

async function put(p: DataSourceProcess, offset: number, body: Uint8Array): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${p.url}/v1/upload?offset=${offset}`, { method: 'PUT', body, headers: { ...dataPlaneAuth(), 'content-type': 'application/octet-stream' } });
  return { status: res.status, json: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

/** Starts a PUT of `total` bytes, sends `sent` of them, then drops the connection. */
async function cutPut(p: DataSourceProcess, total: Uint8Array, sent: number): Promise<void> {
  const req = httpRequest(`${p.url}/v1/upload?offset=0`, {
    method: 'PUT',
    headers: { ...dataPlaneAuth(), 'content-type': 'application/octet-stream', 'content-length': String(total.length) },
  });
  req.on('error', () => undefined);
  await new Promise<void>((r) => req.write(total.subarray(0, sent), () => r()));
  await new Promise((r) => setTimeout(r, 200));
  req.destroy();
}

async function sha512sum(path: string): Promise<string> {
  const r = await run('sha512sum', [path]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split(' ')[0] ?? '';
}

test('an upload cut at 50% resumes from the offset HEAD reports and completes with the right checksum', async () => {
  const data = testBytes(8 * MiB, 21);
  const p = await uploader();
  assert.equal((await p.file()).state, 'pending');
  const d = await declare(p, data.length, sha512(data));
  assert.equal(d.status, 200);
  assert.equal((await p.file()).state, 'starting');
  await cutPut(p, data, 4 * MiB);
  const offset = await waitFor('the cut chunk to be made durable', async () => {
    const o = await headOffset(p);
    return o > 0 ? o : undefined;
  });
  assert.ok(offset > 2 * MiB && offset <= 4 * MiB, `offset after the cut near 50%: ${offset}`);
  assert.equal((await p.file()).state, 'in-progress');
  const done = await put(p, offset, data.subarray(offset));
  assert.equal(done.status, 200, JSON.stringify(done.json));
  assert.equal(done.json.offset, data.length);
  // The last chunk is answered once durable; verification follows, and the state tells how it ended.
  assert.equal(done.json.state, 'in-progress');
  const f = await p.waitState(['ready-for-transfer', 'failed']);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  assert.equal(f.currentChecksum, sha512(data));
  assert.equal(f.expectedChecksum, sha512(data));
  assert.equal(await sha512sum(f.filePath as string), sha512(data));
});

test('an upload larger than declared is refused with 413, with or without Content-Length, and nothing is kept', async () => {
  const p = await uploader();
  assert.equal((await declare(p, MiB)).status, 200);
  const big = testBytes(MiB + 512, 22);
  const r = await put(p, 0, big);
  assert.equal(r.status, 413);
  assert.match(r.json.message as string, /^upload is larger than the declared size 1048576/);
  // A chunked body (no Content-Length) is caught while streaming and rolled back.
  const res = await fetch(`${p.url}/v1/upload?offset=0`, {
    method: 'PUT',
    headers: { ...dataPlaneAuth(), 'content-type': 'application/octet-stream' },
    body: new ReadableStream({
      start(c) {
        c.enqueue(big.subarray(0, 600 * 1024));
        c.enqueue(big.subarray(600 * 1024));
        c.close();
      },
    }),
    duplex: 'half',
  } as RequestInit);
  assert.equal(res.status, 413);
  assert.equal(((await res.json()) as { message: string }).message, 'upload is larger than the declared size 1048576');
  assert.equal(await headOffset(p), 0);
  const ok = await put(p, 0, big.subarray(0, MiB));
  assert.equal(ok.status, 200, JSON.stringify(ok.json));
  assert.equal((await p.waitState(['ready-for-transfer'])).currentChecksum, sha512(big.subarray(0, MiB)));
});

test('a PUT at a stale offset gets 409 with the current offset; PATCH with Upload-Offset continues', async () => {
  const data = testBytes(2 * MiB, 23);
  const p = await uploader();
  assert.equal((await declare(p, data.length)).status, 200);
  const first = await put(p, 0, data.subarray(0, MiB));
  assert.equal(first.status, 200);
  assert.equal(first.json.offset, MiB);
  const stale = await put(p, 0, data.subarray(0, MiB));
  assert.equal(stale.status, 409);
  assert.equal(stale.json.code, 'OffsetMismatch');
  assert.equal(stale.json.offset, MiB);
  assert.equal(stale.headers.get('upload-offset'), String(MiB));
  const patch = await fetch(`${p.url}/v1/upload`, {
    method: 'PATCH',
    headers: { ...dataPlaneAuth(), 'content-type': 'application/offset+octet-stream', 'upload-offset': String(MiB) },
    body: data.subarray(MiB),
  });
  assert.equal(patch.status, 200);
  const f = await p.waitState(['ready-for-transfer']);
  assert.equal(f.currentChecksum, sha512(data));
});

test('a restarted data source continues an upload: the prefix is re-hashed once, the rest hashed as it arrives', async () => {
  const data = testBytes(6 * MiB, 24);
  const p = await uploader(['--checksum', sha512(data)]);
  assert.equal((await declare(p, data.length)).status, 200);
  assert.equal((await put(p, 0, data.subarray(0, 3 * MiB))).status, 200);
  await p.stop();
  await p.start();
  assert.equal(await headOffset(p), 3 * MiB);
  const done = await put(p, 3 * MiB, data.subarray(3 * MiB));
  assert.equal(done.status, 200, JSON.stringify(done.json));
  const f = await p.waitState(['ready-for-transfer']);
  assert.equal(f.currentChecksum, sha512(data));
  assert.match(p.log, /re-hashing the 3145728 bytes uploaded before a restart/);
});

test('an upload with a wrong checksum fails naming both checksums, and the file is removed', async () => {
  const data = testBytes(MiB, 25);
  const wrong = sha512(Buffer.from('not it'));
  const p = await uploader();
  assert.equal((await declare(p, data.length, wrong)).status, 200);
  const r = await put(p, 0, data);
  assert.equal(r.status, 200, 'the bytes were taken; verification follows');
  const f = await p.waitState(['failed', 'ready-for-transfer']);
  assert.equal(f.state, 'failed');
  assert.equal(f.message, `expected sha512 ${wrong} but the file has ${sha512(data)}`);
  assert.equal(existsSync(join(p.workDir, 'backing')) || existsSync(join(p.workDir, 'backing.part')), false);
});

test('an upload that never begins fails when the begin timeout expires', async () => {
  const p = await uploader(['--begin-timeout', '0.5']);
  const f = await p.waitState(['failed'], 5000);
  assert.equal(f.message, 'timed out in state "pending" after 0.5 s: nothing started');
});

test('a data source stopped while it verifies a complete upload verifies it on its own when it comes back', { skip: hasTool('qemu-img') ? false : 'qemu-img is not installed' }, async () => {
  // A compressed qcow2: verification inflates every cluster, so it is still running when the process is stopped.
  const raw = join(dir.path, 'mixed.raw');
  const pattern = testBytes(64 * 1024, 26);
  writeFileSync(raw, Buffer.concat(Array.from({ length: 4096 }, (_, i) => Buffer.concat([pattern.subarray(i % 16), pattern.subarray(0, i % 16)]))));
  const qcow = join(dir.path, 'mixed.qcow2');
  const c = await run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, qcow]);
  assert.equal(c.code, 0, c.stderr);
  const data = readFileSync(qcow);
  const p = await uploader(['--checksum', sha512(data)]);
  assert.equal((await declare(p, data.length)).status, 200);
  const done = await put(p, 0, data);
  assert.equal(done.status, 200, JSON.stringify(done.json));
  assert.equal(done.json.state, 'in-progress', 'answered before verification ended');
  await p.stop('SIGKILL');
  await p.start();
  const f = await p.waitState(['ready-for-transfer', 'failed'], 60_000);
  assert.equal(f.state, 'ready-for-transfer', f.message);
  assert.equal(f.currentChecksum, sha512(data));
  assert.match(p.log, /re-hashing the \d+ bytes uploaded before a restart/, 'it found the bytes, not a verified file');
});
