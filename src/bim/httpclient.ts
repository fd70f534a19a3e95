// A minimal HTTP/1.1 client for the sync path, over keep-alive sockets that read into one fixed 256 KiB buffer each
// (net's `onread`). Why not fetch or node:http: both allocate a fresh buffer for every socket read, and V8 lets
// tens of MiB of that garbage pile up before collecting it, which breaks the receiver's memory bound on big files.
// Here the body is handed out as slices of the fixed buffer that the caller must copy synchronously; returning
// false pauses the socket until the caller's async `onPause` (writing to disk) is done: real backpressure.
//
// Only what our own sender sends is understood: a status line, headers, and a body with Content-Length (no
// chunked encoding, no pipelining). Anything else fails the request with a message saying so.

import { connect, type Socket } from 'node:net';
import { BimError } from './errors.js';

export interface ResponseHead {
  status: number;
  headers: Map<string, string>;
  contentLength: number;
}

export interface RequestHandlers {
  /** Called once the headers are in. */
  onHead(head: ResponseHead): void;
  /** A slice of the body, valid only during the call. Return false to pause until `onPause` resolves. */
  onBody(piece: Buffer): boolean;
  onPause(): Promise<void>;
}

/** The fixed read buffer of each connection, and so the largest body piece handed out at once. Large enough that a
 *  read drains what loopback or a fast link queued in one syscall. */
export const READ_BUFFER = 256 * 1024;
const MAX_HEAD = 16 * 1024;

export class HttpConnection {
  readonly #socket: Socket;
  readonly #host: string;
  #head: Buffer = Buffer.alloc(0);
  #state: 'idle' | 'head' | 'body' | 'closed' = 'idle';
  #remaining = 0;
  #handlers: RequestHandlers | undefined;
  #finish: ((err?: unknown) => void) | undefined;
  #pausing: Promise<void> | undefined;
  #gotBytes = false;
  /** False once the server said `Connection: close` or anything went wrong. */
  reusable = true;

  private constructor(socket: Socket, host: string) {
    this.#socket = socket;
    this.#host = host;
    socket.on('error', (err) => this.#fail(err));
    socket.on('close', () => this.#fail(new BimError('PeerFailed', `${host} closed the connection${this.#state === 'body' ? ` with ${this.#remaining} body bytes still to come` : ''}`)));
  }

  static open(host: string, port: number, signal: AbortSignal): Promise<HttpConnection> {
    return new Promise((resolve, reject) => {
      let onRead: (data: Buffer) => boolean = () => true;
      const buffer = Buffer.allocUnsafe(READ_BUFFER);
      const socket = connect({ host, port, noDelay: true, onread: { buffer, callback: (n: number, buf: Uint8Array) => onRead(Buffer.from(buf.buffer, buf.byteOffset, n)) } });
      const conn = new HttpConnection(socket, `${host}:${port}`);
      onRead = (data) => conn.#onRead(data);
      const onAbort = () => socket.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      signal.addEventListener('abort', onAbort, { once: true });
      socket.once('connect', () => {
        signal.removeEventListener('abort', onAbort);
        resolve(conn);
      });
      socket.once('error', (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      });
    });
  }

  get alive(): boolean {
    return this.#state === 'idle' && this.reusable && !this.#socket.destroyed;
  }

  /** Sends a GET and resolves when the whole body was handed to `handlers` (and any pause ended). */
  request(path: string, headers: Record<string, string>, handlers: RequestHandlers, signal: AbortSignal): Promise<void> {
    if (this.#state !== 'idle') return Promise.reject(new BimError('Internal', `connection to ${this.#host} is busy`));
    this.#state = 'head';
    this.#head = Buffer.alloc(0);
    this.#handlers = handlers;
    this.#gotBytes = false;
    const lines = [`GET ${path} HTTP/1.1`, `host: ${this.#host}`, 'connection: keep-alive', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => this.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      signal.addEventListener('abort', onAbort, { once: true });
      this.#finish = (err) => {
        signal.removeEventListener('abort', onAbort);
        this.#finish = undefined;
        this.#handlers = undefined;
        if (err === undefined) resolve();
        else reject(err);
      };
      if (signal.aborted) onAbort();
      else this.#socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
  }

  /** True when the request failed before any response byte: a stale keep-alive socket, worth one retry. */
  get failedBeforeResponse(): boolean {
    return !this.#gotBytes;
  }

  destroy(err: Error): void {
    this.reusable = false;
    this.#socket.destroy();
    this.#fail(err);
  }

  #fail(err: unknown): void {
    this.reusable = false;
    this.#state = 'closed';
    this.#finish?.(err);
  }

  // Returns false to pause the socket (onread's contract).
  #onRead(data: Buffer): boolean {
    if (data.length > 0) this.#gotBytes = true;
    try {
      let rest = data;
      if (this.#state === 'head') {
        const joined = this.#head.length ? Buffer.concat([this.#head, rest]) : rest;
        const end = joined.indexOf('\r\n\r\n');
        if (end < 0) {
          if (joined.length > MAX_HEAD) throw new BimError('PeerFailed', `${this.#host} sent more than ${MAX_HEAD} bytes of headers`);
          this.#head = Buffer.from(joined);
          return true;
        }
        const head = parseHead(joined.subarray(0, end).toString('latin1'), this.#host);
        rest = joined.subarray(end + 4);
        this.#head = Buffer.alloc(0);
        if ((head.headers.get('connection') ?? '').toLowerCase() === 'close') this.reusable = false;
        this.#state = 'body';
        this.#remaining = head.contentLength;
        this.#handlers?.onHead(head);
      }
      if (this.#state !== 'body') {
        if (rest.length > 0) throw new BimError('PeerFailed', `${this.#host} sent ${rest.length} bytes nobody asked for`);
        return true;
      }
      if (rest.length > this.#remaining) throw new BimError('PeerFailed', `${this.#host} sent more body than its Content-Length`);
      let keepGoing = true;
      if (rest.length > 0) {
        this.#remaining -= rest.length;
        keepGoing = this.#handlers?.onBody(rest) ?? true;
      }
      if (!keepGoing) this.#pause();
      if (this.#remaining === 0) this.#complete();
      return keepGoing;
    } catch (err) {
      this.destroy(err instanceof Error ? err : new Error(String(err)));
      return false;
    }
  }

  #pause(): void {
    const handlers = this.#handlers;
    if (!handlers) return;
    this.#pausing = handlers.onPause().then(
      () => {
        this.#pausing = undefined;
        if (!this.#socket.destroyed) this.#socket.resume();
      },
      (err: unknown) => {
        this.#pausing = undefined;
        this.destroy(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  #complete(): void {
    this.#state = 'idle';
    const finish = this.#finish;
    if (!finish) return;
    if (this.#pausing) this.#pausing.then(() => finish(), (err: unknown) => finish(err));
    else finish();
  }
}

function parseHead(text: string, host: string): ResponseHead {
  const [statusLine, ...lines] = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '');
  if (!m) throw new BimError('PeerFailed', `${host} did not answer with HTTP/1.x: ${JSON.stringify((statusLine ?? '').slice(0, 80))}`);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const i = line.indexOf(':');
    if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  if (headers.has('transfer-encoding')) throw new BimError('PeerFailed', `${host} sent a ${headers.get('transfer-encoding')} body; only Content-Length bodies are understood here`);
  const cl = headers.get('content-length');
  const contentLength = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : NaN;
  if (!Number.isSafeInteger(contentLength)) throw new BimError('PeerFailed', `${host} sent no usable Content-Length`);
  return { status: Number(m[1]), headers, contentLength };
}
