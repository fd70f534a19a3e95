// Test doubles shared by this folder's tests (not exported from index.ts): an in-memory BlockDevice that records
// every call, can hold calls at a gate, delay or fail them, and honours abort signals like a real device should;
// plus a helper that starts a server on an ephemeral port and cleans it up.

import * as net from 'node:net';
import type { BlockDevice } from './device.js';
import { ByteQueue, decodeOptionReplyHeader } from './protocol.js';
import { NbdServer, type NbdServerOptions } from './server.js';

export interface DeviceCall {
  readonly op: 'read' | 'write' | 'flush' | 'trim' | 'writeZeroes';
  readonly offset: number;
  readonly length: number;
  readonly fua?: boolean;
  readonly noHole?: boolean;
  readonly signal: AbortSignal | undefined;
}

export class ScriptedDevice implements BlockDevice {
  readonly size: number;
  readonly readOnly: boolean;
  readonly multiConn: boolean;
  readonly bytes: Uint8Array;
  readonly calls: DeviceCall[] = [];
  /** Errors thrown by the next calls, in order. */
  readonly failures: unknown[] = [];
  /** Per-call delay in ms. */
  delay: (call: DeviceCall) => number = () => 0;
  active = 0;
  peakActive = 0;
  #gate: Promise<void> | undefined;

  constructor(size: number, opts: { readOnly?: boolean; multiConn?: boolean } = {}) {
    this.size = size;
    this.readOnly = opts.readOnly ?? false;
    this.multiConn = opts.multiConn ?? false;
    this.bytes = new Uint8Array(size);
  }

  /** Holds every call made from now on until the returned function is called. */
  hold(): () => void {
    let release!: () => void;
    this.#gate = new Promise((resolve) => (release = resolve));
    return () => {
      this.#gate = undefined;
      release();
    };
  }

  async read(offset: number, length: number, opts: { signal?: AbortSignal }): Promise<Uint8Array> {
    await this.#enter({ op: 'read', offset, length, signal: opts.signal });
    return this.bytes.slice(offset, offset + length);
  }

  async write(offset: number, data: Uint8Array, opts: { fua: boolean; signal?: AbortSignal }): Promise<void> {
    await this.#enter({ op: 'write', offset, length: data.byteLength, fua: opts.fua, signal: opts.signal });
    this.bytes.set(data, offset);
  }

  async flush(opts: { signal?: AbortSignal }): Promise<void> {
    await this.#enter({ op: 'flush', offset: 0, length: 0, signal: opts.signal });
  }

  async trim(offset: number, length: number, opts: { fua: boolean; signal?: AbortSignal }): Promise<void> {
    await this.#enter({ op: 'trim', offset, length, fua: opts.fua, signal: opts.signal });
    this.bytes.fill(0, offset, offset + length);
  }

  async writeZeroes(
    offset: number,
    length: number,
    opts: { fua: boolean; noHole: boolean; signal?: AbortSignal },
  ): Promise<void> {
    const { fua, noHole, signal } = opts;
    await this.#enter({ op: 'writeZeroes', offset, length, fua, noHole, signal });
    this.bytes.fill(0, offset, offset + length);
  }

  async #enter(call: DeviceCall): Promise<void> {
    this.calls.push(call);
    this.active++;
    this.peakActive = Math.max(this.peakActive, this.active);
    try {
      const waits: Promise<unknown>[] = [];
      if (this.#gate) waits.push(this.#gate);
      const ms = this.delay(call);
      if (ms > 0) waits.push(new Promise((r) => setTimeout(r, ms)));
      if (waits.length > 0) await abortable(Promise.all(waits), call.signal);
      if (this.failures.length > 0) throw this.failures.shift();
    } finally {
      this.active--;
    }
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** A server on 127.0.0.1 with an ephemeral port; `port` for NbdClient.connect. */
export async function startServer(options: NbdServerOptions = {}): Promise<{ server: NbdServer; port: number }> {
  const server = new NbdServer(options);
  await server.listen({ host: '127.0.0.1', port: 0 });
  return { server, port: server.address().tcp!.port };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A hand-driven client socket for option-level tests. */
export async function rawClient(port: number): Promise<{ socket: net.Socket; read: (n: number) => Promise<Uint8Array> }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  const queue = new ByteQueue();
  let wake = (): void => {};
  let closed = false;
  socket.on('data', (c) => (queue.push(c), wake()));
  socket.on('close', () => ((closed = true), wake()));
  socket.on('error', () => {});
  const read = (n: number): Promise<Uint8Array> =>
    new Promise((resolve, reject) => {
      wake = () => {
        if (queue.length >= n) resolve(queue.take(n));
        else if (closed) reject(new Error(`socket closed with ${queue.length} of ${n} bytes`));
      };
      wake();
    });
  await read(18); // greeting
  return { socket, read };
}

export async function optionReply(read: (n: number) => Promise<Uint8Array>): Promise<{ replyType: number; text: string }> {
  const h = decodeOptionReplyHeader(await read(20));
  return { replyType: h.replyType, text: Buffer.from(await read(h.length)).toString() };
}

