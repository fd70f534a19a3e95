// StatefulSet (apps/v1, `sts`): N pods `<set>-<ordinal>` with stable names, each with its own claims
// `<template>-<set>-<ordinal>` made from `volumeClaimTemplates` (kept on scale-down, as in Kubernetes). Run by
// src/controllers/stateful-set. The `scale` subresource makes `kubectl scale` work; the status fields are the
// ones `kubectl rollout status` reads (observedGeneration, readyReplicas, updatedReplicas, revisions).

import { ageColumn, immutableField, record, specOf } from './common.js';
import { invalid, required } from './field-errors.js';
import type { DefaultingContext, FieldError, KindInfo } from './kind.js';
import type { Condition, KubeObject } from './meta.js';
import { pvcSpecErrors, pvcSpecSchema, type PersistentVolumeClaimSpec } from './persistent-volume-claim.js';
import { volumeErrors, type PodSpec } from './pod.js';
import { podSpecSchema } from './pod-schema.js';
import { arrayOf, conditionsSchema, enumOf, int, obj, resourceSchema, str, strMap, PRESERVE_UNKNOWN } from './schema.js';

export const APPS_GROUP = 'apps';
export const POD_MANAGEMENT_POLICIES = ['OrderedReady', 'Parallel'] as const;
export const UPDATE_STRATEGIES = ['RollingUpdate', 'OnDelete'] as const;
/** Labels the StatefulSet controller puts on its pods, as Kubernetes does. */
export const STS_POD_NAME_LABEL = 'statefulset.kubernetes.io/pod-name';
export const STS_REVISION_LABEL = 'controller-revision-hash';
export const STS_POD_INDEX_LABEL = 'apps.kubernetes.io/pod-index';

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

export interface StatefulSetSpec {
  replicas?: number;
  selector: LabelSelector;
  serviceName?: string;
  template: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
  volumeClaimTemplates?: { apiVersion?: string; kind?: string; metadata: { name: string; labels?: Record<string, string> }; spec: PersistentVolumeClaimSpec }[];
  podManagementPolicy?: (typeof POD_MANAGEMENT_POLICIES)[number];
  updateStrategy?: { type?: (typeof UPDATE_STRATEGIES)[number]; rollingUpdate?: { partition?: number; maxUnavailable?: number | string } };
  revisionHistoryLimit?: number;
  minReadySeconds?: number;
  persistentVolumeClaimRetentionPolicy?: { whenDeleted?: 'Retain' | 'Delete'; whenScaled?: 'Retain' | 'Delete' };
}

export interface StatefulSetStatus {
  observedGeneration?: number;
  replicas?: number;
  readyReplicas?: number;
  currentReplicas?: number;
  updatedReplicas?: number;
  availableReplicas?: number;
  currentRevision?: string;
  updateRevision?: string;
  collisionCount?: number;
  conditions?: Condition[] | null;
}

export type StatefulSet = KubeObject<StatefulSetSpec, StatefulSetStatus>;

const selectorSchema = obj({
  matchLabels: strMap(),
  matchExpressions: arrayOf(obj({ key: str(), operator: str(), values: arrayOf(str()) }, { required: ['key', 'operator'] })),
});
const templateMeta = obj({ name: str(), labels: strMap(), annotations: strMap() }, { preserveUnknown: true });
const retention = enumOf(['Retain', 'Delete']);

const schema = resourceSchema({
  description: 'StatefulSet runs pods with stable names, each with its own claims.',
  spec: obj(
    {
      replicas: int({ minimum: 0 }),
      selector: selectorSchema,
      serviceName: str(),
      template: obj({ metadata: templateMeta, spec: podSpecSchema }, { required: ['spec'] }),
      volumeClaimTemplates: arrayOf(
        obj({ apiVersion: str(), kind: str(), metadata: templateMeta, spec: pvcSpecSchema, status: { type: 'object', [PRESERVE_UNKNOWN]: true } }),
      ),
      podManagementPolicy: enumOf(POD_MANAGEMENT_POLICIES),
      updateStrategy: obj({
        type: enumOf(UPDATE_STRATEGIES),
        rollingUpdate: obj({ partition: int({ minimum: 0 }), maxUnavailable: { type: ['integer', 'string'], 'x-kubernetes-int-or-string': true } }),
      }),
      revisionHistoryLimit: int({ minimum: 0 }),
      minReadySeconds: int({ minimum: 0 }),
      persistentVolumeClaimRetentionPolicy: obj({ whenDeleted: retention, whenScaled: retention }),
      ordinals: obj({ start: int({ minimum: 0 }) }),
    },
    { required: ['selector', 'template'] },
  ),
  status: obj(
    {
      observedGeneration: int(),
      replicas: int(),
      readyReplicas: int(),
      currentReplicas: int(),
      updatedReplicas: int(),
      availableReplicas: int(),
      currentRevision: str(),
      updateRevision: str(),
      collisionCount: int(),
      conditions: conditionsSchema,
    },
    { preserveUnknown: true },
  ),
  required: ['spec'],
});

