// Longhorn's `/v1` REST API, served next to the Kubernetes resource API by the same server.

import type { FastifyInstance } from 'fastify';
import type { Store } from '../../store/types.js';
import { registerBackingImageRoutes, type DownloadProxy, type UploadProxy } from './backing-images.js';
import { registerSettingRoutes } from './settings.js';

export { backingImageResource } from './backing-images.js';
export { downloadUrlProblem, ALLOW_PRIVATE_SETTING } from './download-url.js';
export type { DownloadProxy, UploadProxy } from './backing-images.js';

export function registerLonghornV1(app: FastifyInstance, store: Store, opts: { download?: DownloadProxy; upload?: UploadProxy } = {}): void {
  registerBackingImageRoutes(app, store, opts);
  registerSettingRoutes(app, store);
}
