// Tests of the settings catalogue, setting value validation and the Setting resource.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { isUnknownSetting } from './errors.js';
import { manifest } from './manifests.fixture.js';
import { settingInfo } from './setting-resource.js';
import {
  SETTINGS, settingBool, settingDefault, settingDefinition, settingInt, settingValueFor, validateSettingValue,
} from './settings.js';
import { validateObject } from './validate.js';

describe('settings catalogue', () => {
  it('has the required settings with their defaults and bounds', () => {
    const expect: [string, string, string, number | undefined, number | undefined, boolean][] = [
      ['backing-image-cleanup-wait-interval', '60', 'int', 0, undefined, false],
      ['backing-image-recovery-wait-interval', '300', 'int', 0, undefined, false],
      ['concurrent-backing-image-replenish-per-node-limit', '5', 'int', 0, undefined, false],
      ['default-min-number-of-backing-image-copies', '1', 'int', 1, undefined, false],
      ['default-backing-image-manager-image', 'stratum-bim:v1', 'string', undefined, undefined, false],
      ['default-instance-manager-image', 'stratum-im:v1', 'string', undefined, undefined, false],
      ['default-replica-count', '3', 'int', 1, 20, false],
      ['node-down-timeout', '30', 'int', 1, undefined, true],
      ['backing-image-copy-retry-backoff-min', '60', 'int', 1, undefined, true],
      ['backing-image-copy-retry-backoff-max', '300', 'int', 1, undefined, true],
      ['allow-private-download-urls', 'false', 'bool', undefined, undefined, true],
      ['backing-image-scrub-interval', '168', 'int', 0, undefined, true],
      ['backing-image-scrub-bandwidth', '64', 'int', 1, undefined, true],
      ['allow-empty-node-selector-volume', 'true', 'bool', undefined, undefined, false],
      ['allow-empty-disk-selector-volume', 'true', 'bool', undefined, undefined, false],
    ];
    for (const [name, dflt, type, min, max, stratum] of expect) {
      const d = settingDefinition(name);
      assert.ok(d, name);
      assert.equal(d.default, dflt, name);
      assert.equal(d.type, type, name);
      assert.equal(d.min, min, name);
      assert.equal(d.max, max, name);
      assert.equal(d.stratum, stratum, name);
      assert.ok(d.description.length > 10 && !d.description.includes('\n'), `${name} has a one-line description`);
      assert.equal(settingDefault(name), dflt);
    }
    assert.equal(settingDefinition('default-backing-image-manager-image')?.readOnly, true);
    assert.equal(settingDefault('no-such-setting'), undefined);
  });
  it('has unique names and every default passes its own validation', () => {
    assert.equal(new Set(SETTINGS.map((s) => s.name)).size, SETTINGS.length);
    for (const s of SETTINGS) assert.equal(validateSettingValue(s.name, s.default), undefined, s.name);
  });
});

describe('validateSettingValue', () => {
  it('checks integers and their bounds', () => {
    assert.equal(validateSettingValue('default-replica-count', '5'), undefined);
    assert.match(validateSettingValue('default-replica-count', '0') ?? '', /at least 1/);
    assert.match(validateSettingValue('default-replica-count', '21') ?? '', /at most 20/);
    assert.match(validateSettingValue('default-replica-count', 'three') ?? '', /integer/);
    assert.match(validateSettingValue('default-replica-count', '2.5') ?? '', /integer/);
    assert.match(validateSettingValue('backing-image-cleanup-wait-interval', '-1') ?? '', /at least 0/);
    assert.equal(validateSettingValue('backing-image-cleanup-wait-interval', '0'), undefined);
    assert.match(validateSettingValue('default-min-number-of-backing-image-copies', '0') ?? '', /at least 1/);
  });
  it('checks booleans, enumerations and read-only strings', () => {
    assert.equal(validateSettingValue('allow-private-download-urls', 'true'), undefined);
    assert.match(validateSettingValue('allow-private-download-urls', 'yes') ?? '', /"true" or "false"/);
    assert.match(validateSettingValue('default-data-locality', 'nearby') ?? '', /one of/);
    assert.match(validateSettingValue('default-instance-manager-image', ' ') ?? '', /empty/);
  });
  it('accepts per-data-engine JSON values and checks each member', () => {
    assert.equal(validateSettingValue('default-replica-count', '{"v1":"3","v2":"2"}'), undefined);
    assert.match(validateSettingValue('default-replica-count', '{"v1":"30"}') ?? '', /^v1: .*at most 20/);
    assert.match(validateSettingValue('default-replica-count', '{"v3":"3"}') ?? '', /data engine/);
    assert.match(validateSettingValue('default-replica-count', '{"v1":3}') ?? '', /string/);
    assert.match(validateSettingValue('default-replica-count', '{nope') ?? '', /JSON/);
    assert.equal(settingValueFor('{"v1":"3","v2":"2"}', 'v2'), '2');
    assert.equal(settingValueFor('4'), '4');
  });
  it('refuses unknown names', () => {
    assert.match(validateSettingValue('no-such-setting', '1') ?? '', /unknown setting/);
  });
});

describe('typed readers', () => {
  it('settingInt reads, and falls back to the default on unset or invalid values', () => {
    assert.equal(settingInt('default-replica-count', () => '5'), 5);
    assert.equal(settingInt('default-replica-count', () => undefined), 3);
    assert.equal(settingInt('default-replica-count', () => 'garbage'), 3);
    assert.equal(settingInt('default-replica-count', () => '{"v1":"2","v2":"1"}'), 2);
    assert.throws(() => settingInt('no-such-setting', () => '1'), isUnknownSetting);
  });
  it('settingBool reads, with the same fallback', () => {
    assert.equal(settingBool('allow-private-download-urls', () => 'true'), true);
    assert.equal(settingBool('allow-private-download-urls', () => 'maybe'), false);
    assert.equal(settingBool('allow-empty-disk-selector-volume', () => undefined), true);
  });
});

describe('Setting resource', () => {
  it('validates value against the definition, reported at field "value"', () => {
    const s = manifest('Setting');
    s['value'] = '0';
    const errs = validateObject(settingInfo, s);
    assert.equal(errs.length, 1);
    assert.equal(errs[0]?.field, 'value');
    assert.equal(errs[0]?.reason, 'FieldValueInvalid');
    assert.match(errs[0]?.message ?? '', /at least 1/);
  });
  it('refuses a setting name that is not in the catalogue', () => {
    const s = manifest('Setting');
    s.metadata.name = 'made-up-setting';
    const errs = validateObject(settingInfo, s);
    assert.equal(errs[0]?.field, 'metadata.name');
    assert.equal(errs[0]?.reason, 'FieldValueNotSupported');
  });
  it('requires a string value', () => {
    const s = manifest('Setting');
    s['value'] = 3;
    assert.deepEqual(validateObject(settingInfo, s).map((e) => `${e.field}:${e.reason}`), ['value:FieldValueTypeInvalid']);
  });
});
