// Longhorn's `/v1` REST API, served next to the Kubernetes resource API by the same server.

import type { FastifyInstance } from 'fastify';
import type { Store } from '../../store/types.js';
import { registerBackingImageRoutes } from './backing-images.js';
import { registerNodeRoutes } from './nodes.js';
import { registerSettingRoutes } from './settings.js';
import { downloadProxy, registerUploadRoutes, uploadAction } from './transfer.js';
import { registerVolumeRoutes } from './volumes.js';

export { backingImageResource } from './backing-images.js';
export { nodeResource } from './nodes.js';
export { parseSize } from './quantity.js';
export { volumeResource } from './volume-resource.js';
export { downloadUrlProblem, ALLOW_PRIVATE_SETTING } from '../../util/download-url.js';

export function registerLonghornV1(app: FastifyInstance, store: Store): void {
  registerBackingImageRoutes(app, store, {
    upload: (req, reply, bi) => uploadAction(store, req, reply, bi),
    download: (req, reply, bi) => downloadProxy(store, req, reply, bi),
  });
  registerUploadRoutes(app, store);
  registerSettingRoutes(app, store);
  registerVolumeRoutes(app, store);
  registerNodeRoutes(app, store);
}
