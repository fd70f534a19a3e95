// The data source of one backing image: prepares its first file in `<disk>/tmp/<name>-<uuid>/` by download,
// upload or export from a volume (export.ts), verifies it (SHA-512 computed while the bytes arrived, imagefmt inspection), fsyncs it, and offers it
// to the disk's backing-image manager, which takes it over by rename and then says so (`transfer()`).
// A restarted process picks up its own work dir: a verified file is offered again without re-hashing (its
// identity must be unchanged), a partial one is re-hashed once and continued.

import { DATA_SOURCE_STAGING_DIR } from '../api/backing-image-data-source.js';
import { sameIdentity } from '../api/file-identity.js';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { realClock, type Clock } from '../controller-kit/clock.js';
import { download } from './download.js';
import { exportVolume } from './export.js';
import { DataSourceError, isDataSourceError, messageOf } from './errors.js';
import { DEFAULT_TIMEOUTS, StateMachine, type DataSourceState, type StateTimeouts, type TimedState } from './file-state.js';
import { ProgressMeter } from './progress.js';
import type { ProxyEnv } from './proxy.js';
import { readHeaderFile, type RequestHeaders } from './request-headers.js';
import { redactParameters, redactUrl, validatePathPart, validateSourceUrl } from './source-url.js';
import { UploadSession, type UploadStatus } from './upload.js';
import { verifyAndSeal } from './verify.js';
import { ensureSpace, identityOf, WorkFile, type CompleteInfo, type FileIdentity } from './workfile.js';

export type SourceType = 'download' | 'upload' | 'export-from-volume';

export interface DataSourceOptions {
  diskPath: string;
  name: string;
  uuid: string;
  sourceType: SourceType;
  parameters: Readonly<Record<string, string>>;
  expectedChecksum?: string | undefined;
  /** Extra download headers, given directly or as a header file read at start. */
  requestHeaders?: RequestHeaders;
  headerFile?: string | undefined;
  env?: ProxyEnv;
  clock?: Clock;
  timeouts?: Partial<StateTimeouts>;
  stallTimeoutMs?: number;
  retries?: number;
  retryBaseMs?: number;
  maxRedirects?: number;
  /** Download from loopback, private, link-local … addresses too (the setting allow-private-download-urls). */
  allowPrivate?: boolean;
  /** The cluster secret: an export reaches the volume's engine and replica with it (export.ts). */
  clusterSecret?: string | undefined;
  log?: (line: string) => void;
}

/** What `GET /v1/file` shows. */
export interface FileInfo {
  name: string;
  uuid: string;
  sourceType: SourceType;
  parameters: Record<string, string>;
  state: DataSourceState;
  progress: number;
  processedSize: number;
  size: number | null;
  rate: number;
  etaSeconds: number | null;
  currentChecksum: string;
  expectedChecksum: string;
  virtualSize: number | null;
  format: string | null;
  message: string;
  filePath: string | null;
  identity: FileIdentity | null;
  /** Once verified: the chunk manifest's anchor, `<chunk size>:<SHA-256 hex>` (empty before, or when unknown). */
  chunkManifestDigest: string;
}

export type ChangeKind = 'state' | 'progress';

export class DataSource {
  readonly #o: DataSourceOptions;
  readonly #file: WorkFile;
  readonly #clock: Clock;
  readonly #meter: ProgressMeter;
  readonly #machine: StateMachine;
  readonly #url: URL | undefined;
  /** A source parameter was unusable: reported as `failed` through the API rather than by exiting. */
  readonly #invalid: unknown;
  #headers: RequestHeaders;
  readonly #run = new AbortController();
  readonly #listeners = new Set<(kind: ChangeKind) => void>();
  readonly #upload: UploadSession | undefined;
  #job: Promise<void> = Promise.resolve();
  /** Settles once the work dir is examined and the part file open (uploads wait for it). */
  #prepared: Promise<void> = Promise.resolve();
  #complete: CompleteInfo | undefined;
  #closing = false;
  /** Upload chunks still streaming and a verification under way; `close()` waits for them (bytes checkpointed). */
  readonly #inflight = new Set<Promise<unknown>>();
  /** The verification of a completed upload, once begun. */
  #finishing: Promise<void> | undefined;
  readonly #log: (line: string) => void;

