// Stratum's release API, next to Longhorn's /v1 (Longhorn upgrades by replacing its deployments; Stratum has no
// orchestrator to do that, so the manager takes the release itself):
//   GET  /v1/version   the manager's release: version, default images, API ranges (what `stratum version` shows)
//   POST /v1/upgrade   {release: "<YAML text>", name?: "<file name>", dir?: "<its directory, for {dir}>", dryRun?: true}
//                      validates the release against the running cluster (422 naming the entry, 409 when it
//                      cannot be applied), stores it and restarts the manager on it; 202 with the new release.
// Only an admin may upgrade (the guard lets no other role write outside the resource API).

import type { FastifyInstance } from 'fastify';
import type { Release } from '../../release/index.js';
import { StoreError } from '../../store/errors.js';
import { requireObject } from './common.js';

export interface ReleaseView {
  release: Release;
  /** Where the active release came from: `built-in` or the stored file. */
  source: string;
  /** When it became active (the manager's start after the upgrade), if stored. */
  appliedAt?: string;
  /** The manager's catalog: what each image name is (component, version, API range). */
  images?: Record<string, { component: string; version: string; apiMinVersion: number; apiVersion: number }>;
}

export interface UpgradeService {
  current(): ReleaseView;
  /** `name`: the file's name, for messages. */
  upgrade(text: string, dir: string | undefined, dryRun: boolean, name: string | undefined): Promise<{ release: Release; previous: Release }>;
}

export function registerUpgradeRoutes(app: FastifyInstance, svc: UpgradeService): void {
  app.get('/v1/version', async () => svc.current());
  app.post('/v1/upgrade', async (req, reply) => {
    const body = requireObject(req.body);
    const text = body['release'];
    const dir = body['dir'];
    if (typeof text !== 'string' || text.trim() === '') throw new StoreError('BadRequest', 'the body must be {"release": "<the release file\'s text>"}');
    if (dir !== undefined && typeof dir !== 'string') throw new StoreError('BadRequest', '"dir" must be the release file\'s directory');
    const dryRun = body['dryRun'] === true;
    const name = typeof body['name'] === 'string' ? body['name'] : undefined;
    const r = await svc.upgrade(text, dir, dryRun, name);
    reply.code(dryRun ? 200 : 202);
    return { ...r, dryRun };
  });
}
