// Unit tests of /proc parsing and process identity.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { identityOf, isRunning, parseStat } from './proc.js';

test('parseStat finds field 22 after a command name with spaces and parentheses', () => {
  const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
  fields[0] = 'S';
  const text = `4321 (my (odd) name) ${fields.join(' ')}\n`;
  const st = parseStat(text);
  assert.equal(st?.pid, 4321);
  assert.equal(st?.comm, 'my (odd) name');
  assert.equal(st?.state, 'S');
  assert.equal(st?.ppid, 4);
  assert.equal(st?.pgrp, 5);
  assert.equal(st?.startTime, '22');
  assert.equal(parseStat('garbage'), undefined);
});

test('this process has an identity; another start time is another process', () => {
  const me = identityOf(process.pid);
  assert.ok(me);
  assert.equal(isRunning(me), true);
  assert.equal(isRunning({ pid: process.pid, startTime: `${me.startTime}1` }), false);
  assert.equal(isRunning({ pid: 2 ** 22 + 7, startTime: '1' }), false);
});
