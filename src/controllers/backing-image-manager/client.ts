// The manager side of the backing-image manager's HTTP API (docs/bim-api.md): what the controllers call on a
// running manager pod. Every call has a timeout; errors carry the pod's own message.

import { callJson } from '../common/http-json.js';
import type { ScrubRequest } from '../../bim/scrub.js';
import type { SyncRequest } from '../../bim/sync.js';
import type { FileInfo } from '../../bim/table.js';

/** One file as the manager reports it (its own type: one home for the contract). */
export type BimFile = FileInfo;

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

  /** Starts a scrub of a ready file (202), or joins the one under way (200). */
  scrubFile(name: string, req: Omit<ScrubRequest, 'name'>, signal?: AbortSignal) {
    return this.#call<BimFile>('POST', `/v1/files/${encodeURIComponent(name)}/scrub`, req, signal);
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
