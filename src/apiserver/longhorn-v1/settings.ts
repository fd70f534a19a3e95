// Longhorn's `/v1/settings` API: list, get, update. Values live in the Setting resources; definitions (type,
// default, bounds, read-only) come from the settings catalogue.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { settingDefinition } from '../../api/settings.js';
import { DEFAULT_NAMESPACE, type KubeObject } from '../../api/meta.js';
import { StoreError } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { collection, requireObject } from './common.js';

function settingResource(s: KubeObject, base: string) {
  const name = s.metadata.name ?? '';
  const def = settingDefinition(name);
  return {
    id: name,
    type: 'setting',
    name,
    value: typeof s['value'] === 'string' ? s['value'] : '',
    applied: (s.status as { applied?: boolean } | undefined)?.applied ?? true,
    definition: def
      ? { displayName: name, description: def.description, type: def.type, default: def.default, readOnly: def.readOnly, ...(def.min === undefined ? {} : { min: def.min }), ...(def.max === undefined ? {} : { max: def.max }) }
      : {},
    links: { self: `${base}/v1/settings/${encodeURIComponent(name)}` },
  };
}

export function registerSettingRoutes(app: FastifyInstance, store: Store): void {
  const base = (req: FastifyRequest) => `${req.protocol}://${req.headers.host ?? 'localhost'}`;
  app.get('/v1/settings', async (req) => {
    const { items } = await store.list('Setting', { namespace: DEFAULT_NAMESPACE });
    items.sort((a, b) => (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''));
    return collection('setting', items.map((s) => settingResource(s, base(req))), `${base(req)}/v1/settings`);
  });
  app.get('/v1/settings/:name', async (req) => {
    const { name } = req.params as { name: string };
    return settingResource(await store.get('Setting', DEFAULT_NAMESPACE, name), base(req));
  });
  app.put('/v1/settings/:name', async (req) => {
    const { name } = req.params as { name: string };
    const body = requireObject(req.body);
    if (typeof body['value'] !== 'string') throw new StoreError('BadRequest', `setting "${name}": the body must be {"value": "<string>"}`);
    if (settingDefinition(name)?.readOnly) throw new StoreError('Forbidden', `setting "${name}" is read-only: Stratum sets it itself`);
    const { object } = await store.patch('Setting', DEFAULT_NAMESPACE, name, 'merge', { value: body['value'] });
    return settingResource(object, base(req));
  });
}
