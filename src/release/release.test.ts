// Unit tests of release parsing and validation: every refusal names its entry; a good release passes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BUILTIN_IMAGES, resolveEntries } from '../agent/images.js';
import { isReleaseError } from './errors.js';
import { BUILTIN_RELEASE, parseRelease, releaseCatalog } from './release.js';
import { validateRelease, type RunningInstance } from './validate.js';

const ctx = { nodeBinary: process.execPath, repo: '/nonexistent-repo', dir: '/etc' };
const base = resolveEntries([...BUILTIN_IMAGES], [], 'built-in', { ...ctx, repo: process.cwd() });
const okProbe = async (_argv: string[]): Promise<string | undefined> => undefined;
const ims: RunningInstance[] = [{ component: 'instance-manager', name: 'InstanceManager im-1', image: 'stratum-im:v1', apiMinVersion: 2, apiVersion: 2 }];

const V2 = `release: 1.1.0
manager:
  apis:
    backing-image-manager: { min: 1, max: 2 }
defaults:
  backing-image-manager: stratum-bim:v2
images:
  - { name: stratum-bim:v2, from: stratum-bim:v1, version: 2.0.0, apiVersion: 2, apiMinVersion: 1 }
`;

async function check(text: string, running: RunningInstance[] = ims, probe = okProbe, trusted = base): Promise<void> {
  const rel = parseRelease(text, 'rel.yaml');
  await validateRelease(rel, releaseCatalog(rel, trusted, 'rel.yaml', ctx), running, { source: 'rel.yaml', probe, trusted });
}

test('a release fills what it leaves out from the built-in one and passes validation', async () => {
  const rel = parseRelease(V2, 'rel.yaml');
  assert.equal(rel.version, '1.1.0');
  assert.deepEqual(rel.apis['backing-image-manager'], { min: 1, max: 2 });
  assert.deepEqual(rel.apis['instance-manager'], BUILTIN_RELEASE.apis['instance-manager']);
  assert.equal(rel.defaults.engine, 'stratum-engine:v1');
  const entry = releaseCatalog(rel, base, 'rel.yaml', ctx).find((e) => e.name === 'stratum-bim:v2');
  assert.equal(entry?.apiVersion, 2);
  assert.equal(entry?.source, 'rel.yaml');
  await check(V2);
});

test('shape errors name the key', () => {
  assert.throws(() => parseRelease('images: []', 'r.yaml'), /r.yaml: "release" is required/);
  assert.throws(() => parseRelease('release: 1\nmanager: {apis: {teleporter: {min: 1, max: 1}}}', 'r.yaml'), /manager.apis.teleporter: unknown component "teleporter"/);
  assert.throws(() => parseRelease('release: 1\ndefaults: {flux: x:v1}', 'r.yaml'), /defaults.flux: unknown component/);
  assert.throws(() => parseRelease('release: 1\nmanager: {apis: {engine: {min: 3, max: 1}}}', 'r.yaml'), /manager.apis.engine: min 3 is above max 1/);
  assert.throws(() => parseRelease('release: 1\nextra: 1', 'r.yaml'), /unknown key "extra"/);
});

test('an image of an unknown component is refused, naming the entry', async () => {
  await assert.rejects(check(`release: 2\nimages:\n  - { name: x:v1, from: stratum-bim:v1, component: teleporter }\n`), (err) => {
    assert.ok(isReleaseError(err, 'InvalidRelease'));
    assert.match(err.message, /images\[0\] \(x:v1\): unknown component "teleporter"/);
    return true;
  });
});

test('a default outside the manager range, or a range excluding every running instance manager, is refused', async () => {
  await assert.rejects(check(`release: 2\nmanager: {apis: {backing-image-manager: {min: 3, max: 3}}}\n`), (err) => {
    assert.ok(isReleaseError(err, 'IncompatibleRelease'));
    assert.match(err.message, /defaults.backing-image-manager: image "stratum-bim:v1" speaks API 1, outside manager.apis.backing-image-manager 3/);
    return true;
  });
  const im3 = `release: 2\nmanager: {apis: {instance-manager: {min: 3, max: 3}}}\ndefaults: {instance-manager: "stratum-im:v3"}\nimages:\n  - { name: stratum-im:v3, from: stratum-im:v1, apiVersion: 3, apiMinVersion: 3 }\n`;
  await assert.rejects(check(im3), /manager.apis.instance-manager: range 3 excludes every running instance-manager: InstanceManager im-1 \(stratum-im:v1, API 2\)/);
  // With no instance manager running (a fresh cluster) the same release is fine.
  await check(im3, []);
});