function defaultOnCreate(o: KubeObject, _ctx: DefaultingContext): void {
  const sts = o as StatefulSet;
  const spec = sts.spec as StatefulSetSpec;
  spec.replicas ??= 1;
  spec.podManagementPolicy ??= 'OrderedReady';
  spec.updateStrategy ??= { type: 'RollingUpdate' };
  if (spec.updateStrategy.type === undefined) spec.updateStrategy.type = 'RollingUpdate';
  if (spec.updateStrategy.type === 'RollingUpdate') spec.updateStrategy.rollingUpdate = { partition: 0, ...spec.updateStrategy.rollingUpdate };
  spec.revisionHistoryLimit ??= 10;
  spec.persistentVolumeClaimRetentionPolicy = { whenDeleted: 'Retain', whenScaled: 'Retain', ...spec.persistentVolumeClaimRetentionPolicy };
  const t = spec.template as StatefulSetSpec['template'] | undefined;
  if (t?.spec) {
    t.spec.restartPolicy ??= 'Always';
    t.spec.terminationGracePeriodSeconds ??= 30;
  }
  for (const c of spec.volumeClaimTemplates ?? []) defaultClaimTemplate(c);
  sts.status = { replicas: 0 };
}

function defaultClaimTemplate(c: NonNullable<StatefulSetSpec['volumeClaimTemplates']>[number]): void {
  c.apiVersion ??= 'v1';
  c.kind ??= 'PersistentVolumeClaim';
  c.spec.volumeMode ??= 'Filesystem';
}

/** Templates with defaults applied, so that a re-applied manifest (which lacks them) compares equal. */
function normalizedTemplates(v: unknown): unknown {
  if (!Array.isArray(v)) return v;
  return v.map((t: unknown) => {
    const c = structuredClone(t) as NonNullable<StatefulSetSpec['volumeClaimTemplates']>[number];
    if (typeof c === 'object' && c !== null && typeof c.spec === 'object' && c.spec !== null) defaultClaimTemplate(c);
    return c;
  });
}

function validate(o: KubeObject, old: KubeObject | undefined): FieldError[] {
  const spec = specOf(o);
  const errs: FieldError[] = [];
  const matchLabels = record(spec['selector'], 'matchLabels');
  const labels = record(record(spec['template'], 'metadata'), 'labels');
  if (Object.keys(matchLabels).length === 0) errs.push(required('spec.selector.matchLabels', 'Stratum supports matchLabels selectors'));
  for (const [k, v] of Object.entries(matchLabels)) {
    if (labels[k] !== v) errs.push(invalid('spec.template.metadata.labels', labels, '`selector` does not match template `labels`'));
  }
  const templates = Array.isArray(spec['volumeClaimTemplates']) ? (spec['volumeClaimTemplates'] as unknown[]) : [];
  const claimNames = new Set<string>();
  templates.forEach((t, i) => {
    const name = String(record(t, 'metadata')['name'] ?? '');
    if (name === '') errs.push(required(`spec.volumeClaimTemplates[${i}].metadata.name`));
    claimNames.add(name);
    errs.push(...pvcSpecErrors(record(t, 'spec'), `spec.volumeClaimTemplates[${i}].spec`));
  });
  // A volumeMount may name a claim template as well as a pod volume: the controller adds the template's volume.
  const podSpec = record(spec['template'], 'spec');
  const volumes = [...(Array.isArray(podSpec['volumes']) ? podSpec['volumes'] : []), ...[...claimNames].map((name) => ({ name }))];
  errs.push(...volumeErrors({ ...podSpec, volumes }, 'spec.template.spec'));
  if (old !== undefined) {
    // Kubernetes' rule: only replicas, template, updateStrategy, minReadySeconds and the retention policy change.
    const before = specOf(old);
    for (const f of ['selector', 'serviceName', 'podManagementPolicy']) errs.push(...immutableField(`spec.${f}`, spec[f], before[f]));
    errs.push(...immutableField('spec.volumeClaimTemplates', normalizedTemplates(spec['volumeClaimTemplates']), normalizedTemplates(before['volumeClaimTemplates'])));
  }
  return errs;
}

export const statefulSetInfo: KindInfo = {
  group: APPS_GROUP,
  version: 'v1',
  kind: 'StatefulSet',
  listKind: 'StatefulSetList',
  plural: 'statefulsets',
  singular: 'statefulset',
  shortNames: ['sts'],
  namespaced: true,
  hasStatusSubresource: true,
  hasSpec: true,
  scale: { specReplicasPath: 'spec.replicas', statusReplicasPath: 'status.replicas', selectorPath: 'spec.selector' },
  printerColumns: [
    {
      name: 'Ready',
      jsonPath: '.status.readyReplicas',
      type: 'string',
      value: (o) => `${(o as StatefulSet).status?.readyReplicas ?? 0}/${(o as StatefulSet).spec?.replicas ?? 0}`,
    },
    ageColumn,
  ],
  schema,
  defaultOnCreate,
  validate,
};
