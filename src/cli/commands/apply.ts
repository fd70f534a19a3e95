// `stratum apply -f FILE|DIR|-`: client-side apply of multi-document YAML, as kubectl does it: create when absent,
// otherwise a merge patch from the last applied configuration (kept in an annotation) to the new one.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { findKind } from '../../api/index.js';
import type { KindInfo } from '../../api/kind.js';
import { DEFAULT_NAMESPACE, type KubeObject } from '../../api/meta.js';
import { resourceUrl } from '../../client/http-store.js';
import { isNotFound, StoreError } from '../../store/errors.js';
import { createMergePatch } from '../../store/merge-patch.js';
import { request } from '../api.js';
import { qualifiedName } from '../output.js';

export const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

interface Doc {
  source: string;
  object: KubeObject;
}

/** Reads every YAML document of a file, a directory (*.yaml, *.yml, *.json) or stdin ('-'). */
export function readDocuments(path: string): Doc[] {
  const files: { name: string; text: string }[] = [];
  if (path === '-') files.push({ name: '<stdin>', text: readFileSync(0, 'utf8') });
  else if (statSync(path).isDirectory()) {
    for (const f of readdirSync(path).sort()) {
      if (/\.(ya?ml|json)$/.test(f)) files.push({ name: join(path, f), text: readFileSync(join(path, f), 'utf8') });
    }
  } else files.push({ name: path, text: readFileSync(path, 'utf8') });
  const docs: Doc[] = [];
  for (const file of files) {
    for (const doc of parseAllDocuments(file.text, { uniqueKeys: true })) {
      const err = doc.errors[0];
      if (err) {
        const pos = err.linePos?.[0];
        throw new StoreError('BadRequest', `${file.name}: malformed YAML${pos ? ` at line ${pos.line}, column ${pos.col}` : ''}: ${err.message.split('\n')[0]}`);
      }
      const value = doc.toJS() as unknown;
      if (value === null || value === undefined) continue;
      if (typeof value !== 'object' || Array.isArray(value)) throw new StoreError('BadRequest', `${file.name}: a document is not an object`);
      const obj = value as KubeObject;
      if (obj.kind === 'List' && Array.isArray(obj['items'])) {
        for (const item of obj['items'] as KubeObject[]) docs.push({ source: file.name, object: item });
      } else docs.push({ source: file.name, object: obj });
    }
  }
  return docs;
}

function versionedInfo(doc: Doc): KindInfo {
  const { kind, apiVersion } = doc.object;
  if (typeof kind !== 'string' || !kind) throw new StoreError('BadRequest', `${doc.source}: a document has no "kind"`);
  if (typeof apiVersion !== 'string' || !apiVersion) throw new StoreError('BadRequest', `${doc.source}: ${kind} has no "apiVersion"`);
  const info = findKind(kind);
  const [group, version] = apiVersion.includes('/') ? (apiVersion.split('/') as [string, string]) : ['', apiVersion];
  const served = info && info.group === group && (info.version === version || info.otherVersions?.some((v) => v.version === version));
  if (!info || !served) throw new StoreError('NotFound', `${doc.source}: no matches for kind "${kind}" in version "${apiVersion}"`);
  return { ...info, version };
}

export async function applyDocument(server: string, doc: Doc, namespace: string | undefined): Promise<string> {
  const info = versionedInfo(doc);
  const obj = structuredClone(doc.object);
  obj.metadata ??= {};
  const name = obj.metadata.name;
  if (!name) throw new StoreError('BadRequest', `${doc.source}: ${info.kind} has no metadata.name`);
  if (info.namespaced) obj.metadata.namespace ??= namespace ?? DEFAULT_NAMESPACE;
  const ns = obj.metadata.namespace ?? '';
  const applied = structuredClone(obj);
  obj.metadata.annotations = { ...(obj.metadata.annotations ?? {}), [LAST_APPLIED]: JSON.stringify(applied) };
  let current: KubeObject | undefined;
  try {
    current = (await request('GET', resourceUrl(server, info, ns, name))).body as KubeObject;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  if (!current) {
    await request('POST', `${resourceUrl(server, info, ns)}?fieldManager=stratum-apply`, { body: obj });
    return `${qualifiedName(info, name)} created`;
  }
  const lastText = current.metadata.annotations?.[LAST_APPLIED];
  const last = lastText ? (JSON.parse(lastText) as KubeObject) : {};
  const patch = createMergePatch(last, applied) as Record<string, unknown> | undefined;
  const annotationChanged = lastText !== JSON.stringify(applied);
  if (!patch && !annotationChanged) return `${qualifiedName(info, name)} unchanged`;
  const body = { ...(patch ?? {}) } as { metadata?: Record<string, unknown> };
  body.metadata = { ...(body.metadata ?? {}), annotations: { ...((body.metadata?.['annotations'] as object) ?? {}), [LAST_APPLIED]: JSON.stringify(applied) } };
  await request('PATCH', `${resourceUrl(server, info, ns, name)}?fieldManager=stratum-apply`, {
    body,
    contentType: 'application/merge-patch+json',
  });
  return `${qualifiedName(info, name)} ${patch ? 'configured' : 'unchanged'}`;
}
