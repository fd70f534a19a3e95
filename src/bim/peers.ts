// The receiver's client of one sending peer: its chunk manifest and byte ranges, over a small pool of keep-alive
// connections (httpclient.ts: fixed read buffers, so a transfer allocates nothing per read). Every request carries
// the sync's session id (the sender counts one send per session, not per request) and an idle timeout: a request
// that gets no bytes for `idleMs` is abandoned and its chunk retried, possibly on another peer.

import { BimError, messageOf } from './errors.js';
import { HttpConnection, type ResponseHead } from './httpclient.js';

/** Header naming the sync a request belongs to; the sender's concurrency limit counts sessions. */
export const SESSION_HEADER = 'x-stratum-sync-session';
/** Header naming the receiving disk, shown in the sender's `senders` list. */
export const RECEIVER_HEADER = 'x-stratum-receiver';

export type ManifestAnswer = { kind: 'manifest'; manifest: unknown } | { kind: 'pending'; message: string };

/** Largest manifest accepted (a 1 TiB file in 4 MiB chunks is about 30 MB of JSON). */
const MAX_MANIFEST_BYTES = 256 * 1024 * 1024;
const MAX_ERROR_BODY = 64 * 1024;

export class Peer {
  readonly url: string;
  /** Consecutive failures, for back-off. */
  failures = 0;
  /** Clock time before which this peer is not asked again. */
  backoffUntil = 0;
  /** Set when the peer holds other content than wanted: it is never asked again in this sync. */
  excluded: string | undefined;
  readonly #host: string;
  readonly #port: number;
  readonly #base: string;
  readonly #query: string;
  readonly #headers: Record<string, string>;
  readonly #idle: HttpConnection[] = [];
  /** Connections taken from the pool for the current request (they may be stale). */
  readonly #wasPooled = new WeakSet<HttpConnection>();

  constructor(url: string, opts: { name: string; uuid: string; session: string; receiver: string; headers?: Record<string, string> }) {
    this.url = url;
    const u = new URL(url);
    if (u.protocol !== 'http:') throw new BimError('InvalidArgument', `peer ${url}: only http peers are supported by the sync client`);
    this.#host = u.hostname.replace(/^\[|\]$/g, '');
    this.#port = Number(u.port || 80);
    this.#base = `${u.pathname.replace(/\/+$/, '')}/v1/files/${encodeURIComponent(opts.name)}`;
    this.#query = `uuid=${encodeURIComponent(opts.uuid)}`;
    this.#headers = { ...opts.headers, [SESSION_HEADER]: opts.session, [RECEIVER_HEADER]: opts.receiver };
  }

