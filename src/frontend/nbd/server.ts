// The NBD server: listeners (TCP and/or a Unix socket), the table of named exports, and the lifecycle (graceful
// close, abrupt destroy, export removal). Each accepted socket becomes an NbdConnection (connection.ts), which
// does the protocol work against the export's BlockDevice.

import * as net from 'node:net';
import type { BlockDevice } from './device.js';
import { NBD_DEFAULT_MAX_PAYLOAD } from './constants.js';
import {
  type ConnectionHost,
  type ConnectionLimits,
  type ExportEntry,
  NbdConnection,
} from './connection.js';
import { type NbdExportStats, transmissionFlags } from './requests.js';
import { NbdError } from './errors.js';
import { checkNbdString } from './wire.js';

export type { NbdExportStats } from './requests.js';

export interface NbdServerOptions {
  /** Requests one connection may have in flight before the server stops reading its socket (default 64). */
  maxInFlightRequests?: number;
  /** Payload and read-buffer bytes one connection may pin before the server stops reading (default 64 MiB). */
  maxInFlightBytes?: number;
  /** Largest READ/WRITE; longer ones are answered EINVAL (default and advertised maximum: 32 MiB). */
  maxPayload?: number;
  /** Time a client has from connecting to entering transmission (default 10 s). */
  handshakeTimeoutMs?: number;
  /** After the server half-closes a connection, how long the peer has to close its side (default 2 s). */
  closeGraceMs?: number;
  /** Connections accepted at once over all listeners (default 1024). */
  maxConnections?: number;
  /** Export served to clients that ask for the empty name (default: the export named ""). */
  defaultExport?: string;
  /** Preferred block size advertised in NBD_INFO_BLOCK_SIZE (default 4096). */
  preferredBlockSize?: number;
  /** Called for connection-level failures (protocol errors, handshake timeouts, unknown exports). */
  onError?: (err: NbdError) => void;
}

export interface NbdExportOptions {
  /** Shown by `nbdinfo --list` and sent as NBD_INFO_DESCRIPTION. */
  description?: string;
}

/**
 * Where to listen: TCP (host defaults to 127.0.0.1; port 0 picks a free port) or a Unix socket path. An existing
 * file at the path is an error, never removed: it may be another server's live socket. Closing removes ours.
 */
export type NbdListenOptions = { host?: string; port: number } | { path: string };

export interface NbdServerAddress {
  tcp?: { host: string; port: number; family: string };
  unix?: string;
}

interface Listener {
  readonly kind: 'tcp' | 'unix';
  readonly server: net.Server;
}

export class NbdServer {
  readonly #limits: ConnectionLimits;
  readonly #maxConnections: number;
  readonly #defaultExport: string;
  readonly #onError: (err: NbdError) => void;
  readonly #exports = new Map<string, ExportEntry>();
  readonly #connections = new Set<NbdConnection>();
  readonly #listeners: Listener[] = [];
  readonly #host: ConnectionHost;
  #closing = false;
  #listenersClosed: Promise<void> | undefined;

