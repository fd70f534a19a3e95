// The manager side of the backing-image manager's HTTP API (docs/bim-api.md): what the controllers call on a
// running manager pod. Every call has a timeout; errors carry the pod's own message.

import { callJson } from '../common/http-json.js';
import type { BackingImageState } from '../../api/backing-image.js';
import type { SyncRequest } from '../../bim/sync.js';

export interface BimFile {
  name: string;
  uuid: string;
  state: BackingImageState;
  progress: number;
  processedSize?: number;
  size: number;
  virtualSize: number;
  realSize: number;
  currentChecksum: string;
  expectedChecksum?: string;
  message: string;
  senders?: unknown[];
  /** Peers a sync pulls from; empty for a copy fetched from a data source. */
  sources?: string[];
}

export class BimClient {
  readonly #base: string;
  readonly #timeoutMs: number;

  constructor(base: string, timeoutMs = 10_000) {
    this.#base = base.replace(/\/+$/, '');
    this.#timeoutMs = timeoutMs;
  }

  get base(): string {
    return this.#base;
  }

  #call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    return callJson<T>(this.#base, method, path, this.#timeoutMs, body, signal);
  }

  version(signal?: AbortSignal) {
    return this.#call<{ apiVersion: number; apiMinVersion: number; diskUUID?: string }>('GET', '/v1/version', undefined, signal);
  }

  async list(signal?: AbortSignal): Promise<BimFile[]> {
    return (await this.#call<{ files: BimFile[] }>('GET', '/v1/files', undefined, signal)).files;
  }

  fetchFile(name: string, req: { uuid: string; sourcePath: string; size: number; expectedChecksum?: string; sha512?: string; identity?: unknown }, signal?: AbortSignal) {
    return this.#call<BimFile>('POST', `/v1/files/${encodeURIComponent(name)}/fetch`, req, signal);
  }

  syncFile(name: string, req: Omit<SyncRequest, 'name'>, signal?: AbortSignal) {
    return this.#call<BimFile>('POST', `/v1/files/${encodeURIComponent(name)}/sync`, req, signal);
  }

  deleteFile(name: string, uuid: string, signal?: AbortSignal) {
    return this.#call<void>('DELETE', `/v1/files/${encodeURIComponent(name)}?uuid=${encodeURIComponent(uuid)}`, undefined, signal);
  }

  downloadUrl(name: string): string {
    return `${this.#base}/v1/files/${encodeURIComponent(name)}/download`;
  }

  watchUrl(): string {
    return `${this.#base}/v1/watch`;
  }
}
