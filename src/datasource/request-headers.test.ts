// Header-file parsing: accepted lines, and errors that name the line but never echo a value.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isDataSourceError } from './errors.js';
import { parseHeaderText } from './request-headers.js';

test('Name: value lines are parsed; blank lines and comments are skipped; values keep inner colons', () => {
  const h = parseHeaderText('# token\n\nAuthorization: Bearer abc:def \r\nX-Trace-Id:42\n');
  assert.deepEqual(h, [
    ['Authorization', 'Bearer abc:def'],
    ['X-Trace-Id', '42'],
  ]);
});

test('a malformed line is refused by line number, without its value', () => {
  for (const [text, line, why] of [
    ['Authorization Bearer secret-1', 1, /is not "Name: value"/],
    ['ok: 1\nBad Name: secret-2', 2, /not a valid HTTP token/],
    ['Range: bytes=0-', 1, /"Range" is set by the downloader/],
    ['X: a\u0007secret-3', 1, /control characters/],
    ['Accept-Encoding: gzip', 1, /set by the downloader/],
  ] as const) {
    assert.throws(
      () => parseHeaderText(text, 'header file'),
      (err: unknown) => {
        assert.ok(isDataSourceError(err, 'InvalidArgument'));
        assert.match(err.message, new RegExp(`^header file line ${line}`));
        assert.match(err.message, why);
        assert.ok(!err.message.includes('secret'), err.message);
        return true;
      },
    );
  }
});
