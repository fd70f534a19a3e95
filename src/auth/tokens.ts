// The manager's credentials file, `<manager data dir>/auth.json` (mode 0600): the per-cluster secret of the data
// plane and the API tokens, stored as SHA-256 hashes only (a stolen auth.json does not reveal a token). Tokens are
// created by `stratum up` (admin, one per node) and `stratum token create`; re-creating a token of the same name
// replaces it, which is how a token is rotated. The manager re-reads the file when it changes, so rotation and
// revocation need no restart.
//
//   { "version": 1, "clusterSecret": "<64 hex>",
//     "tokens": [ { "name": "admin", "role": "admin", "sha256": "<hex>", "created": "<ISO time>" },
//                 { "name": "node-1", "role": "node", "node": "node-1", "sha256": "…", "created": "…" } ] }

import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { AuthError } from './errors.js';

export const AUTH_FILE = 'auth.json';
export const ROLES = ['admin', 'view', 'node'] as const;
export type Role = (typeof ROLES)[number];

export interface TokenRecord {
  name: string;
  role: Role;
  /** The node a `node` token acts for. */
  node?: string;
  sha256: string;
  created: string;
}

export interface AuthFile {
  version: 1;
  clusterSecret: string;
  tokens: TokenRecord[];
}

/** Who a request comes from, once its credential checked out. */
export interface Identity {
  name: string;
  role: Role;
  node?: string;
}

export function newSecret(): string {
  return randomBytes(32).toString('hex');
}

/** A bearer token: 32 random bytes, base64url, with a prefix that says what it is when it shows up in a file. */
export function newToken(): string {
  return `stratum-${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function checkAuthFile(v: unknown, path: string): AuthFile {
  const bad = (why: string) => new AuthError('InvalidCredentialsFile', `${path}: ${why}`);
  if (!v || typeof v !== 'object') throw bad('not a JSON object');
  const o = v as Partial<AuthFile>;
  if (typeof o.clusterSecret !== 'string' || !/^[0-9a-f]{64,}$/.test(o.clusterSecret)) throw bad('clusterSecret must be at least 64 hex digits');
  if (!Array.isArray(o.tokens)) throw bad('tokens must be a list');
  for (const t of o.tokens) {
    if (!t || typeof t.name !== 'string' || !ROLES.includes(t.role) || typeof t.sha256 !== 'string') throw bad(`malformed token entry ${JSON.stringify(t)}`);
    if (t.role === 'node' && typeof t.node !== 'string') throw bad(`node token "${t.name}" names no node`);
  }
  return { version: 1, clusterSecret: o.clusterSecret, tokens: o.tokens };
}

export function readAuthFile(path: string): AuthFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new AuthError('InvalidCredentialsFile', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return checkAuthFile(JSON.parse(text), path);
  } catch (err) {
    if (err instanceof AuthError) throw err;
    throw new AuthError('InvalidCredentialsFile', `${path}: malformed JSON`, { cause: err });
  }
}

/** Written whole and renamed into place, mode 0600: a reader never sees half a file. */
export function writeAuthFile(path: string, f: AuthFile): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(f, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

/** The file at `path`, created (with a new cluster secret and no tokens) when missing. */
export function ensureAuthFile(path: string): AuthFile {
  if (existsSync(path)) return readAuthFile(path);
  const f: AuthFile = { version: 1, clusterSecret: newSecret(), tokens: [] };
  writeAuthFile(path, f);
  return f;
}

/** Issues a token named `name` (replacing one of that name: rotation) and returns it; only its hash is stored. */
export function issueToken(path: string, id: Identity, now = new Date()): string {
  if (id.role === 'node' && !id.node) throw new AuthError('InvalidCredentialsFile', `a node token needs the node it acts for`);
  const f = ensureAuthFile(path);
  const token = newToken();
  const rec: TokenRecord = { name: id.name, role: id.role, ...(id.node ? { node: id.node } : {}), sha256: hashToken(token), created: now.toISOString() };
  f.tokens = [...f.tokens.filter((t) => t.name !== id.name), rec];
  writeAuthFile(path, f);
  return token;
}

/** Removes the token named `name`; true when there was one. */
export function revokeToken(path: string, name: string): boolean {
  const f = readAuthFile(path);
  const kept = f.tokens.filter((t) => t.name !== name);
  if (kept.length === f.tokens.length) return false;
  writeAuthFile(path, { ...f, tokens: kept });
  return true;
}

/**
 * The tokens of an auth.json as the API server checks them. The file is looked at again at most once per
 * `recheckMs` and re-read when its mtime or size changed, so `stratum token create/revoke` act within a second.
 */
export class TokenTable {
  readonly #path: string;
  readonly #recheckMs: number;
  #byHash = new Map<string, Identity>();
  #secret = '';
  #stamp = '';
  #checkedAt = -Infinity;

  constructor(path: string, opts: { recheckMs?: number } = {}) {
    this.#path = path;
    this.#recheckMs = opts.recheckMs ?? 1000;
    this.#reload(true);
  }

  get clusterSecret(): string {
    this.#reload(false);
    return this.#secret;
  }

  #reload(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.#checkedAt < this.#recheckMs) return;
    this.#checkedAt = now;
    let stamp: string;
    try {
      const st = statSync(this.#path);
      stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch (err) {
      if (force) throw new AuthError('InvalidCredentialsFile', `cannot read ${this.#path}: ${(err as Error).message}`, { cause: err });
      return; // keep what we had: a moment between write and rename, or an operator's mistake
    }
    if (stamp === this.#stamp) return;
    let f: AuthFile;
    try {
      f = readAuthFile(this.#path);
    } catch (err) {
      if (force) throw err;
      return;
    }
    this.#stamp = stamp;
    this.#secret = f.clusterSecret;
    this.#byHash = new Map(f.tokens.map((t) => [t.sha256, { name: t.name, role: t.role, ...(t.node ? { node: t.node } : {}) }]));
  }

  /** The identity a bearer token stands for, or undefined. */
  authenticate(token: string): Identity | undefined {
    this.#reload(false);
    // Looked up by the hash of the presented token: the lookup's timing says nothing about the stored tokens.
    return this.#byHash.get(hashToken(token));
  }
}
