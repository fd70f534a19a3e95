// Setting values as controllers read them: from the shared Setting informer, falling back to the catalogue's
// default, parsed once per read. Controllers never cache a value across reconciles, so a change applies at once.

import { settingDefault } from '../../api/settings.js';
import { DEFAULT_NAMESPACE, type DeepReadonly, type KubeObject } from '../../api/meta.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import type { ProvisioningLimits } from '../scheduling.js';

export interface Settings {
  string(name: string): string;
  int(name: string): number;
  bool(name: string): boolean;
}

export function settingsFrom(informers: InformerFactory): Settings {
  const inf = informers.informerFor('Setting');
  return settingsBy((name) => inf.get(DEFAULT_NAMESPACE, name)?.['value']);
}

/** Settings from Setting objects read from the store (admission, which has no informers). */
export function settingsOf(objects: readonly DeepReadonly<KubeObject>[]): Settings {
  const values = new Map(objects.map((o) => [o.metadata.name ?? '', (o as Record<string, unknown>)['value']]));
  return settingsBy((name) => values.get(name));
}

function settingsBy(value: (name: string) => unknown): Settings {
  const raw = (name: string): string => {
    const v = value(name);
    return typeof v === 'string' ? v : (settingDefault(name) ?? '');
  };
  return {
    string: raw,
    int: (name) => {
      const n = Number.parseInt(raw(name), 10);
      return Number.isFinite(n) ? n : Number.parseInt(settingDefault(name) ?? '0', 10);
    },
    bool: (name) => raw(name) === 'true',
  };
}

/** The space settings placement applies (read at each placement, so a change applies to the next one). */
export function provisioningLimits(s: Settings): ProvisioningLimits {
  return { overProvisioningPercent: s.int('storage-over-provisioning-percentage'), minimalAvailablePercent: s.int('storage-minimal-available-percentage') };
}
