// Unit tests of the download address policy: every private, local and embedded form is refused, public ones pass.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addressProblem, ipv6Groups } from './address-policy.js';

test('refuses loopback, private, link-local, metadata, multicast and reserved IPv4', () => {
  for (const ip of ['127.0.0.1', '127.1.2.3', '0.0.0.0', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '100.100.100.200', '224.0.0.1', '239.255.255.250', '255.255.255.255', '240.0.0.1', '192.0.0.170', '198.18.0.1']) {
    assert.ok(addressProblem(ip), ip);
  }
  for (const ip of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '192.169.0.1', '100.128.0.1']) assert.equal(addressProblem(ip), undefined, ip);
});

test('refuses IPv6 loopback, unique-local, link-local, multicast and every form embedding a private IPv4', () => {
  for (const ip of ['::1', '::', '[::1]', 'fe80::1', 'fe80::1%eth0', 'fc00::1', 'fd00:ec2::254', 'ff02::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:a9fe:a9fe', '::127.0.0.1', '::7f00:1', '64:ff9b::127.0.0.1', '64:ff9b::a9fe:a9fe', '64:ff9b:1::a00:1', '2002:7f00:1::', '2002:a9fe:a9fe::1', '2001:0:4136:e378::1', '2001:db8::1', 'fec0::1']) {
    assert.ok(addressProblem(ip), ip);
  }
  for (const ip of ['2606:4700:4700::1111', '2a00:1450:4001:81b::200e', '64:ff9b::808:808', '2002:808:808::1', '::ffff:8.8.8.8']) assert.equal(addressProblem(ip), undefined, ip);
});

test('IPv6 groups parse the compressed and dotted forms, and refuse malformed ones', () => {
  assert.deepEqual(ipv6Groups('::ffff:127.0.0.1'), [0, 0, 0, 0, 0, 0xffff, 0x7f00, 1]);
  assert.deepEqual(ipv6Groups('1:2:3:4:5:6:7:8'), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(ipv6Groups('1::2::3'), undefined);
  assert.equal(ipv6Groups('1:2:3'), undefined);
  assert.ok(addressProblem('not-an-ip'));
});
