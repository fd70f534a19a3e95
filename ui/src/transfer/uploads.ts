// Resumable uploads from the browser: create the image (sourceType upload), declare the size, then PUT the file
// in chunks from the server's durable offset. Each chunk is acknowledged only after the data source fsynced it,
// so after a reload, a lost connection or a closed tab the upload continues where the server says it stands.
// A File cannot outlive the page, so unfinished uploads are remembered (localStorage) and resumed when the same
// file (name and size) is chosen again.

import { useSyncExternalStore } from 'react';
import { ApiError, apiFetch, apiJson, v1 } from '../api/index.js';

/** Big enough to keep the pipe full, small enough for smooth progress and little to resend after a cut. */
const CHUNK = 8 * 1024 * 1024;
const RECORDS = 'stratum.uploads';

export interface UploadRecord {
  name: string;
  fileName: string;
  size: number;
  checksum: string;
}

export interface UploadJob {
  name: string;
  fileName: string;
  size: number;
  offset: number;
  /** Where this page started sending (non-zero after a resume). */
  resumedAt: number;
  phase: 'creating' | 'waiting' | 'uploading' | 'verifying' | 'done' | 'failed';
  bytesPerSecond: number;
  etaSeconds: number;
  error: string;
}

const jobs = new Map<string, UploadJob>();
const listeners = new Set<() => void>();
let snapshot: UploadJob[] = [];

function publish(job: UploadJob): void {
  jobs.set(job.name, { ...job });
  snapshot = [...jobs.values()];
  for (const l of listeners) l();
}

export function readRecords(): UploadRecord[] {
  try {
    return JSON.parse(localStorage.getItem(RECORDS) ?? '[]') as UploadRecord[];
  } catch {
    return [];
  }
}

let records = readRecords();

function writeRecords(next: UploadRecord[]): void {
  localStorage.setItem(RECORDS, JSON.stringify(next));
  records = next;
  for (const l of listeners) l();
}

function forgetRecord(name: string): void {
  writeRecords(readRecords().filter((r) => r.name !== name));
}

/** Forgets an unfinished upload (the image stays; delete it from its page). */
export function forgetUpload(name: string): void {
  forgetRecord(name);
  jobs.delete(name);
  snapshot = [...jobs.values()];
  for (const l of listeners) l();
}

const subscribe = (l: () => void) => {
  listeners.add(l);
  return () => listeners.delete(l);
};

export function useUploads(): UploadJob[] {
  return useSyncExternalStore(subscribe, () => snapshot);
}

export function useUploadRecords(): UploadRecord[] {
  return useSyncExternalStore(subscribe, () => records);
}

/** Progress with rate and ETA: rate averaged over the last few seconds so one slow fsync does not swing it. */
class Meter {
  readonly #samples: { t: number; bytes: number }[] = [];
  add(bytes: number): number {
    const t = performance.now();
    this.#samples.push({ t, bytes });
    while (this.#samples.length > 2 && t - (this.#samples[0]?.t ?? t) > 5000) this.#samples.shift();
    const first = this.#samples[0];
    if (!first || t - first.t < 200) return 0;
    return ((bytes - first.bytes) * 1000) / (t - first.t);
  }
}

async function waitForDataSource(name: string, size: number, checksum: string, signal: AbortSignal): Promise<void> {
  const q = new URLSearchParams({ action: 'upload', size: String(size) });
  if (checksum) q.set('checksum', checksum);
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      await apiFetch(`/v1/backingimages/${encodeURIComponent(name)}?${q}`, { method: 'POST', signal });
      return;
    } catch (err) {
      // 409 until the image's data-source pod runs; anything else is the answer.
      if (!(err instanceof ApiError && err.status === 409 && /cannot take an upload yet/.test(err.message)) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** Starts (or resumes) uploading `file` as backing image `name`. Resolves when the server has verified it. */
export async function startUpload(opts: { name: string; file: File; checksum?: string; minNumberOfCopies?: number; create: boolean }): Promise<void> {
  const { name, file } = opts;
  const checksum = opts.checksum ?? readRecords().find((r) => r.name === name)?.checksum ?? '';
  const job: UploadJob = { name, fileName: file.name, size: file.size, offset: 0, resumedAt: 0, phase: 'creating', bytesPerSecond: 0, etaSeconds: NaN, error: '' };
  publish(job);
  const signal = new AbortController().signal;
  try {
    if (opts.create) {
      await v1('POST', '/backingimages', {
        name, sourceType: 'upload', parameters: {}, expectedChecksum: checksum,
        ...(opts.minNumberOfCopies ? { minNumberOfCopies: opts.minNumberOfCopies } : {}),
      });
    }
    writeRecords([...readRecords().filter((r) => r.name !== name), { name, fileName: file.name, size: file.size, checksum }]);
    job.phase = 'waiting';
    publish(job);
    await waitForDataSource(name, file.size, checksum, signal);
    const at = await apiJson<{ offset: number }>(`/v1/backingimages/${encodeURIComponent(name)}/upload`, { signal });
    job.offset = Number(at.offset);
    job.resumedAt = job.offset;
    job.phase = 'uploading';
    publish(job);
    const meter = new Meter();
    meter.add(job.offset);
    while (job.offset < file.size) {
      const end = Math.min(file.size, job.offset + CHUNK);
      if (end === file.size) {
        job.phase = 'verifying';
        publish(job);
      }
      try {
        const res = await apiJson<{ offset: number }>(`/v1/backingimages/${encodeURIComponent(name)}/upload?offset=${job.offset}`, {
          method: 'PUT', body: file.slice(job.offset, end), headers: { 'content-type': 'application/octet-stream' }, signal,
        });
        job.offset = Number(res.offset ?? end);
      } catch (err) {
        // Someone else (another tab) moved the offset: continue from the server's.
        if (!(err instanceof ApiError && err.status === 409 && err.reason === 'OffsetMismatch')) throw err;
        job.offset = Number((await apiJson<{ offset: number }>(`/v1/backingimages/${encodeURIComponent(name)}/upload`, { signal })).offset);
      }
      job.bytesPerSecond = meter.add(job.offset);
      job.etaSeconds = job.bytesPerSecond > 0 ? (file.size - job.offset) / job.bytesPerSecond : NaN;
      publish(job);
    }
    job.phase = 'done';
    publish(job);
    forgetRecord(name);
  } catch (err) {
    job.phase = 'failed';
    job.error = err instanceof Error ? err.message : String(err);
    publish(job);
    throw err;
  }
}
