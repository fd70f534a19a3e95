// Unit tests of the download URL policy.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { downloadUrlProblem } from './download-url.js';

test('only http and https URLs with a host are accepted', () => {
  assert.equal(downloadUrlProblem('https://example.com/a.qcow2', false), undefined);
  assert.match(downloadUrlProblem('ftp://example.com/a', false) ?? '', /only http and https/);
  assert.match(downloadUrlProblem('file:///etc/passwd', false) ?? '', /only http and https/);
  assert.match(downloadUrlProblem('not a url', false) ?? '', /not a valid URL/);
  assert.match(downloadUrlProblem('', false) ?? '', /required/);
});

test('loopback, link-local and private addresses need the setting, which the message names', () => {
  for (const url of ['http://127.0.0.1/x', 'http://localhost:8000/x', 'http://10.1.2.3/x', 'http://192.168.0.1/x',
    'http://172.20.0.1/x', 'http://169.254.169.254/latest', 'http://[::1]/x', 'http://[fe80::1]/x', 'http://[::ffff:127.0.0.1]/x']) {
    assert.match(downloadUrlProblem(url, false) ?? '', /allow-private-download-urls/, url);
    assert.equal(downloadUrlProblem(url, true), undefined, url);
  }
  assert.equal(downloadUrlProblem('http://172.32.0.1/x', false), undefined);
});
