// Server-side printing: `kubectl get` asks for `as=Table` and prints the columns we return, so the columns of
// each kind (its printerColumns) show the same in kubectl and in `stratum get`.

import type { KindInfo, PrinterColumn } from '../api/kind.js';
import type { KubeObject } from '../api/meta.js';
import { fieldValue } from '../store/selectors.js';

export interface TableColumn {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

export interface Table {
  kind: 'Table';
  apiVersion: 'meta.k8s.io/v1';
  metadata: { resourceVersion?: string };
  columnDefinitions: TableColumn[];
  rows: { cells: unknown[]; object: unknown }[];
}

/** Whether an Accept header asks for a meta.k8s.io Table. */
export function wantsTable(accept: string | undefined): boolean {
  return !!accept && /as=Table/.test(accept) && /g=meta\.k8s\.io/.test(accept);
}

/** Human duration the way kubectl prints ages: 45s, 3m12s, 5h, 2d3h, 90d. */
export function humanAge(from: string | undefined, now: number = Date.now()): string {
  if (!from) return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(from)) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return `${m}m${s % 60 ? `${s % 60}s` : ''}`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return `${h}h${m % 60 ? `${m % 60}m` : ''}`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (d < 8) return `${d}d${h % 24 ? `${h % 24}h` : ''}`;
  return `${d}d`;
}

/**
 * Columns computed from several fields, which a JSONPath cannot express. BackingImage's `Copies` puts every disk's
 * state on one line: `ready:2 in-progress:1(45%) failed:1`.
 */
const COMPUTED: Record<string, { column: PrinterColumn; value(obj: KubeObject): string }[]> = {
  BackingImage: [
    {
      column: { name: 'Copies', jsonPath: '.status.diskFileStatusMap', type: 'string', description: 'copies by state' },
      value(obj) {
        const files = (obj.status as { diskFileStatusMap?: Record<string, { state?: string; progress?: number }> } | undefined)?.diskFileStatusMap ?? {};
        const wanted = Object.keys((obj.spec as { diskFileSpecMap?: Record<string, unknown> } | undefined)?.diskFileSpecMap ?? {});
        const counts = new Map<string, { n: number; progress: number[] }>();
        for (const disk of new Set([...wanted, ...Object.keys(files)])) {
          const f = files[disk];
          const state = f?.state || 'not-started';
          const c = counts.get(state) ?? { n: 0, progress: [] };
          c.n++;
          if (state === 'in-progress' && f?.progress !== undefined) c.progress.push(f.progress);
          counts.set(state, c);
        }
        if (counts.size === 0) return '<none>';
        return [...counts.entries()]
          .map(([state, c]) => `${state}:${c.n}${c.progress.length ? `(${Math.min(...c.progress)}%)` : ''}`)
          .join(' ');
      },
    },
  ],
};

export function columnsOf(info: KindInfo): PrinterColumn[] {
  const age = info.printerColumns.find((c) => c.name === 'Age') ?? { name: 'Age', jsonPath: '.metadata.creationTimestamp', type: 'date' as const };
  return [
    { name: 'Name', jsonPath: '.metadata.name', type: 'string' },
    ...info.printerColumns.filter((c) => c !== age),
    ...(COMPUTED[info.kind] ?? []).map((c) => c.column),
    age,
  ];
}

/**
 * The subset of JSONPath that printer columns use: `.a.b`, `[N]`, and the filter `[?(@.key=='value')]`
 * (first match). Returns the value as a string, or undefined when absent.
 */
export function jsonPathValue(obj: unknown, path: string): string | undefined {
  const tokens = path.match(/\.[A-Za-z0-9_-]+|\[\d+\]|\[\?\(@\.[A-Za-z0-9_-]+\s*==\s*['"][^'"]*['"]\)\]/g) ?? [];
  if (tokens.join('') !== path) return fieldValue(obj, path.replace(/^\./, ''));
  let cur: unknown = obj;
  for (const t of tokens) {
    if (cur === null || cur === undefined) return undefined;
    if (t.startsWith('.')) cur = (cur as Record<string, unknown>)[t.slice(1)];
    else if (/^\[\d+\]$/.test(t)) cur = Array.isArray(cur) ? cur[Number(t.slice(1, -1))] : undefined;
    else {
      const m = /^\[\?\(@\.([A-Za-z0-9_-]+)\s*==\s*['"]([^'"]*)['"]\)\]$/.exec(t);
      cur = Array.isArray(cur) && m ? cur.find((e) => String((e as Record<string, unknown>)?.[m[1] ?? '']) === m[2]) : undefined;
    }
  }
  if (cur === undefined || cur === null) return undefined;
  return typeof cur === 'object' ? JSON.stringify(cur) : String(cur);
}

export function cellValue(obj: KubeObject, col: PrinterColumn, now = Date.now()): unknown {
  const computed = COMPUTED[obj.kind]?.find((c) => c.column === col);
  if (computed) return computed.value(obj);
  if (col.value) return col.value(obj);
  const raw = jsonPathValue(obj, col.jsonPath);
  if (col.type === 'date') return raw === undefined ? '<unknown>' : humanAge(raw, now);
  if (raw === undefined) return col.type === 'string' ? '' : null;
  if (col.type === 'integer' || col.type === 'number') return Number(raw);
  if (col.type === 'boolean') return raw === 'true';
  return raw;
}

export function toTable(info: KindInfo, objs: KubeObject[], resourceVersion?: string): Table {
  const cols = columnsOf(info);
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: resourceVersion === undefined ? {} : { resourceVersion },
    columnDefinitions: cols.map((c) => ({
      name: c.name,
      type: c.type === 'date' ? 'string' : c.type,
      format: c.name === 'Name' ? 'name' : c.type === 'date' ? 'date' : '',
      description: c.description ?? '',
      priority: c.priority ?? 0,
    })),
    rows: objs.map((o) => ({
      cells: cols.map((c) => cellValue(o, c)),
      object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata },
    })),
  };
}
