// `stratum bi download` against an HTTP server that plays the /v1 API's two routes: the first download response is
// cut midway (as when the manager serving it restarts or its backing-image manager is retired by an upgrade), the
// next is asked for the rest with a Range and gets it. The file that results is the image, holes included, and
// answers that say the request is wrong are not retried.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { tempDir } from '../../../test/helpers/processes.js';
import { downloadImage } from './backing-image.js';

const MiB = 1024 * 1024;
// 8 MiB: data, 4 MiB of zeros, data; the first response stops after 5 MiB, inside the zeros.
const image = Buffer.concat([randomBytes(2 * MiB), Buffer.alloc(4 * MiB), randomBytes(2 * MiB)]);
const sha512 = createHash('sha512').update(image).digest('hex');
const dir = tempDir('bi-download');
const ranges: (string | undefined)[] = [];
let cutAfter = 5 * MiB;
let missing = false;

const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  if (req.url === '/v1/backingimages/img') {
    return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'img', currentChecksum: sha512, size: image.length }));
  }
  if (req.url !== '/v1/backingimages/img/download') return res.writeHead(404).end();
  if (missing) return res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ message: 'backing image img not found', reason: 'NotFound' }));
  ranges.push(req.headers.range);
  const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
  const body = image.subarray(from);
  res.writeHead(from > 0 ? 206 : 200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
  if (cutAfter > 0 && from + body.length > cutAfter) {
    res.write(body.subarray(0, cutAfter - from), () => res.destroy());
    cutAfter = 0;
    return;
  }
  res.end(body);
});
let url = '';

before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  dir.remove();
});

test('a download cut midway resumes by itself from the bytes on disk, keeps holes, and checks the SHA-512', async () => {
  const out = join(dir.path, 'img.raw');
  const lines: string[] = [];
  await downloadImage(url, 'img', out, { retryDelayMs: 10, log: (l) => lines.push(l) });
  assert.ok(readFileSync(out).equals(image), 'the file is the image');
  assert.equal(ranges[0], undefined);
  assert.match(ranges[1] ?? '', /^bytes=\d+-$/, `the second request resumes with a Range: ${ranges.join(', ')}`);
  const resumedAt = Number(/\d+/.exec(ranges[1] ?? '')?.[0]);
  assert.ok(resumedAt > 0 && resumedAt <= 5 * MiB, `resumed at ${resumedAt}`);
  assert.equal(lines.length, 1);
  assert.match(lines[0] ?? '', /connection closed after .* resuming from the bytes in .*img\.raw\.part .*try 2 of 6/);
  assert.ok(statSync(out).blocks * 512 <= 4 * MiB + 256 * 1024, `the zeros stay holes: ${statSync(out).blocks * 512} bytes allocated`);
});

test('an answer that says the request is wrong is not retried', async () => {
  missing = true;
  try {
    await assert.rejects(downloadImage(url, 'img', join(dir.path, 'other.raw'), { retryDelayMs: 10, log: () => assert.fail('no retry') }), /backing image img not found/);
  } finally {
    missing = false;
  }
});
