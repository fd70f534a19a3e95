// HTTP Range parsing for downloads (RFC 9110 §14): one `bytes=` range, first-last, first- or -suffix. Several
// ranges are answered with the whole file (allowed by the RFC, and no client of ours asks for multipart).

export type RangeResult =
  | { kind: 'full' }
  | { kind: 'partial'; start: number; end: number } // inclusive end, as in Content-Range
  | { kind: 'unsatisfiable' };

export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined || header.trim() === '') return { kind: 'full' };
  const m = /^\s*bytes\s*=\s*(.+)$/i.exec(header);
  // An unknown unit or a malformed header is ignored: the RFC says serve the whole representation.
  if (!m) return { kind: 'full' };
  const specs = m[1]!.split(',').map((s) => s.trim());
  if (specs.length !== 1) return { kind: 'full' };
  const r = /^(\d*)-(\d*)$/.exec(specs[0]!);
  if (!r) return { kind: 'full' };
  const [, a, b] = r;
  if (a === '' && b === '') return { kind: 'full' };
  if (a === '') {
    const suffix = Number(b);
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (b !== '' && Number(b) < start) return { kind: 'full' };
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end };
}

/** True when the client accepts gzip (q > 0) per Accept-Encoding. */
export function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  for (const part of header.split(',')) {
    const [coding, ...params] = part.trim().split(';').map((s) => s.trim());
    if (coding?.toLowerCase() !== 'gzip') continue;
    const q = params.find((p) => p.toLowerCase().startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  }
  return false;
}
