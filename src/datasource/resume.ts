// Range/resume decisions for a download, as pure functions over status codes and headers. A download that lost its
// connection at byte K asks for `Range: bytes=K-` guarded by `If-Range` (the ETag, or Last-Modified when there is
// no strong ETag), so a file that changed meanwhile comes back whole (200) and the download, and its hash, restart
// from 0. Without `Accept-Ranges: bytes` on the first answer the server is not asked for ranges at all.

/** What the source told us about the file on the answer that started the current pass from byte 0. */
export interface SourceValidator {
  etag?: string;
  lastModified?: string;
  /** The whole file's size, when the server said. */
  totalSize?: number;
  acceptRanges: boolean;
}

type Headers = Readonly<Record<string, string | string[] | undefined>>;

function header(h: Headers, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function nonNegativeInt(s: string | undefined): number | undefined {
  if (s === undefined || !/^\d+$/.test(s.trim())) return undefined;
  const n = Number(s.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The validator of a 200 answer. */
export function validatorOf(h: Headers): SourceValidator {
  const v: SourceValidator = { acceptRanges: /\bbytes\b/i.test(header(h, 'accept-ranges') ?? '') };
  const etag = header(h, 'etag');
  if (etag) v.etag = etag;
  const lm = header(h, 'last-modified');
  if (lm) v.lastModified = lm;
  const len = nonNegativeInt(header(h, 'content-length'));
  if (len !== undefined) v.totalSize = len;
  return v;
}

/** `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`). */
export function parseContentRange(value: string | undefined): { start: number; end: number; total: number | undefined } | undefined {
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value ?? '');
  if (!m) return undefined;
  const start = Number(m[1]);
  const end = Number(m[2]);
  const total = m[3] === '*' ? undefined : Number(m[3]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return undefined;
  if (total !== undefined && (!Number.isSafeInteger(total) || end >= total)) return undefined;
  return { start, end, total };
}

/**
 * Headers for a request that continues at `offset`, or undefined when the download must start over from byte 0
 * (offset 0, or the server never offered ranges).
 */
export function resumeHeaders(offset: number, v: SourceValidator | undefined): Record<string, string> | undefined {
  if (offset <= 0 || v === undefined || !v.acceptRanges) return undefined;
  const h: Record<string, string> = { range: `bytes=${offset}-` };
  // If-Range needs a strong validator: a weak ETag would make the server ignore the range, which is safe but wasteful.
  if (v.etag !== undefined && !v.etag.startsWith('W/')) h['if-range'] = v.etag;
  else if (v.lastModified !== undefined) h['if-range'] = v.lastModified;
  return h;
}

export type ResponseDecision =
  /** Continue appending at the requested offset; the body is the rest of the file. */
  | { action: 'append'; totalSize: number | undefined }
  /** The body is the whole file: truncate to 0, restart the hash, and use this body. */
  | { action: 'from-zero'; validator: SourceValidator; reason?: string }
  /** Drop this answer and ask again from byte 0 without a range. */
  | { action: 'restart'; reason: string }
  /** A transient failure (5xx, 408, 429): retry after backoff. */
  | { action: 'retry'; reason: string }
  /** Retrying will not help. */
  | { action: 'fail'; reason: string };

/** What to do with a non-redirect answer to a request for bytes from `offset` (0 = the whole file). */
export function judgeResponse(offset: number, status: number, h: Headers, saved: SourceValidator | undefined): ResponseDecision {
  if (status === 200) {
    const validator = validatorOf(h);
    if (offset === 0) return { action: 'from-zero', validator };
    return { action: 'from-zero', validator, reason: `the server sent the whole file (200) instead of the bytes from ${offset}` };
  }
  if (status === 206) {
    const cr = parseContentRange(header(h, 'content-range'));
    if (offset === 0 || cr === undefined) return { action: 'restart', reason: `the server sent a partial answer (206) with Content-Range ${JSON.stringify(header(h, 'content-range') ?? '')} that does not continue at byte ${offset}` };
    if (cr.start !== offset) return { action: 'restart', reason: `the server resumed at byte ${cr.start} instead of ${offset}` };
    // A server that ignores If-Range could send a range of a changed file: compare what it says about the file.
    const etag = header(h, 'etag');
    if (saved?.etag !== undefined && etag !== undefined && etag !== saved.etag) return { action: 'restart', reason: 'the file changed on the server (another ETag)' };
    if (saved?.totalSize !== undefined && cr.total !== undefined && cr.total !== saved.totalSize) {
      return { action: 'restart', reason: `the file changed on the server (size ${cr.total}, was ${saved.totalSize})` };
    }
    return { action: 'append', totalSize: cr.total ?? saved?.totalSize };
  }
  if (status === 416) return { action: 'restart', reason: `the server cannot send the bytes from ${offset} (416): the file changed` };
  if (status === 408 || status === 429 || status >= 500) return { action: 'retry', reason: `the server answered ${status}` };
  return { action: 'fail', reason: `the server answered ${status}` };
}

/** Exponential backoff: base·2^(n-1) for the n-th consecutive failure, capped. */
export function backoffMs(failures: number, baseMs: number, maxMs = 30_000): number {
  if (failures <= 0) return 0;
  return Math.min(baseMs * 2 ** Math.min(failures - 1, 30), maxMs);
}