  private constructor(o: DataSourceOptions, file: WorkFile, url: URL | undefined, invalid: unknown) {
    this.#o = o;
    this.#file = file;
    this.#url = url;
    this.#invalid = invalid;
    this.#headers = o.requestHeaders ?? [];
    this.#clock = o.clock ?? realClock;
    this.#log = o.log ?? (() => undefined);
    this.#meter = new ProgressMeter({ now: () => this.#clock.now() });
    this.#machine = new StateMachine(this.#clock, { ...DEFAULT_TIMEOUTS, ...o.timeouts }, (s, ms) => this.#timedOut(s, ms));
    this.#machine.onChange(() => this.#emit('state'));
    if (o.sourceType === 'upload') {
      this.#upload = new UploadSession(file, this.#meter, {
        onBytes: () => this.#bytesMoved(),
        onComplete: () => this.#finishUpload(),
      });
    }
  }

  /** Validates the options and opens the work dir (nothing runs until `start()`). */
  static async open(o: DataSourceOptions, { signal }: { signal?: AbortSignal } = {}): Promise<DataSource> {
    validatePathPart('the backing image name', o.name);
    validatePathPart('the backing image uuid', o.uuid);
    let url: URL | undefined;
    let invalid: unknown;
    try {
      if (o.sourceType === 'download') url = validateSourceUrl(o.parameters.url);
    } catch (err) {
      invalid = err;
    }
    // The checkpoint is tied to the source, by a fingerprint that does not reveal the URL.
    const what = o.sourceType === 'export-from-volume' ? `${o.parameters['volume-name'] ?? ''}\n${o.parameters['export-type'] ?? ''}` : (url?.href ?? '');
    const key = createHash('sha256').update(`${o.sourceType}\n${what}`).digest('hex');
    const dir = join(o.diskPath, DATA_SOURCE_STAGING_DIR, `${o.name}-${o.uuid}`);
    return new DataSource(o, await WorkFile.open(dir, key, { signal }), url, invalid);
  }

  get state(): DataSourceState {
    return this.#machine.state;
  }

  /** Runs the job in the background; `close()` stops it. */
  start(): void {
    const signal = this.#run.signal;
    const prepared = this.#prepare(signal);
    this.#prepared = prepared.then(() => undefined, () => undefined);
    this.#job = prepared
      .then(async (work) => {
        if (work && this.#o.sourceType === 'download') await this.#download(signal);
        else if (work && this.#o.sourceType === 'export-from-volume') await this.#export(signal);
        else if (work) await this.#prepareUpload(signal);
      })
      .catch((err: unknown) => this.#fail(err));
  }

  onChange(fn: (kind: ChangeKind) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  info(): FileInfo {
    const p = this.#meter.snapshot();
    const state = this.#machine.state;
    const c = this.#complete;
    return {
      name: this.#o.name,
      uuid: this.#o.uuid,
      sourceType: this.#o.sourceType,
      parameters: redactParameters(this.#o.parameters),
      state,
      progress: p.progress,
      processedSize: p.processedSize,
      size: c?.size ?? p.size ?? null,
      rate: p.rate,
      etaSeconds: p.etaSeconds ?? null,
      currentChecksum: c?.checksum ?? '',
      expectedChecksum: this.#expected() ?? '',
      virtualSize: c?.virtualSize ?? null,
      format: c?.format ?? null,
      message: this.#machine.message,
      filePath: state === 'ready-for-transfer' ? this.#file.filePath : null,
      identity: c?.identity ?? null,
      chunkManifestDigest: c?.chunkManifestDigest ?? '',
    };
  }

  /** The manager took the file over (renamed it away): `ready`. Repeating it is harmless. */
  async transfer(): Promise<FileInfo> {
    const s = this.#machine.state;
    if (s === 'ready') return this.info();
    if (s !== 'ready-for-transfer') {
      throw new DataSourceError('WrongState', `the file cannot be transferred in state "${s}"${this.#machine.message ? `: ${this.#machine.message}` : ''}`);
    }
    this.#file.patch({ transferred: true });
    await this.#file.persist();
    this.#machine.set('ready');
    this.#log('the file was transferred to the backing image manager');
    await this.#file.cleanupAfterTransfer();
    return this.info();
  }

  /** The upload's declared size and durable offset. */
  uploadStatus(): UploadStatus {
    if (!this.#upload) throw this.#notUpload();
    return this.#upload.status();
  }

  /** `POST /v1/upload`: declares (idempotently) the size and optionally the checksum. */
  async declareUpload(size: number, checksum: string | undefined): Promise<UploadStatus> {
    const upload = this.#uploadSession(checksum);
    if (!Number.isSafeInteger(size) || size <= 0) throw new DataSourceError('BadRequest', `the upload size must be a positive integer, not ${size}`);
    await this.#prepared;
    await ensureSpace(this.#file.dir, size - this.#file.offset);
    const status = await upload.declare(size, checksum, { signal: this.#run.signal });
    if (this.#machine.state === 'pending') this.#machine.set('starting', `upload of ${size} bytes declared; waiting for the bytes`);
    return status;
  }

  /** `PUT /v1/upload`: streams a chunk from `offset`; resolves with the new durable offset. */
  async receiveUpload(offset: number, length: number | undefined, body: Readable, { signal }: { signal: AbortSignal }): Promise<number> {
    const upload = this.#uploadSession();
    await this.#prepared;
    this.#uploadSession();
    const p = upload.receive(offset, length, body, { signal: AbortSignal.any([signal, this.#run.signal]) });
    const settled = p.then(() => undefined, () => undefined);
    this.#inflight.add(settled);
    try {
      return await p;
    } finally {
      this.#inflight.delete(settled);
    }
  }

  #notUpload(): DataSourceError {
    return new DataSourceError('NotFound', `this data source downloads (source type "${this.#o.sourceType}"); it takes no uploads`);
  }

  /** The upload session, if the state still accepts upload requests. */
  #uploadSession(checksum?: string): UploadSession {
    if (!this.#upload) throw this.#notUpload();
    if (this.#closing) throw new DataSourceError('WrongState', 'the data source is shutting down; retry against its next process');
    const s = this.#machine.state;
    if (s !== 'pending' && s !== 'starting' && s !== 'in-progress') {
      throw new DataSourceError('WrongState', `the upload is over (state "${s}")${this.#machine.message ? `: ${this.#machine.message}` : ''}`);
    }
    const cli = this.#o.expectedChecksum;
    if (checksum !== undefined && cli !== undefined && checksum !== cli) {
      throw new DataSourceError('WrongState', `the upload's checksum ${checksum} differs from the backing image's ${cli}`);
    }
    return this.#upload;
  }

  #finishUpload(): void {
    if (this.#finishing) return; // a repeated last chunk (offset = size, no bytes) starts nothing new
    this.#finishing = this.#finish(this.#run.signal).catch((err: unknown) => this.#fail(err));
    this.#inflight.add(this.#finishing);
  }

  /** Stops the job (a partial file and its checkpoint stay for the next process) and the timers. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#run.abort(new DataSourceError('Internal', 'the data source is shutting down'));
    await this.#job;
    await Promise.all(this.#inflight);
    this.#machine.dispose();
    await this.#file.close();
  }

  /** Examines the work dir; true when there is work to do. */
  async #prepare(signal: AbortSignal): Promise<boolean> {
    if (this.#invalid !== undefined) throw this.#invalid;
    if (this.#o.headerFile !== undefined) this.#headers = await readHeaderFile(this.#o.headerFile, { signal });
    const cp = this.#file.checkpoint;
    if (cp.transferred) {
      this.#machine.set('ready', 'the file was transferred before a restart');
      return false;
    }
    if (cp.complete && (await this.#stillComplete(cp.complete))) {
      this.#complete = cp.complete;
      this.#meter.setSize(cp.complete.size);
      this.#meter.reset(cp.complete.size);
      this.#meter.complete();
      this.#machine.set('ready-for-transfer', 'the verified file from before a restart is unchanged');
      return false;
    }
    if (cp.complete) await this.#file.removeData();
    await this.#file.openPart({ signal });
    this.#meter.reset(this.#file.offset);
    return true;
  }

  async #download(signal: AbortSignal): Promise<void> {
    const url = this.#url as URL;
    this.#machine.set('starting', `downloading ${redactUrl(url.href)}`);
    this.#log(`downloading ${redactUrl(url.href)}${this.#file.offset > 0 ? ` (resuming at byte ${this.#file.offset})` : ''}`);
    const o = this.#o;
    await download(
      {
        url,
        headers: this.#headers,
        env: o.env ?? process.env,
        file: this.#file,
        meter: this.#meter,
        clock: this.#clock,
        stallTimeoutMs: o.stallTimeoutMs ?? 60_000,
        retries: o.retries ?? 8,
        retryBaseMs: o.retryBaseMs ?? 1000,
        maxRedirects: o.maxRedirects ?? 10,
        allowPrivate: o.allowPrivate ?? false,
        checkpointBytes: 64 * 1024 * 1024,
        checkpointMs: 5000,
        onBytes: () => this.#bytesMoved(),
        log: this.#log,
      },
      { signal },
    );
    await this.#finish(signal);
  }

  async #export(signal: AbortSignal): Promise<void> {
    const o = this.#o;
    this.#machine.set('starting', `exporting volume ${o.parameters['volume-name'] ?? '?'} as ${o.parameters['export-type'] ?? 'raw'}`);
    await exportVolume(
      { file: this.#file, meter: this.#meter, parameters: o.parameters, name: o.name, uuid: o.uuid, clusterSecret: o.clusterSecret, onBytes: () => this.#bytesMoved(), log: this.#log },
      { signal },
    );
    await this.#finish(signal);
  }

  async #prepareUpload(signal: AbortSignal): Promise<void> {
    const cp = this.#file.checkpoint;
    if (cp.declaredSize !== undefined) this.#meter.setSize(cp.declaredSize);
    if (this.#file.offset === 0) {
      if (cp.declaredSize === undefined) this.#machine.set('pending', 'waiting for the upload: POST /v1/upload?size=N, then PUT the bytes');
      else this.#machine.set('starting', `upload of ${cp.declaredSize} bytes declared; waiting for the bytes`);
      return;
    }
    this.#machine.set('in-progress', `re-hashing the ${this.#file.offset} bytes uploaded before a restart`);
    await this.#file.ensureHash({ signal });
    // Every byte arrived before the restart, and the client was told so: verify now, nobody will send more.
    if (this.#file.offset === cp.declaredSize) return this.#finishUpload();
    this.#machine.set('in-progress', `upload continues at offset ${this.#file.offset}`);
  }

  #bytesMoved(): void {
    const s = this.#machine.state;
    if (s === 'pending' || s === 'starting') this.#machine.set('in-progress');
    this.#machine.touch();
    this.#emit('progress');
  }

  /** Every byte is durable: verify, seal, then offer the file. */
  async #finish(signal: AbortSignal): Promise<void> {
    this.#machine.set('in-progress', 'verifying the file');
    const c = await verifyAndSeal(this.#file, { name: this.#o.name, uuid: this.#o.uuid }, this.#expected(), { signal, onProgress: () => this.#machine.touch() });
    this.#complete = c;
    this.#meter.complete();
    this.#machine.set('ready-for-transfer');
    this.#log(`ready for transfer: ${c.size} bytes, ${c.format}, virtual size ${c.virtualSize}, sha512 ${c.checksum}`);
  }

  async #stillComplete(c: CompleteInfo): Promise<boolean> {
    try {
      const now = await identityOf(this.#file.filePath);
      return sameIdentity(now, c.identity);
    } catch {
      return false;
    }
  }

  #expected(): string | undefined {
    return this.#o.expectedChecksum ?? this.#file.checkpoint.declaredChecksum;
  }

  #timedOut(state: TimedState, ms: number): void {
    const what: Record<TimedState, string> = {
      pending: 'nothing started',
      starting: this.#o.sourceType === 'upload' ? 'no upload bytes arrived' : 'no download bytes arrived',
      'in-progress': 'no bytes moved',
      'ready-for-transfer': 'the backing image manager did not take the file over',
    };
    const err = new DataSourceError('Timeout', `timed out in state "${state}" after ${ms / 1000} s: ${what[state]}`);
    if (state === 'ready-for-transfer') void this.#file.removeData().catch(() => undefined);
    this.#run.abort(err);
    this.#fail(err);
  }

  #fail(err: unknown): void {
    // Shutting down is not a failure: the partial file stays for the next process.
    if (this.#closing && !isDataSourceError(err, 'Timeout')) return;
    if (this.#machine.state === 'failed') return;
    const message = messageOf(err);
    if (this.#machine.set('failed', message)) this.#log(`failed: ${message}`);
  }

  #emit(kind: ChangeKind): void {
    for (const fn of this.#listeners) fn(kind);
  }
}