  async manifest(chunkSize: number, opts: { signal: AbortSignal; timeoutMs: number }): Promise<ManifestAnswer> {
    const signal = AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs)]);
    const { head, body } = await this.#collect(`${this.#base}/chunks?${this.#query}&size=${chunkSize}`, signal, MAX_MANIFEST_BYTES);
    if (head.status === 503) return { kind: 'pending', message: errorMessage(body) };
    if (head.status !== 200) throw this.#httpError(head.status, body);
    try {
      return { kind: 'manifest', manifest: JSON.parse(body) as unknown };
    } catch (err) {
      throw new BimError('PeerFailed', `${this.url} sent a chunk manifest that is not JSON: ${messageOf(err)}`);
    }
  }

  /**
   * Streams bytes [offset, offset+length) to `onPiece` (a slice to copy synchronously; return false to pause until
   * `onPause` resolves). Fails when the peer refuses or sends a different amount.
   */
  async fetchRange(
    offset: number,
    length: number,
    opts: { signal: AbortSignal; idleMs: number; onPiece: (piece: Buffer) => boolean; onPause: () => Promise<void> },
  ): Promise<void> {
    const idle = new AbortController();
    const stalled = () => idle.abort(new BimError('PeerFailed', `${this.url} sent nothing for ${opts.idleMs / 1000} s while sending bytes at offset ${offset}`));
    let timer = setTimeout(stalled, opts.idleMs);
    const signal = AbortSignal.any([opts.signal, idle.signal]);
    let error = '';
    try {
      await this.#request(`${this.#base}/data?${this.#query}&offset=${offset}&length=${length}`, signal, {
        onHead: (head) => {
          if (head.status !== 200) return;
          if (head.contentLength !== length) throw new BimError('PeerFailed', `${this.url} answered with ${head.contentLength} bytes for a range of ${length} at offset ${offset}`);
        },
        onBody: (piece, head) => {
          clearTimeout(timer);
          timer = setTimeout(stalled, opts.idleMs);
          if (head.status === 200) return opts.onPiece(piece);
          if (error.length < MAX_ERROR_BODY) error += piece.toString('utf8');
          return true;
        },
        onPause: () => opts.onPause(),
        onDone: (head) => {
          if (head.status !== 200) throw this.#httpError(head.status, error);
        },
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes idle connections. */
  close(): void {
    for (const c of this.#idle.splice(0)) c.destroy(new Error('closed'));
  }

  async #collect(path: string, signal: AbortSignal, limit: number): Promise<{ head: ResponseHead; body: string }> {
    const parts: Buffer[] = [];
    let size = 0;
    let head: ResponseHead | undefined;
    await this.#request(path, signal, {
      onHead: (h) => {
        if (h.contentLength > limit) throw new BimError('PeerFailed', `${this.url} answered with ${h.contentLength} bytes, more than the ${limit} accepted`);
      },
      onBody: (piece) => {
        parts.push(Buffer.from(piece));
        size += piece.length;
        return true;
      },
      onPause: async () => undefined,
      onDone: (h) => (head = h),
    });
    return { head: head!, body: Buffer.concat(parts, size).toString('utf8') };
  }

  async #request(
    path: string,
    signal: AbortSignal,
    h: {
      onHead: (head: ResponseHead) => void;
      onBody: (piece: Buffer, head: ResponseHead) => boolean;
      onPause: () => Promise<void>;
      onDone: (head: ResponseHead) => void;
    },
  ): Promise<void> {
    // A pooled keep-alive connection may have been closed by the peer meanwhile: retry once on a fresh one.
    for (let attempt = 0; ; attempt++) {
      const conn = await this.#connection(signal);
      let head: ResponseHead | undefined;
      try {
        await conn.request(path, this.#headers, {
          onHead: (x) => {
            head = x;
            h.onHead(x);
          },
          onBody: (piece) => h.onBody(piece, head!),
          onPause: h.onPause,
        }, signal);
      } catch (err) {
        if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : err;
        if (attempt === 0 && conn.failedBeforeResponse && this.#wasPooled.has(conn)) continue;
        throw isPeerError(err) ? err : new BimError('PeerFailed', `${this.url} failed: ${messageOf(err)}`, { cause: err });
      } finally {
        this.#wasPooled.delete(conn);
      }
      if (conn.alive) this.#idle.push(conn);
      h.onDone(head!);
      return;
    }
  }

  async #connection(signal: AbortSignal): Promise<HttpConnection> {
    for (let c = this.#idle.pop(); c; c = this.#idle.pop()) {
      if (c.alive) {
        this.#wasPooled.add(c);
        return c;
      }
    }
    try {
      return await HttpConnection.open(this.#host, this.#port, signal);
    } catch (err) {
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : err;
      const code = (err as NodeJS.ErrnoException).code;
      throw new BimError('PeerFailed', `${this.url} is unreachable: ${code ?? messageOf(err)}`, { cause: err });
    }
  }

  #httpError(status: number, body: string): BimError {
    const msg = errorMessage(body);
    if (status === 429) return new BimError('Busy', `${this.url} is busy: ${msg}`);
    return new BimError('PeerFailed', `${this.url} answered ${status}: ${msg}`);
  }
}

function isPeerError(err: unknown): boolean {
  return err instanceof BimError;
}

function errorMessage(body: string): string {
  try {
    const o = JSON.parse(body) as { message?: unknown };
    if (typeof o.message === 'string') return o.message;
  } catch {
    // not JSON: use the text itself
  }
  return body.slice(0, 300) || '(empty body)';
}
