// Range/resume decisions: what to ask for, and what each answer means for the file and its hash.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffMs, judgeResponse, parseContentRange, resumeHeaders, validatorOf, type SourceValidator } from './resume.js';

const v: SourceValidator = { etag: '"abc"', lastModified: 'Tue, 01 Jul 2025 10:00:00 GMT', totalSize: 1000, acceptRanges: true };

test('a resume asks for the rest with If-Range on the strong ETag, else on Last-Modified', () => {
  assert.equal(resumeHeaders(0, v), undefined);
  assert.deepEqual(resumeHeaders(400, v), { range: 'bytes=400-', 'if-range': '"abc"' });
  assert.deepEqual(resumeHeaders(400, { ...v, etag: 'W/"weak"' }), { range: 'bytes=400-', 'if-range': v.lastModified });
  assert.deepEqual(resumeHeaders(400, { acceptRanges: true }), { range: 'bytes=400-' });
  assert.equal(resumeHeaders(400, { ...v, acceptRanges: false }), undefined, 'no Accept-Ranges: start over');
  assert.equal(resumeHeaders(400, undefined), undefined);
});

test('the validator of a 200 answer', () => {
  assert.deepEqual(validatorOf({ 'accept-ranges': 'bytes', etag: '"e"', 'content-length': '42' }), { acceptRanges: true, etag: '"e"', totalSize: 42 });
  assert.deepEqual(validatorOf({ 'accept-ranges': 'none' }), { acceptRanges: false });
});

test('Content-Range parsing refuses anything inconsistent', () => {
  assert.deepEqual(parseContentRange('bytes 400-999/1000'), { start: 400, end: 999, total: 1000 });
  assert.deepEqual(parseContentRange('bytes 0-9/*'), { start: 0, end: 9, total: undefined });
  for (const bad of [undefined, '', 'bytes 9-0/10', 'bytes 0-10/10', 'items 0-1/2', 'bytes */1000']) assert.equal(parseContentRange(bad), undefined, String(bad));
});

test('a 206 that continues where we are appends; any other 206 restarts from 0', () => {
  assert.deepEqual(judgeResponse(400, 206, { 'content-range': 'bytes 400-999/1000', etag: '"abc"' }, v), { action: 'append', totalSize: 1000 });
  assert.equal(judgeResponse(400, 206, { 'content-range': 'bytes 300-999/1000' }, v).action, 'restart');
  assert.equal(judgeResponse(400, 206, { 'content-range': 'bytes 400-1999/2000' }, v).action, 'restart', 'size changed');
  assert.equal(judgeResponse(400, 206, { 'content-range': 'bytes 400-999/1000', etag: '"other"' }, v).action, 'restart', 'ETag changed');
  assert.equal(judgeResponse(400, 206, {}, v).action, 'restart', 'no Content-Range');
});

test('a 200 to a range request means the whole file again: from zero, with the new validator', () => {
  const d = judgeResponse(400, 200, { 'content-length': '1000', etag: '"new"', 'accept-ranges': 'bytes' }, v);
  assert.equal(d.action, 'from-zero');
  assert.ok(d.action === 'from-zero' && d.validator.etag === '"new"' && /instead of the bytes from 400/.test(d.reason ?? ''));
  const first = judgeResponse(0, 200, { 'content-length': '5' }, undefined);
  assert.ok(first.action === 'from-zero' && first.reason === undefined);
});

test('416 restarts, 5xx/408/429 retry, other statuses fail', () => {
  assert.equal(judgeResponse(400, 416, {}, v).action, 'restart');
  for (const s of [500, 502, 503, 408, 429]) assert.equal(judgeResponse(0, s, {}, v).action, 'retry', String(s));
  for (const s of [400, 401, 403, 404, 410]) assert.equal(judgeResponse(0, s, {}, v).action, 'fail', String(s));
});

test('backoff doubles from the base and is capped', () => {
  assert.deepEqual([0, 1, 2, 3, 4].map((n) => backoffMs(n, 1000)), [0, 1000, 2000, 4000, 8000]);
  assert.equal(backoffMs(20, 1000), 30_000);
  assert.equal(backoffMs(200, 1000, 5000), 5000);
});
