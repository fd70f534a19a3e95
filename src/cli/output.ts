// Terminal output in kubectl's conventions: aligned tables with upper-case headers, `kind.group/name verb` lines,
// and single-line errors on stderr.

import type { KindInfo } from '../api/kind.js';
import { formatTable } from '../util/table.js';

export interface TableLike {
  columnDefinitions: { name: string; priority: number }[];
  rows: { cells: unknown[]; object?: { metadata?: { namespace?: string } } }[];
}

export function cellText(v: unknown): string {
  if (v === null || v === undefined || v === '') return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** Renders a server Table; `wide` adds priority > 0 columns, `withNamespace` prepends NAMESPACE. */
export function renderTable(t: TableLike, opts: { wide: boolean; withNamespace: boolean; header: boolean }): string {
  const keep = t.columnDefinitions.map((c, i) => ({ c, i })).filter(({ c }) => opts.wide || c.priority === 0);
  const header = keep.map(({ c }) => c.name.toUpperCase());
  const rows = t.rows.map((r) => keep.map(({ i }) => cellText(r.cells[i])));
  if (opts.withNamespace) {
    header.unshift('NAMESPACE');
    t.rows.forEach((r, i) => rows[i]?.unshift(r.object?.metadata?.namespace ?? ''));
  }
  const text = formatTable(header, rows);
  return opts.header ? text : text.split('\n').slice(1).join('\n');
}

/** `backingimage.longhorn.io/bi-1`, the way kubectl names objects in its messages. */
export function qualifiedName(info: KindInfo, name: string): string {
  const kind = info.kind.toLowerCase();
  return info.group ? `${kind}.${info.group}/${name}` : `${kind}/${name}`;
}

export function fail(message: string, code = 1): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}
