// The download job: GET the URL into the work file in one pass, SHA-512 computed as the bytes are written. A dropped
// connection, a stall (no bytes for the stall timeout) or a 5xx is retried with exponential backoff, resuming by
// Range when the server allows it (see resume.ts for when the download and its hash start over). Retries are
// bounded by consecutive attempts that got no further than the furthest byte ever reached, so a long download over
// a flaky link finishes, and a server that always dies at the same byte fails.

import type { IncomingMessage } from 'node:http';
import type { Clock, TimerHandle } from '../controller-kit/clock.js';
import { ChunkWriter } from './chunk-writer.js';
import { DataSourceError, isDataSourceError, messageOf } from './errors.js';
import { getFollowingRedirects } from './http-get.js';
import type { ProgressMeter } from './progress.js';
import type { ProxyEnv } from './proxy.js';
import type { RequestHeaders } from './request-headers.js';
import { backoffMs, judgeResponse, resumeHeaders } from './resume.js';
import { redactUrl } from './source-url.js';
import { ensureSpace, type WorkFile } from './workfile.js';
import { diskSpace } from '../util/disk.js';

export interface DownloadOptions {
  url: URL;
  headers: RequestHeaders;
  env: ProxyEnv;
  file: WorkFile;
  meter: ProgressMeter;
  clock: Clock;
  stallTimeoutMs: number;
  /** Connect to loopback, private, link-local … addresses too (the setting allow-private-download-urls). */
  allowPrivate: boolean;
  /** Consecutive attempts without new ground before giving up. */
  retries: number;
  retryBaseMs: number;
  maxRedirects: number;
  /** fdatasync + checkpoint after this many bytes or `checkpointMs`, whichever first. */
  checkpointBytes: number;
  checkpointMs: number;
  /** Body bytes arrived (state → in-progress, idle timeout re-armed, watchers told); also called before the first. */
  onBytes: () => void;
  log: (line: string) => void;
}

const TLS_ERROR = /CERT|SELF_SIGNED|TLS|SSL/;
/** Left free on the disk by a download of unknown length. */
const UNKNOWN_LENGTH_RESERVE = 64 * 1024 * 1024;

/** Resolves once every byte is in the work file and fsynced; rejects with a DataSourceError saying why not. */
export async function download(o: DownloadOptions, { signal }: { signal: AbortSignal }): Promise<void> {
  let failures = 0;
  let furthest = o.file.offset;
  let attempts = 0;
  for (;;) {
    signal.throwIfAborted();
    attempts++;
    try {
      const restart = await attempt(o, signal);
      if (restart === undefined) return;
      // The server could not continue where we were: start over from byte 0 at once. This counts against the
      // retries too, or a server that answers every request with an unusable 206 would loop forever.
      if (o.file.offset <= furthest && ++failures > o.retries) {
        throw new DataSourceError('SourceRefused', `download of ${redactUrl(o.url.href)} cannot proceed: ${restart} (${attempts} attempts)`);
      }
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      const e = classify(err, o.url);
      if (!retryable(e)) throw e;
      if (o.file.offset > furthest) {
        furthest = o.file.offset;
        failures = 1;
      } else failures++;
      if (failures > o.retries) {
        throw new DataSourceError(e.code, `${e.message} (gave up after ${attempts} attempts; the last ${failures} got no further than byte ${furthest})`, { cause: e });
      }
      const wait = backoffMs(failures, o.retryBaseMs);
      o.log(`download attempt ${attempts} failed at byte ${o.file.offset}: ${e.message}; retrying in ${wait} ms`);
      await o.clock.sleep(wait, signal);
    }
  }
}