  constructor(options: NbdServerOptions = {}) {
    const maxPayload = options.maxPayload ?? NBD_DEFAULT_MAX_PAYLOAD;
    this.#limits = {
      maxInFlightRequests: options.maxInFlightRequests ?? 64,
      maxInFlightBytes: options.maxInFlightBytes ?? 64 * 1024 * 1024,
      maxPayload,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
      closeGraceMs: options.closeGraceMs ?? 2_000,
      blockSize: { minimum: 1, preferred: options.preferredBlockSize ?? 4096, maximum: maxPayload },
    };
    this.#maxConnections = options.maxConnections ?? 1024;
    this.#defaultExport = options.defaultExport ?? '';
    this.#onError = options.onError ?? (() => {});
    this.#host = {
      limits: this.#limits,
      isClosing: () => this.#closing,
      findExport: (name) => this.#exports.get(name === '' ? this.#defaultExport : name),
      listExports: () => this.#exports.values(),
      reportError: (err) => this.#onError(err),
    };
  }

  /** Starts listening on one more endpoint (at most one TCP and one Unix listener). */
  async listen(endpoint: NbdListenOptions, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const kind = 'path' in endpoint ? 'unix' : 'tcp';
    if (this.#closing) throw new NbdError('NbdServerClosed', 'Cannot listen: the NBD server is closed');
    if (this.#listeners.some((l) => l.kind === kind)) {
      throw new NbdError('NbdAlreadyListening', `Cannot listen: the NBD server already has a ${kind} listener`);
    }
    opts.signal?.throwIfAborted();
    // allowHalfOpen: a client that shuts down its sending side still gets the replies to what it sent.
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.#accept(socket));
    const where = 'path' in endpoint ? endpoint.path : `${endpoint.host ?? '127.0.0.1'}:${endpoint.port}`;
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        server.off('error', onError);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      const onError = (err: Error): void => {
        done();
        reject(new NbdError('NbdListenFailed', `Cannot listen on ${where}: ${err.message}`, { cause: err }));
      };
      const onAbort = (): void => {
        done();
        server.close();
        reject(opts.signal?.reason);
      };
      server.once('error', onError);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const address =
        'path' in endpoint ? { path: endpoint.path } : { host: endpoint.host ?? '127.0.0.1', port: endpoint.port };
      server.listen(address, () => {
        done();
        resolve();
      });
    });
    server.on('error', (err) => {
      this.#onError(new NbdError('NbdListenFailed', `NBD listener on ${where} failed`, { cause: err }));
    });
    this.#listeners.push({ kind, server });
  }

  address(): NbdServerAddress {
    const out: NbdServerAddress = {};
    for (const l of this.#listeners) {
      const a = l.server.address();
      if (typeof a === 'string') out.unix = a;
      else if (a) out.tcp = { host: a.address, port: a.port, family: a.family };
    }
    return out;
  }

  /** An NBD URI for an export (`nbd://host:port/name` or `nbd+unix:///name?socket=path`), as libnbd and qemu take. */
  uri(exportName: string, transport?: 'tcp' | 'unix'): string {
    const a = this.address();
    const name = encodeURIComponent(exportName);
    const kind = transport ?? (a.tcp ? 'tcp' : 'unix');
    if (kind === 'tcp' && a.tcp) {
      const host = a.tcp.family === 'IPv6' ? `[${a.tcp.host}]` : a.tcp.host;
      return `nbd://${host}:${a.tcp.port}/${name}`;
    }
    if (kind === 'unix' && a.unix) {
      // Slashes stay readable in the socket path; libnbd and qemu percent-decode the rest.
      return `nbd+unix:///${name}?socket=${encodeURIComponent(a.unix).replaceAll('%2F', '/')}`;
    }
    throw new NbdError('NbdInvalidArgument', `Cannot build an NBD URI: the server has no ${kind} listener`);
  }

  addExport(name: string, device: BlockDevice, opts: NbdExportOptions = {}): void {
    if (this.#closing) throw new NbdError('NbdServerClosed', `Cannot add export "${name}": the NBD server is closed`);
    const bad = checkNbdString(name);
    if (bad) throw new NbdError('NbdInvalidArgument', `Cannot add export "${name}": the name ${bad}`);
    const description = opts.description ?? '';
    const badDescription = checkNbdString(description);
    if (badDescription) {
      throw new NbdError('NbdInvalidArgument', `Cannot add export "${name}": the description ${badDescription}`);
    }
    if (!Number.isSafeInteger(device.size) || device.size < 0) {
      const message = `Cannot add export "${name}": device size ${device.size} is not a byte count`;
      throw new NbdError('NbdInvalidArgument', message);
    }
    if (this.#exports.has(name)) {
      throw new NbdError('NbdExportExists', `Cannot add export "${name}": it already exists`);
    }
    this.#exports.set(name, {
      name,
      device,
      description,
      flags: transmissionFlags(device),
      connections: new Set(),
      stats: {
        connections: 0,
        reads: 0,
        writes: 0,
        flushes: 0,
        trims: 0,
        writeZeroes: 0,
        caches: 0,
        bytesRead: 0,
        bytesWritten: 0,
        errors: 0,
        inFlight: 0,
        peakInFlight: 0,
      },
    });
  }

  /**
   * Removes an export: new clients no longer see it, and its connections are drained (requests already received
   * are answered, later ones get ESHUTDOWN) and closed. If `signal` aborts first, they are destroyed instead.
   */
  async removeExport(name: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const entry = this.#exports.get(name);
    if (!entry) throw new NbdError('NbdExportUnknown', `Cannot remove export "${name}": it does not exist`);
    this.#exports.delete(name);
    const conns = [...entry.connections];
    for (const c of conns) c.drain();
    await settle(conns, opts.signal);
  }

  exportNames(): string[] {
    return [...this.#exports.keys()];
  }

  /** A snapshot of an export's counters, or undefined for an unknown export. */
  stats(name: string): NbdExportStats | undefined {
    const entry = this.#exports.get(name);
    return entry ? { ...entry.stats } : undefined;
  }

  /**
   * Graceful shutdown: stop accepting, drop clients still haggling, let every request already received finish
   * and be answered (newer ones get ESHUTDOWN), then close. Resolves when all sockets are closed and no device
   * call is running. If `signal` aborts first, falls back to `destroy`.
   */
  async close(opts: { signal?: AbortSignal } = {}): Promise<void> {
    this.#closing = true;
    const conns = [...this.#connections];
    for (const c of conns) c.drain();
    await Promise.all([settle(conns, opts.signal), this.#closeListeners()]);
  }

  /** Abrupt shutdown: cancel device calls and drop every connection. Resolves when all of them settled. */
  async destroy(err?: Error): Promise<void> {
    this.#closing = true;
    const reason = err ?? new NbdError('NbdServerClosed', 'NBD server destroyed');
    const conns = [...this.#connections];
    for (const c of conns) c.destroy(reason);
    await Promise.all([settle(conns), this.#closeListeners()]);
  }

  #accept(socket: net.Socket): void {
    // Counted here, not by net.Server#maxConnections: the connection re-homes its socket (src/util/socket-reads.ts).
    if (this.#closing || this.#connections.size >= this.#maxConnections) {
      socket.destroy();
      return;
    }
    const conn = new NbdConnection(socket, this.#host);
    this.#connections.add(conn);
    void conn.closed.then(() => this.#connections.delete(conn));
  }

  #closeListeners(): Promise<void> {
    // net.Server#close resolves only when its sockets are gone, which the connection drain takes care of.
    this.#listenersClosed ??= Promise.all(
      this.#listeners.map((l) => new Promise<void>((resolve) => l.server.close(() => resolve()))),
    ).then(() => {});
    return this.#listenersClosed;
  }
}

/** Waits until the connections settled; if `signal` aborts first, destroys them (and still waits). */
async function settle(conns: readonly NbdConnection[], signal?: AbortSignal): Promise<void> {
  const all = Promise.all(conns.map((c) => c.closed));
  if (!signal) {
    await all;
    return;
  }
  const onAbort = (): void => {
    for (const c of conns) c.destroy(signal.reason instanceof Error ? signal.reason : undefined);
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  try {
    await all;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
