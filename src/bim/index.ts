// bim: the per-disk backing-image manager. It owns `<disk>/backing-images/`, takes over data sources' files by
// rename, receives copies from peers (chunked, verified, sparse, resumable), serves copies and downloads, and
// re-adopts verified files after a restart without reading them. `startBim` runs one, with its HTTP API.

import { BackingImageManager, type ManagerOptions } from './manager.js';
import { startBimServer, type ApiVersions } from './server.js';

export { BimError, BIM_ERROR_CODES, httpStatusOf, isBimError } from './errors.js';
export type { BimErrorCode } from './errors.js';
export { BackingImageManager, checkDiskIdentity } from './manager.js';
export type { ManagerOptions } from './manager.js';
export type { ApiVersions } from './server.js';
export type { FileInfo, SenderInfo, WatchEvent } from './table.js';
export type { FileState, Timeouts } from './states.js';
export { DEFAULT_TIMEOUTS, FILE_STATES } from './states.js';
export type { ChunkManifest, ManifestChunk } from './manifest.js';
export { DEFAULT_CHUNK_SIZE, isAllZero, ManifestBuilder, manifestDigest } from './manifest.js';
export { manifestSidecarPath } from './names.js';

export interface BimOptions extends ManagerOptions {
  host: string;
  port: number;
  versions: ApiVersions;
}

export interface Bim {
  readonly url: string;
  readonly manager: BackingImageManager;
  /** Stops the server, then the jobs (their partial data stays for resume). */
  close(): Promise<void>;
}

/** Opens the disk (refusing a disk of another UUID), scans it and serves the API. */
export async function startBim(opts: BimOptions): Promise<Bim> {
  const manager = await BackingImageManager.open(opts);
  let server;
  try {
    server = await startBimServer({ manager, versions: opts.versions, host: opts.host, port: opts.port, clusterSecret: opts.clusterSecret });
  } catch (err) {
    await manager.close();
    throw err;
  }
  const srv = server;
  return {
    url: srv.url,
    manager,
    close: async () => {
      await Promise.all([srv.close(), manager.close()]);
    },
  };
}
