// Machine-wide host-port reservations, so that the pods of every node agent on one machine (several agents share
// a machine in `stratum up` and in tests) never get the same port. A reservation is a file named after the port
// in a shared directory, created with O_EXCL; it records who holds it:
//
//   <dir>/21345   {"owner":"node-1/default/web/<uid>","agent":{pid,startTime},"holder":{pid,startTime}|null}
//
// `agent` is the agent that reserved it, `holder` the pod's process wrapper once started. A reservation is stale
// when neither is running any more (checked by pid *and* start time), and then anyone may reclaim it. Pods
// outlive their agent, so an agent killed with -9 does not free the ports of pods that still run.
//
// Reclaiming moves the stale file aside with rename (atomic, one winner), checks that what it moved is the
// stale reservation it judged (not a fresh one made in between), and only then creates its own. After the file
// is ours, a bind check on the port catches anything outside this scheme that listens there already.

import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { link, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { AgentError } from './errors.js';
import { identityOf, isRunning, type ProcessIdentity } from './proc.js';

export interface Reservation {
  owner: string;
  agent: ProcessIdentity;
  holder: ProcessIdentity | null;
}

export interface PortAllocatorOptions {
  /** Shared directory; every agent on the machine must use the same one. */
  dir?: string;
  /** Inclusive range. Default 20000-29999: below Linux's ephemeral range (32768+), so outgoing connections do not take them. */
  range?: readonly [number, number];
  /** Identity recorded as `agent`; default this process. */
  agent?: ProcessIdentity;
  /** Skip the bind check (unit tests of the file protocol only). */
  bindCheck?: boolean;
}

export function defaultPortDir(): string {
  let user = 'user';
  try {
    user = String(userInfo().uid);
  } catch {
    // No passwd entry (some containers): one shared name still works.
  }
  return join(tmpdir(), `stratum-ports-${user}`);
}

export function parsePortRange(text: string): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(text.trim());
  const lo = Number(m?.[1]);
  const hi = Number(m?.[2]);
  if (!m || lo < 1024 || hi > 65535 || lo > hi) {
    throw new AgentError('InvalidArgument', `port range "${text}" must look like 20000-29999, within 1024-65535`);
  }
  return [lo, hi];
}

export class PortAllocator {
  readonly dir: string;
  readonly #lo: number;
  readonly #hi: number;
  readonly #agent: ProcessIdentity;
  readonly #bindCheck: boolean;

