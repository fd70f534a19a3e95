// Longhorn's `/v1` REST API, served next to the Kubernetes resource API by the same server.

import type { FastifyInstance } from 'fastify';
import type { Store } from '../../store/types.js';
import { registerBackingImageRoutes } from './backing-images.js';
import { registerNodeRoutes } from './nodes.js';
import { registerSettingRoutes } from './settings.js';
import { downloadProxy, registerUploadRoutes, uploadAction, type DataPlaneAuth } from './transfer.js';
import { registerVolumeRoutes } from './volumes.js';

export { backingImageResource } from './backing-images.js';
export { nodeResource } from './nodes.js';
export { parseSize } from './quantity.js';
export { volumeResource } from './volume-resource.js';
export { downloadUrlProblem, ALLOW_PRIVATE_SETTING } from '../../util/download-url.js';

export type { DataPlaneAuth } from './transfer.js';

/** `dataPlane`: the manager's credential towards data-plane pods (upload and download proxies). */
export async function registerLonghornV1(app: FastifyInstance, store: Store, dataPlane: DataPlaneAuth = { headers: () => ({}) }): Promise<void> {
  registerBackingImageRoutes(app, store, {
    upload: (req, reply, bi) => uploadAction(store, req, reply, bi, dataPlane),
    download: (req, reply, bi) => downloadProxy(store, req, reply, bi, dataPlane),
  });
  await registerUploadRoutes(app, store, dataPlane);
  registerSettingRoutes(app, store);
  registerVolumeRoutes(app, store);
  registerNodeRoutes(app, store);
}
