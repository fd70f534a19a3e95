// Setting (longhorn.io/v1beta2, `lhs`): one cluster-wide knob, named after the setting, with a top-level
// `value` string and no spec (Longhorn's shape). What each name means, its default and bounds live in
// settings.ts; this file is the resource around it.

import { ageColumn } from './common.js';
import { invalid, notSupported } from './field-errors.js';
import type { FieldError, KindInfo } from './kind.js';
import { LONGHORN_GROUP, LONGHORN_VERSION, type KubeObject } from './meta.js';
import { bool, obj, resourceSchema, str } from './schema.js';
import { SETTINGS, settingDefinition, validateSettingValue } from './settings.js';

export interface SettingStatus {
  applied: boolean;
}

export interface Setting extends KubeObject<never, SettingStatus> {
  value: string;
}

const schema = resourceSchema({
  description: 'Setting is one cluster-wide knob; the object name is the setting name.',
  topLevel: {
    value: str({ description: 'The value of the setting, always a string.' }),
  },
  status: obj({ applied: bool() }, { required: ['applied'] }),
  required: ['value'],
});

function validate(o: KubeObject): FieldError[] {
  const name = o.metadata.name ?? '';
  const value = o['value'];
  if (settingDefinition(name) === undefined) {
    // Refused rather than stored: a setting Stratum does not know would silently have no effect.
    return [notSupported('metadata.name', name, SETTINGS.map((s) => s.name))];
  }
  if (typeof value !== 'string') return [];
  const err = validateSettingValue(name, value);
  return err === undefined ? [] : [invalid('value', value, err)];
}

export const settingInfo: KindInfo = {
  group: LONGHORN_GROUP,
  version: LONGHORN_VERSION,
  kind: 'Setting',
  listKind: 'SettingList',
  plural: 'settings',
  singular: 'setting',
  shortNames: ['lhs'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: false,
  printerColumns: [
    { name: 'Value', jsonPath: '.value', type: 'string', description: 'The value of the setting' },
    { name: 'Applied', jsonPath: '.status.applied', type: 'boolean', description: 'The setting is applied' },
    ageColumn,
  ],
  schema,
  validate,
};
