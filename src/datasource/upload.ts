// The upload session: a resumable, chunked upload in the manner of tus. The client declares the size (and
// optionally the SHA-512), asks for the current offset, and sends bytes from that offset; the body is streamed to
// the file through 4 MiB buffers, never held whole. The acknowledged offset is durable (fsync before answering).
// A chunk cut off by the client keeps what arrived, so the next chunk continues there; a chunk that would go
// past the declared size is refused as a whole and rolled back, hash included.

import type { Readable } from 'node:stream';
import { ChunkWriter } from './chunk-writer.js';
import { DataSourceError } from './errors.js';
import type { ProgressMeter } from './progress.js';
import type { WorkFile } from './workfile.js';

export interface UploadHooks {
  /** Bytes arrived (state → in-progress, idle timeout re-armed, watchers told). */
  onBytes: () => void;
  /**
   * The last byte is durable: verify and finish, in the background. The last chunk is answered at once: verifying a
   * large image may take longer than any HTTP client waits for an answer. The state says how it ended.
   */
  onComplete: () => void;
}

export interface UploadStatus {
  offset: number;
  size: number | undefined;
  checksum: string | undefined;
}

export class UploadSession {
  readonly #file: WorkFile;
  readonly #meter: ProgressMeter;
  readonly #hooks: UploadHooks;
  #busy = false;

  constructor(file: WorkFile, meter: ProgressMeter, hooks: UploadHooks) {
    this.#file = file;
    this.#meter = meter;
    this.#hooks = hooks;
  }

  status(): UploadStatus {
    const cp = this.#file.checkpoint;
    return { offset: this.#file.durableOffset, size: cp.declaredSize, checksum: cp.declaredChecksum };
  }

  /** Declares the upload. Repeating the same declaration is fine; another size or checksum is refused. */
  async declare(size: number, checksum: string | undefined, { signal }: { signal?: AbortSignal } = {}): Promise<UploadStatus> {
    const cp = this.#file.checkpoint;
    if (cp.declaredSize !== undefined) {
      if (cp.declaredSize !== size) {
        throw new DataSourceError('WrongState', `the upload was declared with size ${cp.declaredSize}, not ${size}`, { offset: this.#file.durableOffset });
      }
      if (checksum !== undefined && cp.declaredChecksum !== undefined && checksum !== cp.declaredChecksum) {
        throw new DataSourceError('WrongState', `the upload was declared with checksum ${cp.declaredChecksum}, not ${checksum}`);
      }
      if (checksum === undefined || cp.declaredChecksum !== undefined) return this.status();
    }
    this.#file.patch({ declaredSize: size, ...(checksum === undefined ? {} : { declaredChecksum: checksum }) });
    await this.#file.persist({ signal });
    this.#meter.setSize(size);
    return this.status();
  }

  /**
   * Streams `body` into the file from `offset`, which must be the current offset. Resolves with the new durable
   * offset; after the last chunk, verification has begun. `length` is the Content-Length when there is one.
   */
  async receive(offset: number, length: number | undefined, body: Readable, { signal }: { signal: AbortSignal }): Promise<number> {
    const file = this.#file;
    const size = file.checkpoint.declaredSize;
    if (size === undefined) throw new DataSourceError('WrongState', 'declare the upload first: POST /v1/upload?size=N');
    if (this.#busy) throw new DataSourceError('UploadBusy', `another upload request is still writing at offset ${file.offset}`, { offset: file.durableOffset });
    if (offset !== file.durableOffset) {
      throw new DataSourceError('OffsetMismatch', `the upload is at offset ${file.durableOffset}, not ${offset}`, { offset: file.durableOffset });
    }
    if (length !== undefined && offset + length > size) {
      throw new DataSourceError('TooLarge', `upload is larger than the declared size ${size} (${offset} + ${length} bytes)`, { offset });
    }
    this.#busy = true;
    const onAbort = (): void => {
      body.destroy(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      // After a restart the prefix is re-hashed here, once, before the first new byte.
      await file.ensureHash({ signal });
      const mark = await file.mark();
      const writer = new ChunkWriter(file);
      let overflow = false;
      let failure: unknown;
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          if (writer.position + chunk.length > size) {
            overflow = true;
            break;
          }
          await writer.push(chunk);
          this.#meter.update(writer.position);
          this.#hooks.onBytes();
        }
      } catch (err) {
        // The client went away mid-chunk: keep what arrived, it is a valid prefix.
        failure = err;
      }
      await writer.flush();
      if (overflow) {
        await file.rollback(mark);
        this.#meter.update(file.offset);
        throw new DataSourceError('TooLarge', `upload is larger than the declared size ${size}`, { offset: file.offset });
      }
      await file.sync({ signal });
      this.#meter.update(file.offset);
      if (failure !== undefined) throw failure;
      if (file.offset === size) this.#hooks.onComplete();
      return file.durableOffset;
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.#busy = false;
    }
  }
}
