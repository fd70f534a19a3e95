// `stratum bi create|upload|download|cleanup|scrub`: backing images through the Longhorn /v1 API (create: downloaded from
// a URL, or exported from a volume). Uploads and downloads
// stream with a progress bar (bytes, rate, ETA) and resume after an interruption: re-running the same command
// continues from the last durable offset (upload) or the bytes already on disk (download). Downloads keep the image's
// zeros as holes (64 KiB blocks, see util/sparse-write.ts), so a sparse raw image costs only its data on the disk.

import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { StoreError, isNotFound } from '../../store/errors.js';
import { errorFromResponse, describeFetchError } from '../../client/http-store.js';
import { writeSparse } from '../../util/sparse-write.js';
import { authHeaders, request } from '../api.js';
import type { BackingImageDiskFileStatus } from '../../api/backing-image.js';
import { SCRUB_REPAIRED } from '../../api/backing-image-manager.js';
import { Progress } from '../progress.js';

const CHUNK = 256 * 1024 * 1024;

interface V1Image {
  name: string;
  sourceType: string;
  currentChecksum: string;
  size: number;
  diskFileStatusMap: Record<string, BackingImageDiskFileStatus>;
  /** Stratum: when a scrub of every ready copy was last asked for (the `scrub` action). */
  scrubRequestedAt?: string;
}

const imageUrl = (server: string, name: string) => `${server}/v1/backingimages/${encodeURIComponent(name)}`;

export async function createImage(server: string, name: string, o: { url?: string | undefined; fromVolume?: string | undefined; exportType?: string; checksum?: string | undefined; minCopies?: string | undefined }): Promise<V1Image> {
  const body: Record<string, unknown> = o.fromVolume
    ? { name, sourceType: 'export-from-volume', parameters: { 'volume-name': o.fromVolume, 'export-type': o.exportType ?? 'raw' } }
    : { name, sourceType: 'download', parameters: { url: o.url } };
  if (o.checksum) body['expectedChecksum'] = o.checksum;
  if (o.minCopies !== undefined) body['minNumberOfCopies'] = Number(o.minCopies);
  return (await request('POST', `${server}/v1/backingimages`, { body })).body as V1Image;
}

export async function cleanupImage(server: string, name: string, disks: string[]): Promise<V1Image> {
  return (await request('POST', `${imageUrl(server, name)}?action=backingImageCleanup`, { body: { disks } })).body as V1Image;
}

