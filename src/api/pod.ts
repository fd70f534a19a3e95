// Pod (core v1, `po`): a core-v1-shaped subset, enough for Stratum's data-plane processes (backing-image
// manager, data source, instance manager). Controllers create Pods; a node agent (or a real kubelet) runs them,
// so the fields kept are the ones both understand, with Kubernetes' names and defaults.

import { ageColumn, immutableOnceSet, specOf, stringField } from './common.js';
import { childPath, duplicate, invalid, notFound, required } from './field-errors.js';
import type { DefaultingContext, FieldError, KindInfo } from './kind.js';
import type { Condition, KubeObject } from './meta.js';
import { dns1123LabelErrors, dns1123SubdomainErrors } from './names.js';
import { podSchema } from './pod-schema.js';

export const POD_PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'] as const;
export type PodPhase = (typeof POD_PHASES)[number];
export const RESTART_POLICIES = ['Always', 'OnFailure', 'Never'] as const;
export const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;

export interface EnvVar {
  name: string;
  value?: string;
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: (typeof PROTOCOLS)[number];
}

export interface Probe {
  httpGet?: { path?: string; port: number | string; host?: string; scheme?: 'HTTP' | 'HTTPS' };
  tcpSocket?: { port: number | string; host?: string };
  exec?: { command?: string[] };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  workingDir?: string;
  env?: EnvVar[];
  ports?: ContainerPort[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  volumeMounts?: VolumeMount[];
}

export interface VolumeMount {
  /** The name of one of the pod's `volumes`. */
  name: string;
  /** Where the pod's process finds the volume: Stratum has no container filesystem, so the process gets the host
   *  path of each mountPath in the `STRATUM_MOUNTS` map (see src/agent/volumes.ts). */
  mountPath: string;
  readOnly?: boolean;
  subPath?: string;
}

export interface PodVolume {
  name: string;
  persistentVolumeClaim?: { claimName: string; readOnly?: boolean };
}

export interface PodSpec {
  nodeName?: string;
  containers: Container[];
  volumes?: PodVolume[];
  hostname?: string;
  subdomain?: string;
  nodeSelector?: Record<string, string>;
  restartPolicy?: (typeof RESTART_POLICIES)[number];
  terminationGracePeriodSeconds?: number;
}

export interface ContainerState {
  waiting?: { reason?: string; message?: string };
  running?: { startedAt?: string };
  terminated?: {
    exitCode: number;
    signal?: number;
    reason?: string;
    message?: string;
    startedAt?: string;
    finishedAt?: string;
    containerID?: string;
  };
}

export interface ContainerStatus {
  name: string;
  ready: boolean;
  restartCount: number;
  started?: boolean;
  state?: ContainerState;
  lastState?: ContainerState;
  containerID?: string;
  image?: string;
  imageID?: string;
}

export interface PodStatus {
  phase?: PodPhase;
  conditions?: Condition[];
  podIP?: string;
  hostIP?: string;
  startTime?: string;
  containerStatuses?: ContainerStatus[];
  message?: string;
  reason?: string;
}

export type Pod = KubeObject<PodSpec, PodStatus>;

function defaultProbe(p: Probe | undefined): void {
  if (p === undefined) return;
  p.timeoutSeconds ??= 1;
  p.periodSeconds ??= 10;
  p.successThreshold ??= 1;
  p.failureThreshold ??= 3;
  if (p.httpGet !== undefined) {
    p.httpGet.path ??= '/';
    p.httpGet.scheme ??= 'HTTP';
  }
}

function defaultOnCreate(o: KubeObject, _ctx: DefaultingContext): void {
  const pod = o as Pod;
  const spec = (pod.spec ??= { containers: [] });
  spec.restartPolicy ??= 'Always';
  spec.terminationGracePeriodSeconds ??= 30;
  for (const c of Array.isArray(spec.containers) ? spec.containers : []) {
    for (const p of c.ports ?? []) p.protocol ??= 'TCP';
    defaultProbe(c.readinessProbe);
    defaultProbe(c.livenessProbe);
  }
  const status = (pod.status ??= {});
  status.phase ??= 'Pending';
}

function validate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  const errs: FieldError[] = [];
  const spec = specOf(o);
  const containers = spec['containers'];
  if (Array.isArray(containers)) {
    if (containers.length === 0) errs.push(required('spec.containers', 'a pod needs at least one container'));
    const names = new Set<string>();
    containers.forEach((c: unknown, i) => {
      const name = typeof c === 'object' && c !== null ? (c as Record<string, unknown>)['name'] : undefined;
      if (typeof name !== 'string' || name === '') return;
      const field = childPath(childPath('spec.containers', i), 'name');
      for (const d of dns1123LabelErrors(name)) errs.push(invalid(field, name, d));
      if (names.has(name)) errs.push(duplicate(field, name));
      names.add(name);
    });
  }
  errs.push(...volumeErrors(spec));
  const nodeName = stringField(spec, 'nodeName');
  if (nodeName !== '') for (const d of dns1123SubdomainErrors(nodeName)) errs.push(invalid('spec.nodeName', nodeName, d));
  if (old !== undefined) {
    // Kubernetes binds a pod once; moving it would leave the process running where it was.
    errs.push(...immutableOnceSet('spec.nodeName', nodeName, stringField(specOf(old), 'nodeName')));
  }
  return errs;
}

/** Volume names unique, and every volumeMount names one of the pod's volumes (Kubernetes' rules). */
export function volumeErrors(spec: Record<string, unknown>, prefix = 'spec'): FieldError[] {
  const errs: FieldError[] = [];
  const names = new Set<string>();
  const volumes = Array.isArray(spec['volumes']) ? (spec['volumes'] as unknown[]) : [];
  volumes.forEach((v, i) => {
    const name = stringField(v as Record<string, unknown>, 'name');
    if (name === '') return;
    if (names.has(name)) errs.push(duplicate(childPath(childPath(`${prefix}.volumes`, i), 'name'), name));
    names.add(name);
  });
  const containers = Array.isArray(spec['containers']) ? (spec['containers'] as unknown[]) : [];
  containers.forEach((c, i) => {
    const mounts = (c as Record<string, unknown> | null)?.['volumeMounts'];
    if (!Array.isArray(mounts)) return;
    mounts.forEach((m: unknown, j) => {
      const name = stringField(m as Record<string, unknown>, 'name');
      if (name !== '' && !names.has(name)) {
        errs.push(notFound(childPath(childPath(childPath(childPath(`${prefix}.containers`, i), 'volumeMounts'), j), 'name'), name));
      }
    });
  });
  return errs;
}

export const podInfo: KindInfo = {
  group: '',
  version: 'v1',
  kind: 'Pod',
  listKind: 'PodList',
  plural: 'pods',
  singular: 'pod',
  shortNames: ['po'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  printerColumns: [
    { name: 'Ready', jsonPath: ".status.conditions[?(@.type=='Ready')].status", type: 'string' },
    { name: 'Status', jsonPath: '.status.phase', type: 'string' },
    // Stratum's pods have one container, so its restart count is the pod's.
    { name: 'Restarts', jsonPath: '.status.containerStatuses[0].restartCount', type: 'integer' },
    ageColumn,
    { name: 'IP', jsonPath: '.status.podIP', type: 'string', priority: 1 },
    { name: 'Node', jsonPath: '.spec.nodeName', type: 'string', priority: 1 },
  ],
  schema: podSchema,
  defaultOnCreate,
  validate,
};
