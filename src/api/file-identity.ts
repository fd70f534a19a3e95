// A file's identity: what tells that its bytes are the ones verified before, without reading them. Size, mtime to
// the nanosecond and inode: a write changes mtime, a replacement changes the inode, a rename keeps all three (so a
// backing-image manager can take over a data source's finished file and still trust its checksum). Bigints travel
// as decimal strings in JSON. The data source's GET /v1/file, the backing-image manager's records and manifest
// caches, and the data-source controller all use this one shape.

export interface FileIdentity {
  size: number;
  /** Nanosecond mtime as a decimal string (beyond 2^53). */
  mtimeNs: string;
  inode: string;
}

/** The identity of a `stat(…, { bigint: true })` result. */
export function identityFromStat(st: { size: bigint; mtimeNs: bigint; ino: bigint }): FileIdentity {
  return { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), inode: st.ino.toString() };
}

export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && a.inode === b.inode;
}

/**
 * Parses an identity from JSON (numbers accepted for the bigint fields); undefined when malformed. Data sources and
 * manifest sidecars written before the shape had one home name the inode `ino`: read, never written.
 */
export function parseIdentity(v: unknown): FileIdentity | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  const big = (x: unknown) => (typeof x === 'string' && /^\d+$/.test(x) ? x : typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 ? String(x) : undefined);
  const size = typeof o['size'] === 'number' && Number.isSafeInteger(o['size']) && o['size'] >= 0 ? o['size'] : undefined;
  const mtimeNs = big(o['mtimeNs']);
  const inode = big(o['inode'] ?? o['ino']);
  return size === undefined || mtimeNs === undefined || inode === undefined ? undefined : { size, mtimeNs, inode };
}