  constructor(opts: PortAllocatorOptions = {}) {
    this.dir = opts.dir ?? defaultPortDir();
    [this.#lo, this.#hi] = opts.range ?? [20000, 29999];
    const self = identityOf(process.pid);
    this.#agent = opts.agent ?? self ?? { pid: process.pid, startTime: '0' };
    this.#bindCheck = opts.bindCheck ?? true;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  #file(port: number): string {
    return join(this.dir, String(port));
  }

  /** Reserves one free port for `owner`. Throws AgentError `PortsExhausted` when the range is used up. */
  async reserve(owner: string): Promise<number> {
    const size = this.#hi - this.#lo + 1;
    // A random start spreads concurrent agents over the range, so they rarely contend for the same file.
    const start = randomBytes(4).readUInt32BE() % size;
    for (let i = 0; i < size; i++) {
      const port = this.#lo + ((start + i) % size);
      if (await this.#tryTake(port, owner)) {
        if (!this.#bindCheck || (await portIsFree(port))) return port;
        // Something outside the scheme listens there: give the file back so it is checked again next time.
        await unlink(this.#file(port)).catch(() => undefined);
      }
    }
    throw new AgentError(
      'PortsExhausted',
      `Cannot reserve a host port for ${owner}: all ${size} ports of ${this.#lo}-${this.#hi} are reserved or in use ` +
        `(reservations in ${this.dir}); widen --port-range or delete pods`,
    );
  }

  /**
   * Makes an existing reservation of `port` by `owner` this agent's again (after an agent restart). False when
   * the file is gone or belongs to someone else; the caller then reserves a new port.
   */
  async reclaimOwn(port: number, owner: string, holder: ProcessIdentity | null): Promise<boolean> {
    const r = await this.read(port);
    if (r === undefined) {
      // The file vanished (someone cleaned the directory): take the port again if it is still free.
      return (await this.#tryTake(port, owner, holder)) && (!this.#bindCheck || holder !== null || (await portIsFree(port)));
    }
    if (r.owner !== owner) return false;
    await this.#write(port, { owner, agent: this.#agent, holder: holder ?? r.holder });
    return true;
  }

  /** Records the process that now uses the port (the pod's wrapper), so the port stays taken if the agent dies. */
  async setHolder(port: number, owner: string, holder: ProcessIdentity | null): Promise<void> {
    const r = await this.read(port);
    if (r?.owner !== owner) return;
    await this.#write(port, { owner, agent: this.#agent, holder });
  }

  /** Frees `port` if `owner` holds it. */
  async release(port: number, owner: string): Promise<void> {
    const r = await this.read(port);
    if (r?.owner === owner) await unlink(this.#file(port)).catch(() => undefined);
  }

  async read(port: number): Promise<Reservation | undefined> {
    const text = await readFile(this.#file(port), 'utf8').catch(() => undefined);
    return text === undefined ? undefined : parseReservation(text);
  }

  async #tryTake(port: number, owner: string, holder: ProcessIdentity | null = null): Promise<boolean> {
    const content = JSON.stringify({ owner, agent: this.#agent, holder } satisfies Reservation);
    if (await createExclusive(this.#file(port), content)) return true;
    const text = await readFile(this.#file(port), 'utf8').catch(() => undefined);
    if (text === undefined) return createExclusive(this.#file(port), content);
    if (!isStale(parseReservation(text))) return false;
    return this.#reclaimStale(port, text, content);
  }

  async #reclaimStale(port: number, staleText: string, content: string): Promise<boolean> {
    const file = this.#file(port);
    const aside = `${file}.reclaim-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await rename(file, aside);
    } catch {
      return false; // someone else moved it first
    }
    const moved = await readFile(aside, 'utf8').catch(() => '');
    if (moved !== staleText) {
      // Between our read and the rename, another agent reclaimed the port and wrote its own reservation: put
      // it back. link() fails if a third party created the name meanwhile; that port is then theirs.
      await link(aside, file).catch(() => undefined);
      await unlink(aside).catch(() => undefined);
      return false;
    }
    await unlink(aside).catch(() => undefined);
    return createExclusive(file, content);
  }

  async #write(port: number, r: Reservation): Promise<void> {
    // Replace by rename so readers never see a half-written file.
    const tmp = `${this.#file(port)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    await writeFile(tmp, JSON.stringify(r));
    await rename(tmp, this.#file(port));
  }
}

/**
 * Creates `file` with `content` only if it does not exist. The content is written to a private temp file first
 * and then hard-linked into place (link fails with EEXIST like O_EXCL), so nobody ever reads a reservation that
 * exists but is still empty, which would look stale.
 */
async function createExclusive(file: string, content: string): Promise<boolean> {
  const tmp = `${file}.new-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, content, { flag: 'wx' });
  try {
    await link(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

export function parseReservation(text: string): Reservation | undefined {
  try {
    const r = JSON.parse(text) as Partial<Reservation>;
    if (typeof r.owner !== 'string' || typeof r.agent?.pid !== 'number') return undefined;
    return { owner: r.owner, agent: r.agent, holder: r.holder ?? null };
  } catch {
    return undefined;
  }
}

/**
 * Stale: neither the reserving agent nor the holding process runs. An unreadable file (a writer died between
 * create and write) is stale too.
 */
export function isStale(r: Reservation | undefined, running: (id: ProcessIdentity) => boolean = isRunning): boolean {
  if (r === undefined) return true;
  if (running(r.agent)) return false;
  return r.holder === null || !running(r.holder);
}

/** True when nothing listens on `port` on any address. */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    // 0.0.0.0 conflicts with a listener on any IPv4 address, which is what a pod would bind.
    srv.listen({ port, host: '0.0.0.0', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}
