// Proxy choice from the environment: which variable applies, and how no_proxy entries match.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bypassesProxy, proxyAuthorization, proxyFor } from './proxy.js';

test('http_proxy applies to http, https_proxy to https; lower case wins, upper case is the fallback', () => {
  const env = { http_proxy: 'http://p1:3128', HTTPS_PROXY: 'p2:8080' };
  assert.equal(proxyFor(new URL('http://h/x'), env)?.href, 'http://p1:3128/');
  assert.equal(proxyFor(new URL('https://h/x'), env)?.href, 'http://p2:8080/');
  assert.equal(proxyFor(new URL('http://h/x'), { HTTP_PROXY: 'http://up:1', http_proxy: 'http://low:2' })?.host, 'low:2');
  assert.equal(proxyFor(new URL('https://h/x'), { http_proxy: 'http://p1:3128' }), undefined);
  assert.equal(proxyFor(new URL('http://h/x'), {}), undefined);
  assert.throws(() => proxyFor(new URL('http://h/x'), { http_proxy: 'socks5://p:1080' }), /only http:\/\/ proxies/);
});

test('no_proxy matches hosts, domain suffixes, ports, IPv6 literals and *', () => {
  const u = (s: string): URL => new URL(s);
  assert.equal(bypassesProxy(u('http://a.example.com/'), 'example.com'), true);
  assert.equal(bypassesProxy(u('http://example.com/'), '.example.com'), true);
  assert.equal(bypassesProxy(u('http://a.example.com/'), '*.example.com'), true);
  assert.equal(bypassesProxy(u('http://badexample.com/'), 'example.com'), false);
  assert.equal(bypassesProxy(u('http://h:8080/'), 'h:8080'), true);
  assert.equal(bypassesProxy(u('http://h:8081/'), 'h:8080'), false);
  assert.equal(bypassesProxy(u('http://h/'), 'h:80'), true);
  assert.equal(bypassesProxy(u('http://[::1]:9000/'), '[::1]'), true);
  assert.equal(bypassesProxy(u('http://[::1]:9000/'), '::1'), true);
  assert.equal(bypassesProxy(u('http://10.1.2.3/'), 'localhost, 10.1.2.3'), true);
  assert.equal(bypassesProxy(u('http://anything/'), '*'), true);
  assert.equal(bypassesProxy(u('http://h/'), undefined), false);
  assert.equal(proxyFor(u('http://10.1.2.3/'), { http_proxy: 'http://p:1', no_proxy: '10.1.2.3' }), undefined);
});

test('proxy credentials become Proxy-Authorization', () => {
  assert.equal(proxyAuthorization(new URL('http://us%40er:p%3Ass@p:1')), `Basic ${Buffer.from('us@er:p:ss').toString('base64')}`);
  assert.equal(proxyAuthorization(new URL('http://p:1')), undefined);
});
