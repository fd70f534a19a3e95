// URL validation, path-part checks and redaction of what the API shows.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isDataSourceError } from './errors.js';
import { normaliseChecksum, parseParameters, redactParameters, redactUrl, validatePathPart, validateSourceUrl } from './source-url.js';

test('http and https URLs are accepted; other schemes, relative and missing URLs are refused clearly', () => {
  assert.equal(validateSourceUrl(' https://example.com/a.qcow2 ').href, 'https://example.com/a.qcow2');
  assert.equal(validateSourceUrl('http://10.0.0.1:8080/x').port, '8080');
  const cases: [string | undefined, RegExp][] = [
    ['ftp://example.com/x', /must be http or https, not "ftp" \(ftp:\/\/example\.com\/x\)/],
    ['file:///etc/passwd', /not "file"/],
    ['s3://bucket/key', /not "s3"/],
    ['/relative/path', /is not a valid absolute URL/],
    ['', /needs the parameter "url"/],
    [undefined, /needs the parameter "url"/],
  ];
  for (const [raw, msg] of cases) {
    assert.throws(() => validateSourceUrl(raw), (err: unknown) => isDataSourceError(err, 'InvalidArgument') && msg.test(err.message));
  }
});

test('a refused URL does not echo its password', () => {
  assert.throws(() => validateSourceUrl('ftp://user:hunter2@example.com/x'), (err: unknown) => {
    assert.ok(isDataSourceError(err));
    assert.ok(!err.message.includes('hunter2'), err.message);
    return true;
  });
});

test('redaction hides passwords, signatures and secret-looking parameters', () => {
  assert.equal(redactUrl('https://u:p4ss@h.example/x?a=1'), 'https://u:xxxxx@h.example/x?a=1');
  const signed = redactUrl('https://b.s3.example/k?X-Amz-Signature=abc&X-Amz-Date=1&token=t');
  assert.ok(!signed.includes('abc') && !signed.includes('=t'), signed);
  assert.match(signed, /X-Amz-Date=1/);
  assert.deepEqual(redactParameters({ url: 'http://a:b@h/x', 'access-token': 'x', 'file-type': 'raw' }), {
    url: 'http://a:xxxxx@h/x',
    'access-token': '[redacted]',
    'file-type': 'raw',
  });
});

test('names and uuids cannot leave the tmp directory', () => {
  assert.equal(validatePathPart('name', 'bi-1'), 'bi-1');
  for (const bad of ['', 'a/b', 'a\\b', '..', 'x..y', 'a\0b']) {
    assert.throws(() => validatePathPart('name', bad), (err: unknown) => isDataSourceError(err, 'InvalidArgument'));
  }
});

test('k=v parameters split at the first "="; checksums are normalised and checked', () => {
  assert.deepEqual(parseParameters(['url=http://h/x?a=b', 'k=']), { url: 'http://h/x?a=b', k: '' });
  assert.throws(() => parseParameters(['novalue']), /expects key=value/);
  const sum = 'A'.repeat(128);
  assert.equal(normaliseChecksum('--checksum', ` ${sum} `), 'a'.repeat(128));
  assert.equal(normaliseChecksum('--checksum', ''), undefined);
  assert.throws(() => normaliseChecksum('--checksum', 'abc'), /128 hex digits, got 3 characters/);
});
