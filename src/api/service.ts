// Service (core v1, `svc`): stored and listed so that manifests which carry one (a StatefulSet's governing
// service) apply unchanged. Stratum routes no traffic: no cluster IP is allocated, no node port opened.

import { ageColumn } from './common.js';
import type { DefaultingContext, KindInfo } from './kind.js';
import type { KubeObject } from './meta.js';
import { arrayOf, enumOf, int, intOrString, obj, resourceSchema, str, strMap } from './schema.js';

export const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const;

export interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
  nodePort?: number;
}

export interface ServiceSpec {
  type?: (typeof SERVICE_TYPES)[number];
  ports?: ServicePort[];
  selector?: Record<string, string>;
  clusterIP?: string;
}

export type Service = KubeObject<ServiceSpec, Record<string, unknown>>;

const schema = resourceSchema({
  description: 'Service is stored and listed; Stratum routes no traffic to it.',
  spec: obj(
    {
      type: enumOf(SERVICE_TYPES),
      ports: arrayOf(
        obj(
          { name: str(), port: int({ minimum: 1, maximum: 65535 }), targetPort: intOrString(), protocol: enumOf(['TCP', 'UDP', 'SCTP']), nodePort: int() },
          { required: ['port'] },
        ),
      ),
      selector: strMap(),
      clusterIP: str(),
    },
    // The rest of a Service's spec (sessionAffinity, ipFamilies, ...) is kept as written: nothing acts on it.
    { preserveUnknown: true },
  ),
  status: obj({}, { preserveUnknown: true }),
});

function defaultOnCreate(o: KubeObject, _ctx: DefaultingContext): void {
  const spec = ((o as Service).spec ??= {});
  spec.type ??= 'ClusterIP';
  for (const p of spec.ports ?? []) {
    p.protocol ??= 'TCP';
    p.targetPort ??= p.port;
  }
}

function portsCell(o: KubeObject): string {
  const ports = (o as Service).spec?.ports ?? [];
  return ports.length === 0 ? '<none>' : ports.map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',');
}

export const serviceInfo: KindInfo = {
  group: '',
  version: 'v1',
  kind: 'Service',
  listKind: 'ServiceList',
  plural: 'services',
  singular: 'service',
  shortNames: ['svc'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'Type', jsonPath: '.spec.type', type: 'string' },
    { name: 'Cluster-IP', jsonPath: '.spec.clusterIP', type: 'string', value: (o) => (o as Service).spec?.clusterIP || '<none>' },
    { name: 'External-IP', jsonPath: '.status.loadBalancer', type: 'string', value: () => '<none>' },
    { name: 'Port(s)', jsonPath: '.spec.ports', type: 'string', value: portsCell },
    ageColumn,
    { name: 'Selector', jsonPath: '.spec.selector', type: 'string', priority: 1 },
  ],
  schema,
  defaultOnCreate,
};
