// Test fixtures for the data source: a real origin HTTP server (node:http) that can drop a connection mid-body,
// stall, refuse or ignore Range, redirect, throttle and require a header, recording every request it saw; and the
// data source itself as a real child process (`stratum data-source`).

import { DATA_PLANE_ENV, dataPlaneAuth } from './credentials.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CLI, waitFor } from './processes.js';

export interface OriginOptions {
  /** true: Accept-Ranges + 206; false: no Accept-Ranges, Range ignored (200); 'ignore': advertised but 200. */
  ranges?: boolean | 'ignore';
  /** Close the socket after this many body bytes, on the first `dropTimes` requests of a file. */
  dropAt?: number;
  dropTimes?: number;
  /** Stop sending (socket left open) after this many body bytes, on the first `stallTimes` requests. */
  stallAt?: number;
  stallTimes?: number;
  /** path → Location. */
  redirects?: Record<string, string>;
  /** A request without exactly this header value gets 401. */
  requireHeader?: [name: string, value: string];
  /** Throttle the body to about this many bytes per second. */
  bytesPerSecond?: number;
}

export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
}

export function sha512(data: Uint8Array): string {
  return createHash('sha512').update(data).digest('hex');
}

/** Deterministic pseudo-random bytes (incompressible, reproducible). */
export function testBytes(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export class OriginServer {
  readonly files = new Map<string, Buffer>();
  readonly requests: SeenRequest[] = [];
  readonly #o: OriginOptions;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #drops = 0;
  #stalls = 0;
  port = 0;

  constructor(o: OriginOptions = {}) {
    this.#o = o;
    this.#server = createServer((req, res) => void this.#handle(req, res));
    this.#server.on('connection', (s) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    const addr = this.#server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
    return this;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    this.requests.push({ method: req.method ?? '', path, headers: req.headers });
    const o = this.#o;
    const location = o.redirects?.[path];
    if (location !== undefined) {
      res.writeHead(302, { location }).end();
      return;
    }
    if (o.requireHeader && req.headers[o.requireHeader[0].toLowerCase()] !== o.requireHeader[1]) {
      res.writeHead(401, { 'content-type': 'text/plain' }).end('unauthorized');
      return;
    }
    const data = this.files.get(path);
    if (!data) {
      res.writeHead(404).end('not found');
      return;
    }
    const etag = `"${sha512(data).slice(0, 16)}"`;
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', etag };
    let start = 0;
    let status = 200;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (o.ranges !== false) headers['accept-ranges'] = 'bytes';
    const ifRange = req.headers['if-range'];
    if (o.ranges === true || o.ranges === undefined) {
      if (range && (ifRange === undefined || ifRange === etag)) {
        start = Number(range[1]);
        if (start >= data.length) {
          res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
          return;
        }
        status = 206;
        headers['content-range'] = `bytes ${start}-${data.length - 1}/${data.length}`;
      }
    }
    headers['content-length'] = String(data.length - start);
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    await this.#send(res, data.subarray(start), start);
  }

  async #send(res: ServerResponse, body: Buffer, start: number): Promise<void> {
    const o = this.#o;
    let limit = body.length;
    let action: 'drop' | 'stall' | undefined;
    if (o.dropAt !== undefined && this.#drops < (o.dropTimes ?? 1) && o.dropAt > start) {
      this.#drops++;
      limit = Math.min(limit, o.dropAt - start);
      action = 'drop';
    } else if (o.stallAt !== undefined && this.#stalls < (o.stallTimes ?? 1)) {
      // A request that starts at or past the stall point stalls at once.
      this.#stalls++;
      limit = Math.max(0, Math.min(limit, o.stallAt - start));
      action = 'stall';
    }
    const piece = o.bytesPerSecond ? Math.max(1024, Math.floor(o.bytesPerSecond / 20)) : 256 * 1024;
    for (let at = 0; at < limit; at += piece) {
      const chunk = body.subarray(at, Math.min(limit, at + piece));
      if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
      if (res.destroyed) return;
      if (o.bytesPerSecond) await new Promise((r) => setTimeout(r, (chunk.length / o.bytesPerSecond!) * 1000));
    }
    if (action === 'drop') {
      // Let the bytes reach the kernel before the close, so the client really has `dropAt` bytes.
      await new Promise<void>((r) => res.write('', () => r()));
      res.socket?.destroy();
      return;
    }
    if (action === 'stall') return; // the socket stays open and silent
    res.end();
  }
}

/** `stratum data-source ...` as a child process on a free port. */
export class DataSourceProcess {
  readonly args: string[];
  readonly env: NodeJS.ProcessEnv;
  url = '';
  log = '';
  #child: ChildProcess | undefined;
  exitCode: number | null = null;

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.args = args;
    this.env = env;
  }

  /** Starts the process and waits until it listens (or exits). */
  async start(): Promise<this> {
    this.url = '';
    const logStart = this.log.length;
    // The fixtures' origin servers listen on 127.0.0.1: these data sources are allowed to download from it, as
    // the controller allows them when the setting allow-private-download-urls is on (test/security tests without).
    const argv = [CLI, 'data-source', ...this.args, '--port', '0', ...(this.args.includes('download') ? ['--allow-private-urls'] : [])];
    const env = { ...process.env, http_proxy: '', https_proxy: '', HTTP_PROXY: '', HTTPS_PROXY: '', ...DATA_PLANE_ENV, ...this.env };
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.#child = child;
    child.stdout?.on('data', (d: Buffer) => (this.log += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.log += d.toString()));
    child.on('exit', (code) => (this.exitCode = code));
    await waitFor(`data source to listen (log: ${this.log})`, async () => {
      if (child.exitCode !== null) throw new Error(`the data source exited with ${child.exitCode}: ${this.log}`);
      const m = /listening on (http:\/\/\S+)/.exec(this.log.slice(logStart));
      if (m?.[1]) this.url = m[1];
      return this.url !== '';
    });
    return this;
  }

  async file(): Promise<Record<string, unknown> & { state: string; message: string }> {
    const res = await fetch(`${this.url}/v1/file`, { headers: dataPlaneAuth() });
    return (await res.json()) as Record<string, unknown> & { state: string; message: string };
  }

  /** Polls GET /v1/file until the state is one of `states`. */
  async waitState(states: string[], timeoutMs = 20_000): Promise<Record<string, unknown> & { state: string; message: string }> {
    return waitFor(`state ${states.join('|')} (log: ${this.log})`, async () => {
      const f = await this.file();
      return states.includes(f.state) ? f : undefined;
    }, timeoutMs);
  }

  async exited(): Promise<number | null> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    return new Promise((r) => child.once('exit', (code) => r(code)));
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}
