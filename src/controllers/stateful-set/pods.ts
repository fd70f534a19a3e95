// What a StatefulSet's pods and claims look like: names, labels, the revision hash of the template. Pure, so the
// controller's plan is tested apart.

import { createHash } from 'node:crypto';
import type { DeepReadonly } from '../../api/meta.js';
import type { PersistentVolumeClaim } from '../../api/persistent-volume-claim.js';
import type { Pod, PodVolume } from '../../api/pod.js';
import { STS_POD_INDEX_LABEL, STS_POD_NAME_LABEL, STS_REVISION_LABEL, type StatefulSet } from '../../api/stateful-set.js';

type RO<T> = DeepReadonly<T>;

export const podName = (set: string, ordinal: number) => `${set}-${ordinal}`;
export const claimName = (template: string, set: string, ordinal: number) => `${template}-${set}-${ordinal}`;

/** The ordinal of a pod named `<set>-<n>`, or undefined when the name is not one of the set's. */
export function ordinalOf(set: string, name: string): number | undefined {
  if (!name.startsWith(`${set}-`)) return undefined;
  const rest = name.slice(set.length + 1);
  return /^(0|[1-9][0-9]*)$/.test(rest) ? Number(rest) : undefined;
}

/** `<set>-<hash of the pod template>`: pods of another revision are replaced by a rolling update. */
export function revisionOf(sts: RO<StatefulSet>): string {
  const hash = createHash('sha256').update(JSON.stringify(sts.spec?.template ?? {})).digest('hex').slice(0, 10);
  return `${sts.metadata.name ?? ''}-${hash}`;
}

export function buildClaim(sts: RO<StatefulSet>, index: number, ordinal: number): PersistentVolumeClaim {
  const t = sts.spec?.volumeClaimTemplates?.[index];
  if (!t) throw new RangeError(`StatefulSet ${sts.metadata.name ?? ''} has no claim template ${index}`);
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name: claimName(t.metadata.name, sts.metadata.name ?? '', ordinal),
      namespace: sts.metadata.namespace ?? '',
      // Kubernetes labels a set's claims with its selector's labels, so `-l app=nginx` finds them.
      labels: { ...(t.metadata.labels ?? {}), ...(sts.spec?.selector.matchLabels ?? {}) },
    },
    spec: structuredClone({ volumeMode: 'Filesystem', ...t.spec }) as PersistentVolumeClaim['spec'] & object,
  };
}

export function buildPod(sts: RO<StatefulSet>, ordinal: number, revision: string): Pod {
  const set = sts.metadata.name ?? '';
  const template = structuredClone(sts.spec?.template) as NonNullable<StatefulSet['spec']>['template'];
  const claimVolumes: PodVolume[] = (sts.spec?.volumeClaimTemplates ?? []).map((t) => ({
    name: t.metadata.name,
    persistentVolumeClaim: { claimName: claimName(t.metadata.name, set, ordinal) },
  }));
  const own = new Set(claimVolumes.map((v) => v.name));
  const name = podName(set, ordinal);
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: sts.metadata.namespace ?? '',
      labels: { ...(template.metadata?.labels ?? {}), [STS_POD_NAME_LABEL]: name, [STS_REVISION_LABEL]: revision, [STS_POD_INDEX_LABEL]: String(ordinal) },
      ...(template.metadata?.annotations ? { annotations: template.metadata.annotations } : {}),
      ownerReferences: [
        { apiVersion: 'apps/v1', kind: 'StatefulSet', name: set, uid: sts.metadata.uid ?? '', controller: true, blockOwnerDeletion: true },
      ],
    },
    spec: {
      ...template.spec,
      hostname: name,
      ...(sts.spec?.serviceName ? { subdomain: sts.spec.serviceName } : {}),
      // A template volume of the same name as a claim template is replaced by the claim, as in Kubernetes.
      volumes: [...(template.spec.volumes ?? []).filter((v) => !own.has(v.name)), ...claimVolumes],
    },
  };
}

export function podReady(p: RO<Pod>): boolean {
  return p.status?.phase === 'Running' && (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}
