// Several managers, one client: the list of API server URLs a client was given (`--server a,b,c`), the one it
// talks to now, and a fetch that moves to the next one when the current one cannot be reached. Only failures to
// connect move on (the request was never received, so repeating it elsewhere is safe); a timeout or an HTTP error
// is the answer and is returned as such.

import { StoreError } from '../store/errors.js';

const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

export function parseServers(list: string): string[] {
  const servers = list.split(',').map((s) => s.trim().replace(/\/+$/, '')).filter(Boolean);
  if (servers.length === 0) throw new StoreError('BadRequest', `no API server URL in "${list}"`);
  return servers;
}

export class ServerList {
  readonly servers: string[];
  #current = 0;

  constructor(list: string) {
    this.servers = parseServers(list);
  }

  get current(): string {
    return this.servers[this.#current] ?? '';
  }

  /** `url` is built on `current`; on a connection failure it is re-based on each other server in turn. */
  async fetch(url: string, init: RequestInit): Promise<Response> {
    let lastErr: unknown;
    for (let tried = 0; tried < this.servers.length; tried++) {
      const base = this.current;
      const target = rebase(url, base);
      try {
        return await fetch(target, init);
      } catch (err) {
        lastErr = err;
        if (init.signal?.aborted || !UNREACHABLE.has(fetchErrorCode(err))) break;
        this.#current = (this.#current + 1) % this.servers.length;
      }
    }
    const tried = this.servers.length > 1 ? `any of the API servers (${this.servers.join(', ')})` : `the API server at ${this.current}`;
    throw new StoreError('Internal', `cannot reach ${tried}: ${describe(lastErr)}`, { cause: lastErr });
  }
}

/** Replaces the origin of `url` (built on some server of the list) with `base`. */
function rebase(url: string, base: string): string {
  const u = new URL(url);
  const b = new URL(base);
  u.protocol = b.protocol;
  u.host = b.host;
  return u.href;
}

function fetchErrorCode(err: unknown): string {
  const e = err as { cause?: { code?: string } };
  return e?.cause?.code ?? '';
}

function describe(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}

/** The first server of the list that answers /healthz (for one-shot clients like the CLI); the first if none does. */
export async function pickLiveServer(list: string, opts: { timeoutMs?: number } = {}): Promise<string> {
  const servers = parseServers(list);
  if (servers.length === 1) return servers[0] ?? '';
  for (const s of servers) {
    try {
      const res = await fetch(`${s}/healthz`, { signal: AbortSignal.timeout(opts.timeoutMs ?? 1000) });
      if (res.ok) return s;
    } catch {
      // down: try the next one
    }
  }
  return servers[0] ?? '';
}
