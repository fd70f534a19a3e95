// `stratum describe KIND NAME`: the object's metadata, spec and status in a readable layout, then its Events.

import { stringify } from 'yaml';
import type { KindInfo } from '../../api/kind.js';
import type { KubeObject } from '../../api/meta.js';
import { resourceUrl } from '../../client/http-store.js';
import { findKind } from '../../api/index.js';
import { humanAge } from '../../apiserver/table.js';
import { request } from '../api.js';
import { formatTable } from '../../util/table.js';

function indent(text: string, by: number): string {
  const pad = ' '.repeat(by);
  return text.trimEnd().split('\n').map((l) => pad + l).join('\n');
}

function mapLines(m: Record<string, string> | undefined): string {
  const entries = Object.entries(m ?? {});
  if (entries.length === 0) return '<none>';
  return entries.map(([k, v], i) => `${i === 0 ? '' : ' '.repeat(13)}${k}=${v}`).join('\n');
}

export async function describe(server: string, info: KindInfo, namespace: string, name: string): Promise<string> {
  const obj = (await request('GET', resourceUrl(server, info, namespace, name))).body as KubeObject;
  const m = obj.metadata;
  const annotations = { ...(m.annotations ?? {}) };
  delete annotations['kubectl.kubernetes.io/last-applied-configuration'];
  const lines = [
    `Name:        ${m.name}`,
    ...(info.namespaced ? [`Namespace:   ${m.namespace}`] : []),
    `Labels:      ${mapLines(m.labels)}`,
    `Annotations: ${mapLines(annotations)}`,
    `API Version: ${obj.apiVersion}`,
    `Kind:        ${obj.kind ?? info.kind}`,
    'Metadata:',
    `  Creation Timestamp:  ${m.creationTimestamp}`,
    ...(m.deletionTimestamp ? [`  Deletion Timestamp:  ${m.deletionTimestamp}`] : []),
    ...(m.finalizers?.length ? [`  Finalizers:  ${m.finalizers.join(', ')}`] : []),
    ...(m.ownerReferences?.length ? [`  Owner References:  ${m.ownerReferences.map((o) => `${o.kind}/${o.name}`).join(', ')}`] : []),
    `  Generation:          ${m.generation ?? ''}`,
    `  Resource Version:    ${m.resourceVersion}`,
    `  UID:                 ${m.uid}`,
  ];
  const { apiVersion: _a, kind: _k, metadata: _m, ...rest } = obj;
  for (const [key, value] of Object.entries(rest)) {
    const title = key.charAt(0).toUpperCase() + key.slice(1);
    if (value !== null && typeof value === 'object') lines.push(`${title}:`, indent(stringify(value), 2));
    else lines.push(`${title}:  ${String(value)}`);
  }
  lines.push(await eventsSection(server, obj));
  return `${lines.join('\n')}\n`;
}

async function eventsSection(server: string, obj: KubeObject): Promise<string> {
  const evInfo = findKind('Event');
  if (!evInfo) return 'Events:  <none>';
  const url = new URL(resourceUrl(server, evInfo, obj.metadata.namespace ?? ''));
  url.searchParams.set('fieldSelector', `involvedObject.name=${obj.metadata.name},involvedObject.uid=${obj.metadata.uid}`);
  const { body } = await request('GET', url.href);
  const items = ((body as { items?: KubeObject[] }).items ?? []) as (KubeObject & Record<string, unknown>)[];
  if (items.length === 0) return 'Events:  <none>';
  items.sort((a, b) => String(a['lastTimestamp']).localeCompare(String(b['lastTimestamp'])));
  const rows = items.map((e) => {
    const count = Number(e['count'] ?? 1);
    const age = humanAge(String(e['lastTimestamp'] ?? e.metadata.creationTimestamp));
    const src = (e['source'] as { component?: string } | undefined)?.component ?? String(e['reportingComponent'] ?? '');
    return [String(e['type'] ?? ''), String(e['reason'] ?? ''), count > 1 ? `${age} (x${count})` : age, src, String(e['message'] ?? '')];
  });
  return `Events:\n${indent(formatTable(['Type', 'Reason', 'Age', 'From', 'Message'], rows), 2)}`;
}