async function sha512File(path: string, progress: Progress): Promise<string> {
  const hash = createHash('sha512');
  const stream = createReadStream(path, { highWaterMark: 4 * 1024 * 1024 });
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    progress.add((chunk as Buffer).length);
  }
  return hash.digest('hex');
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Uploads FILE as backing image NAME, creating the image when it does not exist; resumes where a previous run stopped. */
export async function uploadImage(server: string, name: string, file: string, o: { checksum?: string; timeoutSeconds?: number; log: (line: string) => void }): Promise<void> {
  const size = (await stat(file)).size;
  let image: V1Image | undefined;
  try {
    image = (await request('GET', imageUrl(server, name))).body as V1Image;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  let checksum = o.checksum ?? image?.currentChecksum;
  if (!checksum) {
    const p = new Progress('hashing', size);
    checksum = await sha512File(file, p);
    p.done();
  }
  if (!image) {
    image = (await request('POST', `${server}/v1/backingimages`, { body: { name, sourceType: 'upload', parameters: {}, expectedChecksum: checksum } })).body as V1Image;
    o.log(`backingimage.longhorn.io/${name} created`);
  } else if (image.sourceType !== 'upload') {
    throw new StoreError('BadRequest', `backing image "${name}" exists and is a ${image.sourceType} image, not an upload`);
  } else if (Object.values(image.diskFileStatusMap).some((s) => s.state === 'ready')) {
    if (image.currentChecksum && image.currentChecksum !== checksum) {
      throw new StoreError('Conflict', `backing image "${name}" is already ready with sha512 ${image.currentChecksum}, not this file's ${checksum}`);
    }
    o.log(`backing image ${name} is already uploaded and ready`);
    return;
  }
  // The data source pod takes a moment to start: declaring is refused (409) until it can take bytes.
  const deadline = Date.now() + (o.timeoutSeconds ?? 120) * 1000;
  for (;;) {
    try {
      await request('POST', `${imageUrl(server, name)}?action=upload&size=${size}&checksum=${checksum}`);
      break;
    } catch (err) {
      const e = err as StoreError;
      if (e.code !== 'Conflict' || !/cannot take an upload yet/.test(e.message) || Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
  let offset = Number(((await request('GET', `${imageUrl(server, name)}/upload`)).body as { offset: number }).offset);
  if (offset > 0) o.log(`resuming the upload at ${offset} of ${size} bytes`);
  const progress = new Progress('uploading', size, offset);
  while (offset < size) {
    const end = Math.min(size, offset + CHUNK);
    const body = Readable.toWeb(createReadStream(file, { start: offset, end: end - 1, highWaterMark: 4 * 1024 * 1024 }).on('data', (c) => progress.add((c as Buffer).length)));
    let res: Response;
    try {
      res = await fetch(`${imageUrl(server, name)}/upload?offset=${offset}`, {
        method: 'PUT',
        headers: { ...authHeaders(), 'content-type': 'application/octet-stream', 'content-length': String(end - offset) },
        body: body as ReadableStream,
        duplex: 'half',
      } as RequestInit);
    } catch (err) {
      throw new StoreError('Internal', `the upload broke at about ${offset} bytes (${describeFetchError(err)}): run the same command again to resume`);
    }
    if (!res.ok) throw await errorFromResponse(res, 'upload');
    offset = Number(((await res.json()) as { offset: number }).offset);
    progress.set(offset);
  }
  progress.done();
  o.log(`uploaded ${size} bytes; waiting for the first copy to be ready`);
  for (;;) {
    const img = (await request('GET', imageUrl(server, name))).body as V1Image;
    const states = Object.values(img.diskFileStatusMap);
    if (states.some((s) => s.state === 'ready')) {
      o.log(`backing image ${name} is ready (sha512 ${img.currentChecksum.slice(0, 16)}…)`);
      return;
    }
    const failed = states.find((s) => s.state === 'failed');
    if (failed) throw new StoreError('Internal', `backing image ${name} failed: ${failed.message}`);
    if (Date.now() > deadline + 600_000) throw new StoreError('Internal', `backing image ${name} is not ready after the upload; see stratum describe bi ${name}`);
    await sleep(500);
  }
}

/** What a cut try leaves for the next: PART holds `length` bytes (holes included) and `hash` has hashed them. */
interface Kept {
  hash: Hash;
  length: number;
}

/** A download cut short by the network or by the server's side (a restart, an upgrade): resuming it may succeed. */
class Interrupted extends Error {
  constructor(message: string, readonly kept?: Kept) {
    super(message);
  }
}

export interface DownloadOptions {
  /** Tries in all, each resuming from the bytes already in OUT.part (default 6). */
  attempts?: number;
  /** The pause before the second try, doubled for each further one (default 1 s). */
  retryDelayMs?: number;
  log?: (line: string) => void;
}

/**
 * Downloads a ready copy of NAME to OUT (via OUT.part, resumed by Range), verifying the image's SHA-512. A connection
 * cut midway (a manager restarting, a backing-image manager retired by an upgrade) is resumed by itself a few times;
 * an answer that says the request is wrong (4xx) or a copy that does not match its checksum never is.
 */
export async function downloadImage(server: string, name: string, out: string, o: DownloadOptions = {}): Promise<void> {
  const img = (await request('GET', imageUrl(server, name))).body as V1Image;
  const part = `${out}.part`;
  const attempts = Math.max(1, o.attempts ?? 6);
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let kept: Kept | undefined;
  for (let n = 1; ; n++) {
    try {
      await downloadOnce(server, name, part, img, kept);
      break;
    } catch (err) {
      if (!(err instanceof Interrupted)) throw err;
      kept = err.kept;
      if (n >= attempts) throw new StoreError('Unavailable', `${err.message}; gave up after ${attempts} tries: run the same command again to resume from the ${(await sizeOf(part)) ?? 0} bytes in ${part}`);
      const wait = (o.retryDelayMs ?? 1000) * 2 ** (n - 1);
      log(`stratum: ${err.message}; resuming from the bytes in ${part} in ${(wait / 1000).toFixed(1)} s (try ${n + 1} of ${attempts})`);
      await sleep(wait);
    }
  }
  await rename(part, out);
}

async function sizeOf(path: string): Promise<number | undefined> {
  return stat(path).then((s) => s.size, () => undefined);
}

/**
 * One try: continues PART from its length (or starts it over when the server ignores the Range) and checks the
 * SHA-512. The bytes already in PART are hashed from the disk, unless the previous try of this command kept their hash.
 */
async function downloadOnce(server: string, name: string, part: string, img: V1Image, kept: Kept | undefined): Promise<void> {
  const have = (await sizeOf(part)) ?? 0;
  let hash: Hash;
  if (kept && kept.length === have) hash = kept.hash;
  else {
    hash = createHash('sha512');
    if (have > 0) for await (const c of createReadStream(part)) hash.update(c as Buffer);
  }
  // identity: fetch would otherwise ask for gzip, which costs CPU on both ends for images that rarely compress.
  const headers: Record<string, string> = { ...authHeaders(), 'accept-encoding': 'identity', ...(have > 0 ? { range: `bytes=${have}-` } : {}) };
  const res = await fetch(`${imageUrl(server, name)}/download`, { headers }).catch((err: unknown) => {
    throw new Interrupted(`cannot reach the API server at ${server}: ${describeFetchError(err)}`);
  });
  if (!res.ok || !res.body) {
    const err = await errorFromResponse(res, 'download');
    if (res.status >= 500) throw new Interrupted(`the download of ${name} was refused for now (${res.status}): ${err.message}`);
    throw err;
  }
  const resumed = res.status === 206;
  const start = resumed ? have : 0;
  const total = start + Number(res.headers.get('content-length') ?? 0) || img.size;
  const fresh = !resumed ? createHash('sha512') : hash;
  const progress = new Progress('downloading', total, start);
  const body = (Readable.fromWeb(res.body as never) as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const fh = await open(part, resumed ? 'r+' : 'w');
  let pos = start;
  try {
    // The file may end before `start` when its last bytes were zeros never written: those read as zeros after the
    // ftruncate below, like every hole.
    let end = Math.min(start, (await fh.stat()).size);
    // Cut short: PART is made exactly the bytes hashed (trailing zeros never written become a hole), for the next try.
    // Called as `return await cut(…)`: awaited inside the try, so its rejection is handled before the finally runs.
    const cut = async (why: string): Promise<never> => {
      await fh.truncate(pos);
      throw new Interrupted(`the connection closed after ${pos} of ${total} bytes of ${name}${why}`, { hash: fresh, length: pos });
    };
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await body.next();
      } catch (err) {
        return await cut(`: ${describeFetchError(err)}`);
      }
      if (next.done) break;
      const c = next.value;
      fresh.update(c);
      end = await writeSparse(fh, c, pos, end);
      pos += c.length;
      progress.add(c.length);
    }
    if (pos < total) return await cut('');
    await fh.truncate(pos);
  } finally {
    await fh.close();
    progress.done();
  }
  const sum = fresh.digest('hex');
  if (img.currentChecksum && sum !== img.currentChecksum) {
    throw new StoreError('Internal', `downloaded ${part} has sha512 ${sum} but the image's is ${img.currentChecksum}; delete the .part file and retry`);
  }
}

/**
 * `stratum bi scrub NAME`: asks for every ready copy to be read again now and checked against the image's SHA-512
 * (the `/v1` action `scrub`; the backing-image-manager controller does the rest). With `wait`, follows the copies
 * until each was verified after the request, repaired, or failed, and says which.
 */
export async function scrubImage(server: string, name: string, o: { wait: boolean; timeoutSeconds: number; log: (line: string) => void }): Promise<boolean> {
  const asked = (await request('POST', `${imageUrl(server, name)}?action=scrub`, { body: {} })).body as V1Image;
  const requestedAt = asked.scrubRequestedAt ?? '';
  const copies = Object.entries(asked.diskFileStatusMap).filter(([, s]) => s.state === 'ready').map(([disk]) => disk);
  o.log(`backingimage.longhorn.io/${name} scrub requested for ${copies.length} ready cop${copies.length === 1 ? 'y' : 'ies'}`);
  if (!o.wait) return true;
  const deadline = Date.now() + o.timeoutSeconds * 1000;
  const left = new Set(copies);
  let clean = true;
  while (left.size > 0) {
    const now = (await request('GET', imageUrl(server, name))).body as V1Image;
    for (const disk of [...left]) {
      const s = now.diskFileStatusMap[disk];
      let outcome: string | undefined;
      if (!s) outcome = 'gone: the copy was removed from this disk';
      else if (s.state === 'failed') outcome = `failed: ${s.message ?? ''}`;
      else if (s.state === 'ready' && !s.verifiedAt) outcome = 'not scrubbed: its backing-image manager is of a release without scrubs';
      // This request answered; a clean scrub clears the news of an earlier repair, so a repair reported is this one's.
      else if (s.state === 'ready' && s.scrubRequest === requestedAt) outcome = s.message?.startsWith(SCRUB_REPAIRED) ? s.message : 'verified: every byte hashes to the checksum';
      if (outcome === undefined) continue;
      if (!outcome.startsWith('verified')) clean = false;
      o.log(`disk ${disk}: ${outcome}`);
      left.delete(disk);
    }
    if (left.size === 0) break;
    if (Date.now() > deadline) throw new StoreError('Internal', `timed out: the scrub of ${[...left].join(', ')} did not end within ${o.timeoutSeconds} s; see stratum describe bi ${name}`);
    await sleep(1000);
  }
  return clean;
}