test('an image whose command does not exist is refused, naming the entry', async () => {
  await assert.rejects(check(`release: 2\nimages:\n  - { name: stratum-bim:v9, from: stratum-bim:v1, command: ["/no/such/program"] }\n`),
    /images\[0\] \(stratum-bim:v9\): command "\/no\/such\/program" does not exist: \/no\/such\/program is not on this machine/);
  await assert.rejects(check(`release: 2\nimages:\n  - { name: stratum-bim:v9, from: stratum-bim:v1, command: ["{node}", "{dir}/missing.js"] }\n`),
    /images\[0\] \(stratum-bim:v9\): command .* does not exist: \/etc\/missing.js does not exist/);
  // The operator's catalog grants a subcommand its program does not have: the probe finds out.
  const probe = async (argv: string[]) => (argv.at(-1) === 'bim-nine' ? '`help bim-nine` exited with code 1' : undefined);
  const operator = base.map((e) => (e.name === 'stratum-bim:v1' ? { ...e, subcommands: [...e.subcommands, 'bim-nine'] } : e));
  await assert.rejects(check(`release: 2\nimages:\n  - { name: stratum-bim:v9, from: stratum-bim:v1, subcommands: [bim-nine] }\n`, ims, probe, operator),
    /images\[0\] \(stratum-bim:v9\): command ".* bim-nine" does not exist: `help bim-nine` exited with code 1/);
});

test('a release may not run anything the operator did not install, and nothing of it is run to find out', async () => {
  const probed: string[][] = [];
  const probe = async (argv: string[]) => {
    probed.push(argv);
    return undefined;
  };
  const refused = async (entry: string, why: RegExp) => {
    await assert.rejects(check(`release: 2\nimages:\n  - ${entry}\n  - { name: stratum-im:v9, from: stratum-im:v1 }\n`, ims, probe), (err) => {
      assert.ok(isReleaseError(err, 'UntrustedRelease'), String(err));
      assert.match(err.message, /^release rel.yaml refused, nothing was changed or run: /);
      assert.match(err.message, why);
      return true;
    });
  };
  await refused('{ name: stratum-bim:v9, from: stratum-bim:v1, command: ["/bin/sh", "-c", "id"] }',
    /images\[0\] \(stratum-bim:v9\): command "\/bin\/sh -c id" is not the command of any image of the operator's catalog/);
  await refused('{ name: stratum-bim:v9, from: stratum-bim:v1, env: { NODE_OPTIONS: "--require /tmp/x.js" } }',
    /images\[0\] \(stratum-bim:v9\): env NODE_OPTIONS: a release may set only STRATUM_API_VERSION/);
  await refused('{ name: stratum-bim:v9, from: stratum-bim:v1, allowedEnv: [NODE_OPTIONS] }', /allowedEnv NODE_OPTIONS: pods of this command may not set them/);
  await refused('{ name: stratum-bim:v9, from: stratum-bim:v1, subcommands: [bim, up] }', /subcommands up: not allowed by the operator's catalog for this command \(allowed: bim, data-source\)/);
  await refused('{ name: stratum-bim:v9, from: stratum-bim:v1, subcommands: [] }', /subcommands \(any\): not allowed/);
  // The test image's command, declared a backing-image manager: a command the catalog runs only as test-exit.
  await refused('{ name: stratum-bim:v9, from: stratum-test-exit:v1, component: backing-image-manager }',
    /component "backing-image-manager" with command .*exit\.js": the operator's catalog runs that command only as test-exit/);
  // Replacing an operator entry by name is no way around it.
  await refused('{ name: stratum-bim:v1, component: backing-image-manager, command: ["/bin/sh"] }', /images\[0\] \(stratum-bim:v1\): command "\/bin\/sh" is not the command/);
  assert.deepEqual(probed, [], 'nothing of a refused release is run, not even the probes of its trusted entries');
  // Renaming, versioning, re-ranging and tuning what the operator installed is what a release is for.
  await check(`release: 2\nimages:\n  - { name: stratum-bim:v9, from: stratum-bim:v1, version: 9.0.0, apiVersion: 2, env: { STRATUM_BIM_BANDWIDTH_LIMIT: 4Mi } }\n`, ims, probe);
  assert.ok(probed.length > 0);
});
