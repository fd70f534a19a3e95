// `stratum get KIND [NAME] [-o wide|yaml|json] [-w]`: the server prints the columns (server-side Table, the same
// kubectl shows); yaml and json print the objects themselves.

import { stringify } from 'yaml';
import type { KindInfo } from '../../api/kind.js';
import type { KubeObject } from '../../api/meta.js';
import { ndjson, resourceUrl } from '../../client/http-store.js';
import { StoreError } from '../../store/errors.js';
import { authHeaders, request, TABLE_ACCEPT } from '../api.js';
import { renderTable, type TableLike } from '../output.js';

export interface GetOptions {
  server: string;
  info: KindInfo;
  name?: string | undefined;
  namespace: string;
  allNamespaces: boolean;
  output?: string | undefined;
  selector?: string | undefined;
  watch: boolean;
  signal: AbortSignal;
  write: (text: string) => void;
}

function listUrl(o: GetOptions): string {
  const url = new URL(resourceUrl(o.server, o.info, o.allNamespaces ? '' : o.namespace, o.name));
  if (o.selector) url.searchParams.set('labelSelector', o.selector);
  return url.href;
}

export async function get(o: GetOptions): Promise<void> {
  const fmt = o.output ?? '';
  if (fmt !== '' && fmt !== 'wide' && fmt !== 'yaml' && fmt !== 'json' && fmt !== 'name') {
    throw new StoreError('BadRequest', `unknown output format "${fmt}": use wide, yaml, json or name`);
  }
  const withNamespace = o.allNamespaces && o.info.namespaced;
  let rv = '';
  if (fmt === 'yaml' || fmt === 'json' || fmt === 'name') {
    const { body } = await request('GET', listUrl(o));
    const obj = body as KubeObject & { items?: KubeObject[] };
    rv = String((obj.metadata as { resourceVersion?: string }).resourceVersion ?? '');
    const shown = o.name ? obj : { apiVersion: 'v1', kind: 'List', items: (obj.items ?? []).map((i) => ({ ...i, kind: o.info.kind })), metadata: { resourceVersion: '' } };
    if (fmt === 'name') {
      const items = o.name ? [obj] : (obj.items ?? []);
      o.write(items.map((i) => `${o.info.kind.toLowerCase()}${o.info.group ? `.${o.info.group}` : ''}/${i.metadata.name}\n`).join(''));
    } else o.write(fmt === 'json' ? `${JSON.stringify(shown, null, 4)}\n` : stringify(shown));
  } else {
    const { body } = await request('GET', listUrl(o), { accept: TABLE_ACCEPT });
    const table = body as TableLike & { metadata?: { resourceVersion?: string } };
    rv = table.metadata?.resourceVersion ?? '';
    if (table.rows.length === 0 && !o.watch) {
      o.write(o.allNamespaces || !o.info.namespaced ? 'No resources found\n' : `No resources found in ${o.namespace} namespace.\n`);
    } else if (table.rows.length > 0) {
      o.write(`${renderTable(table, { wide: fmt === 'wide', withNamespace, header: true })}\n`);
    }
  }
  if (o.watch) await watchRows(o, rv, fmt, withNamespace);
}

async function watchRows(o: GetOptions, rv: string, fmt: string, withNamespace: boolean): Promise<void> {
  const url = new URL(listUrl({ ...o, name: undefined }));
  url.searchParams.set('watch', 'true');
  if (rv) url.searchParams.set('resourceVersion', rv);
  if (o.name) url.searchParams.set('fieldSelector', `metadata.name=${o.name}`);
  const table = fmt === '' || fmt === 'wide';
  const res = await fetch(url, { headers: { ...authHeaders(), accept: table ? TABLE_ACCEPT : 'application/json' }, signal: o.signal }).catch((err: unknown) => {
    if (o.signal.aborted) return undefined;
    throw err;
  });
  if (!res?.body) return;
  try {
    for await (const value of ndjson(res.body as AsyncIterable<Uint8Array>)) {
      const ev = value as { type: string; object: unknown };
      if (ev.type === 'ERROR') throw new StoreError('Internal', (ev.object as { message?: string }).message ?? 'watch failed');
      if (table) o.write(`${renderTable(ev.object as TableLike, { wide: fmt === 'wide', withNamespace, header: false })}\n`);
      else if (fmt === 'json') o.write(`${JSON.stringify(ev.object, null, 4)}\n`);
      else o.write(`---\n${stringify(ev.object)}`);
    }
  } catch (err) {
    if (!o.signal.aborted) throw err;
  }
}