/** One request. Undefined when the file is complete, else why it must start over from 0 without a range. */
async function attempt(o: DownloadOptions, signal: AbortSignal): Promise<string | undefined> {
  const { file, meter } = o;
  const stall = new AbortController();
  let timer: TimerHandle | undefined;
  // A resettable idle timer, not AbortSignal.timeout: the limit is on silence, not on the length of the download.
  const kick = (): void => {
    if (timer !== undefined) o.clock.clearTimeout(timer);
    timer = o.clock.setTimeout(() => {
      const where = meter.size === undefined ? `byte ${file.offset}` : `byte ${file.offset} of ${meter.size}`;
      stall.abort(new DataSourceError('Stalled', `download stalled: no bytes received for ${o.stallTimeoutMs / 1000} s at ${where}`));
    }, o.stallTimeoutMs);
  };
  const reqSignal = AbortSignal.any([signal, stall.signal]);
  let res: IncomingMessage | undefined;
  kick();
  try {
    let validator = file.checkpoint.validator;
    let ranged = resumeHeaders(file.offset, validator);
    if (file.offset > 0 && ranged === undefined) {
      o.log(`restarting the download from byte 0: the server does not accept ranges (was at ${file.offset})`);
      await file.reset({ signal });
      meter.reset(0);
      ranged = undefined;
    }
    const offset = file.offset;
    ({ res } = await getFollowingRedirects(o.url, { headers: o.headers, extra: ranged ?? {}, env: o.env, maxRedirects: o.maxRedirects, allowPrivate: o.allowPrivate, signal: reqSignal }));
    kick();
    const d = judgeResponse(offset, res.statusCode ?? 0, res.headers, validator);
    let total: number | undefined;
    switch (d.action) {
      case 'fail': {
        const hint = res.statusCode === 401 || res.statusCode === 403 ? ' (check the credentials in the header file)' : '';
        throw new DataSourceError('SourceRefused', `download of ${redactUrl(o.url.href)} failed: ${d.reason} ${res.statusMessage ?? ''}`.trimEnd() + hint);
      }
      case 'retry':
        throw new DataSourceError('SourceUnreachable', `download of ${redactUrl(o.url.href)}: ${d.reason}`);
      case 'restart':
        o.log(`restarting the download from byte 0: ${d.reason}`);
        res.destroy();
        await file.reset({ signal });
        meter.reset(0);
        return d.reason;
      case 'from-zero':
        if (offset > 0) {
          o.log(`restarting the download from byte 0: ${d.reason ?? ''}`);
          await file.reset({ signal });
          meter.reset(0);
        }
        validator = d.validator;
        file.patch({ validator });
        await file.persist({ signal });
        total = validator.totalSize;
        break;
      case 'append':
        o.log(`resuming the download at byte ${offset}`);
        total = d.totalSize;
        break;
    }
    meter.setSize(total);
    if (total !== undefined) await ensureSpace(file.dir, total - file.offset);
    // Without a length the server could send forever: the disk's free space (less a margin for everyone else) is
    // the bound, checked as the bytes arrive.
    const limit = total === undefined ? file.offset + Math.max(0, (await diskSpace(file.dir)).free - UNKNOWN_LENGTH_RESERVE) : undefined;
    o.onBytes();
    await receive(o, res, kick, reqSignal, limit);
    if (total !== undefined && file.offset !== total) {
      throw new DataSourceError('Truncated', `the connection closed at byte ${file.offset} of ${total}`);
    }
    if (total === undefined && !res.complete) throw new DataSourceError('Truncated', `the connection closed at byte ${file.offset} before the end of the file`);
    return undefined;
  } catch (err) {
    res?.destroy();
    if (!signal.aborted && stall.signal.aborted) throw stall.signal.reason;
    throw err;
  } finally {
    if (timer !== undefined) o.clock.clearTimeout(timer);
  }
}

/** Streams the body into the file; whatever arrived is flushed and made durable even when the body fails. */
async function receive(o: DownloadOptions, res: IncomingMessage, kick: () => void, signal: AbortSignal, limit?: number): Promise<void> {
  const { file, meter } = o;
  const writer = new ChunkWriter(file);
  let since = file.offset;
  let lastSync = o.clock.now();
  let failure: unknown;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      kick();
      if (limit !== undefined && writer.position + chunk.length > limit) {
        res.destroy();
        throw new DataSourceError('InsufficientStorage', `the download has no length and reached ${writer.position} bytes, all the disk can hold (keeping ${UNKNOWN_LENGTH_RESERVE} bytes free)`);
      }
      await writer.push(chunk);
      meter.update(writer.position);
      o.onBytes();
      if (writer.position - since >= o.checkpointBytes || o.clock.now() - lastSync >= o.checkpointMs) {
        await writer.flush();
        await file.sync({ signal });
        since = file.offset;
        lastSync = o.clock.now();
      }
    }
  } catch (err) {
    failure = err;
  }
  try {
    await writer.flush();
    await file.sync();
  } catch (err) {
    failure ??= err;
  }
  meter.update(file.offset);
  if (failure !== undefined) throw failure;
}

// Syscalls of the work file: their failures (ENOSPC, EIO) are not the network's and retrying will not help.
const FILE_SYSCALLS = new Set(['open', 'write', 'fsync', 'fdatasync', 'ftruncate', 'rename', 'statfs', 'close', 'unlink', 'mkdir', 'fstat']);

/** Errors from the network become retryable DataSourceErrors; file-system errors become fatal ones. */
function classify(err: unknown, url: URL): DataSourceError {
  if (isDataSourceError(err)) return err;
  const e = err as NodeJS.ErrnoException;
  if (e.syscall !== undefined && FILE_SYSCALLS.has(e.syscall)) {
    return new DataSourceError('Internal', `the work file could not be written: ${messageOf(err)}`, { cause: err });
  }
  const code = e.code ?? '';
  if (TLS_ERROR.test(code)) {
    return new DataSourceError('SourceRefused', `TLS verification of ${url.host} failed (${code}); for a private CA set NODE_EXTRA_CA_CERTS`, { cause: err });
  }
  return new DataSourceError('SourceUnreachable', `download of ${redactUrl(url.href)} failed: ${code ? `${code} ` : ''}${messageOf(err)}`, { cause: err });
}

function retryable(e: DataSourceError): boolean {
  return e.code === 'SourceUnreachable' || e.code === 'Stalled' || e.code === 'Truncated';
}
