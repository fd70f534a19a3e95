// Unit tests of log reading: tailLines from the end in chunks, and following appended output.

import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { logStream, tailOffset } from './logs.js';

const root = mkdtempSync(join(tmpdir(), 'stratum-logs-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function text(stream: NodeJS.ReadableStream): Promise<string> {
  let s = '';
  for await (const c of stream) s += c.toString();
  return s;
}

test('tailOffset: last N lines, with and without a trailing newline, across chunk boundaries', async () => {
  const f = join(root, 'a.log');
  const lines = Array.from({ length: 30_000 }, (_, i) => `line ${i}`);
  writeFileSync(f, `${lines.join('\n')}\n`);
  const fh = await open(f);
  const size = (await fh.stat()).size;
  const at = await tailOffset(fh, size, 3);
  const buf = Buffer.alloc(size - at);
  await fh.read(buf, 0, buf.length, at);
  assert.equal(buf.toString(), 'line 29997\nline 29998\nline 29999\n');
  assert.equal(await tailOffset(fh, size, 100_000), 0);
  assert.equal(await tailOffset(fh, size, 0), size);
  await fh.close();
  const g = join(root, 'b.log');
  writeFileSync(g, 'a\nb\nc');
  const gh = await open(g);
  assert.equal(await tailOffset(gh, 5, 1), 4);
  await gh.close();
});

test('follow streams appended output and ends once the writer has ended', async () => {
  const f = join(root, 'follow.log');
  writeFileSync(f, 'one\n');
  let ended = false;
  const out = text(logStream({ file: f, ended: () => ended }, { follow: true, signal: AbortSignal.timeout(10_000), pollMs: 20 }));
  await new Promise((r) => setTimeout(r, 100));
  appendFileSync(f, 'two\n');
  await new Promise((r) => setTimeout(r, 100));
  appendFileSync(f, 'three\n');
  ended = true;
  assert.equal(await out, 'one\ntwo\nthree\n');
  assert.equal(await text(logStream({ file: join(root, 'none.log'), ended: () => true }, { follow: false, signal: AbortSignal.timeout(1000) })), '');
});
