// Label and field selectors in Kubernetes syntax, parsed once into predicates.
//   labels: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a` (exists), `!a` (does not exist), comma = AND
//   fields: `path=value`, `path==value`, `path!=value` over dotted paths (`metadata.name`, `spec.nodeName`)

import type { KubeObject } from '../api/meta.js';
import { StoreError } from './errors.js';

export type Predicate = (obj: KubeObject) => boolean;

const always: Predicate = () => true;

/** Split on commas that are not inside parentheses. */
function splitTerms(sel: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of sel) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (cur.trim() !== '') out.push(cur.trim());
  return out.filter((t) => t !== '');
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

function labelTerm(term: string): Predicate {
  const bad = () => new StoreError('BadRequest', `invalid label selector term "${term}"`);
  let m = /^(!?)\s*([^\s!=()]+)$/.exec(term);
  if (m) {
    const [, neg, key] = m as unknown as [string, string, string];
    if (!LABEL_KEY.test(key)) throw bad();
    return neg ? (o) => !(key in (o.metadata.labels ?? {})) : (o) => key in (o.metadata.labels ?? {});
  }
  m = /^([^\s!=()]+)\s*(==|=|!=)\s*([^\s,()]*)$/.exec(term);
  if (m) {
    const [, key, op, value] = m as unknown as [string, string, string, string];
    if (!LABEL_KEY.test(key)) throw bad();
    return op === '!='
      ? (o) => o.metadata.labels?.[key] !== value
      : (o) => o.metadata.labels?.[key] === value;
  }
  m = /^([^\s!=()]+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(term);
  if (m) {
    const [, key, op, list] = m as unknown as [string, string, string, string];
    if (!LABEL_KEY.test(key)) throw bad();
    const values = new Set(list.split(',').map((v) => v.trim()));
    return op === 'in'
      ? (o) => values.has(o.metadata.labels?.[key] ?? '\0absent')
      : (o) => !values.has(o.metadata.labels?.[key] ?? '\0absent');
  }
  throw bad();
}

export function parseLabelSelector(sel: string | undefined): Predicate {
  if (!sel) return always;
  const preds = splitTerms(sel).map(labelTerm);
  return (o) => preds.every((p) => p(o));
}

/** Reads a dotted path from an object; undefined when absent. Values are compared as strings. */
export function fieldValue(obj: unknown, path: string): string | undefined {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  if (cur === undefined || cur === null) return undefined;
  return typeof cur === 'object' ? JSON.stringify(cur) : String(cur);
}

export function parseFieldSelector(sel: string | undefined): Predicate {
  if (!sel) return always;
  const preds = splitTerms(sel).map((term): Predicate => {
    const m = /^([A-Za-z0-9_.-]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (!m) throw new StoreError('BadRequest', `invalid field selector term "${term}"`);
    const [, path, op, value] = m as unknown as [string, string, string, string];
    // An absent field compares as '' (Kubernetes: `spec.nodeName=` selects unscheduled pods).
    return op === '!='
      ? (o) => (fieldValue(o, path) ?? '') !== value
      : (o) => (fieldValue(o, path) ?? '') === value;
  });
  return (o) => preds.every((p) => p(o));
}
