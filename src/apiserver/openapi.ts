// OpenAPI v3 documents, one per group version, generated from the kind registry. kubectl reads them to learn that
// the server validates fields itself (the `fieldValidation` query parameter on PATCH), so `kubectl apply` works
// without client-side schemas; `kubectl explain` reads the component schemas.

import type { KindInfo } from '../api/kind.js';
import { SERVER_VERSION, groupVersions } from './discovery.js';

const gvPath = (group: string, version: string) => (group ? `apis/${group}/${version}` : `api/${version}`);

/** `GET /openapi/v3`: where each group version's document lives. */
export function openApiRoot(): { paths: Record<string, { serverRelativeURL: string }> } {
  const paths: Record<string, { serverRelativeURL: string }> = {};
  for (const { group, version } of groupVersions().values()) {
    const p = gvPath(group, version);
    // The hash only has to change when the document does; the server version is enough for that.
    paths[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${encodeURIComponent(SERVER_VERSION.gitVersion)}` };
  }
  return { paths };
}

function schemaName(info: KindInfo, version: string): string {
  const group = info.group ? info.group.split('.').reverse().join('.') : 'io.k8s.api.core';
  return `${group}.${version}.${info.kind}`;
}

const queryParam = (name: string) => ({ name, in: 'query', schema: { type: 'string' }, uniqueItems: true });

/** `GET /openapi/v3/{api/v1 | apis/G/V}`: an OpenAPI 3.0 document for one group version. */
export function openApiGroupVersion(group: string, version: string): Record<string, unknown> | undefined {
  const gv = group ? `${group}/${version}` : version;
  const entry = groupVersions().get(gv);
  if (!entry) return undefined;
  const paths: Record<string, unknown> = {};
  const schemas: Record<string, unknown> = {};
  for (const info of entry.kinds) {
    const gvk = { group: info.group, version, kind: info.kind };
    const name = schemaName(info, version);
    schemas[name] = { ...info.schema, 'x-kubernetes-group-version-kind': [gvk] };
    const ref = { $ref: `#/components/schemas/${name}` };
    const body = { content: { 'application/json': { schema: ref } } };
    const ok = { '200': { description: 'OK', content: { 'application/json': { schema: ref } } } };
    const base = `/${gvPath(group, version)}${info.namespaced ? '/namespaces/{namespace}' : ''}/${info.plural}`;
    const common = { 'x-kubernetes-group-version-kind': gvk };
    paths[base] = {
      get: { ...common, 'x-kubernetes-action': 'list', operationId: `list${info.kind}`, parameters: ['labelSelector', 'fieldSelector', 'watch', 'resourceVersion'].map(queryParam), responses: ok },
      post: { ...common, 'x-kubernetes-action': 'post', operationId: `create${info.kind}`, parameters: ['dryRun', 'fieldManager', 'fieldValidation'].map(queryParam), requestBody: body, responses: ok },
    };
    const item = {
      get: { ...common, 'x-kubernetes-action': 'get', operationId: `read${info.kind}`, responses: ok },
      put: { ...common, 'x-kubernetes-action': 'put', operationId: `replace${info.kind}`, parameters: ['dryRun', 'fieldManager', 'fieldValidation'].map(queryParam), requestBody: body, responses: ok },
      patch: {
        ...common,
        'x-kubernetes-action': 'patch',
        operationId: `patch${info.kind}`,
        parameters: ['dryRun', 'fieldManager', 'fieldValidation', 'force'].map(queryParam),
        requestBody: {
          content: {
            'application/merge-patch+json': { schema: { type: 'object' } },
            'application/json-patch+json': { schema: { type: 'array' } },
          },
        },
        responses: ok,
      },
      delete: { ...common, 'x-kubernetes-action': 'delete', operationId: `delete${info.kind}`, parameters: ['dryRun', 'propagationPolicy'].map(queryParam), responses: ok },
    };
    paths[`${base}/{name}`] = item;
    if (info.hasStatusSubresource) paths[`${base}/{name}/status`] = { get: item.get, put: item.put, patch: item.patch };
  }
  return {
    openapi: '3.0.0',
    info: { title: 'Stratum', version: SERVER_VERSION.gitVersion },
    paths,
    components: { schemas },
  };
}

/** Protobuf length-delimited field (wire type 2). */
function pbField(field: number, payload: Buffer): Buffer {
  const len: number[] = [];
  let n = payload.length;
  do {
    len.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
    n >>>= 7;
  } while (n > 0);
  return Buffer.concat([Buffer.from([(field << 3) | 2, ...len]), payload]);
}

/**
 * `GET /openapi/v2` as the protobuf `openapi_v2.Document` older kubectl (1.20, Debian's kubernetes-client) insists
 * on before `apply`. It carries only `swagger` and `info`: with no definitions, kubectl skips client-side schema
 * checks for our kinds and the server validates every write anyway.
 */
export function openApiV2Protobuf(): Buffer {
  const info = Buffer.concat([pbField(1, Buffer.from('Stratum')), pbField(2, Buffer.from(SERVER_VERSION.gitVersion))]);
  return Buffer.concat([pbField(1, Buffer.from('2.0')), pbField(2, info)]);
}
