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

export function columnsOf(info: KindInfo): PrinterColumn[] {
  return [
    { name: 'Name', jsonPath: '.metadata.name', type: 'string' },
    ...info.printerColumns,
    ...(info.printerColumns.some((c) => c.name === 'Age')
      ? []
      : [{ name: 'Age', jsonPath: '.metadata.creationTimestamp', type: 'date' as const }]),
  ];
}

export function cellValue(obj: KubeObject, col: PrinterColumn, now = Date.now()): unknown {
  const raw = fieldValue(obj, col.jsonPath.replace(/^\./, ''));
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
