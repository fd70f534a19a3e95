// Pods of data-plane processes as controllers see them: building the Pod object, reading whether it is ready,
// and where it listens (the node agent allocates host ports and publishes them in an annotation).

import type { DeepReadonly, OwnerReference } from './meta.js';
import { LONGHORN_API_VERSION } from './meta.js';
import type { Pod } from './pod.js';

export const PORTS_ANNOTATION = 'stratum.io/ports';
export const HTTP_PORT_NAME = 'http';

export interface PodTemplate {
  name: string;
  namespace: string;
  nodeName: string;
  image: string;
  args: string[];
  labels: Record<string, string>;
  owner: OwnerReference;
  readinessPath: string;
  restartPolicy?: 'Always' | 'OnFailure' | 'Never';
}

export function buildPod(t: PodTemplate): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: t.name, namespace: t.namespace, labels: t.labels, ownerReferences: [t.owner] },
    spec: {
      nodeName: t.nodeName,
      restartPolicy: t.restartPolicy ?? 'Always',
      terminationGracePeriodSeconds: 10,
      containers: [
        {
          name: t.labels['longhorn.io/component'] ?? 'main',
          image: t.image,
          args: t.args,
          ports: [{ name: HTTP_PORT_NAME, containerPort: 8000, protocol: 'TCP' }],
          readinessProbe: { httpGet: { path: t.readinessPath, port: HTTP_PORT_NAME }, periodSeconds: 1 },
        },
      ],
    },
  } as Pod;
}

export function ownerRef(kind: string, name: string, uid: string): OwnerReference {
  return { apiVersion: LONGHORN_API_VERSION, kind, name, uid, controller: true, blockOwnerDeletion: true };
}

export function podReady(pod: DeepReadonly<Pod> | undefined): boolean {
  return !!pod && pod.status?.phase === 'Running' && (pod.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** `http://ip:port` of a pod's http port, or undefined while the agent has not published one. */
export function podEndpoint(pod: DeepReadonly<Pod> | undefined): string | undefined {
  if (!pod?.status?.podIP) return undefined;
  try {
    const ports = JSON.parse(pod.metadata.annotations?.[PORTS_ANNOTATION] ?? '{}') as Record<string, unknown>;
    const port = ports[HTTP_PORT_NAME];
    return typeof port === 'number' ? `http://${pod.status.podIP}:${port}` : undefined;
  } catch {
    return undefined;
  }
}

/** A one-line account of why a pod is not serving, for status messages. */
export function podProblem(pod: DeepReadonly<Pod> | undefined, name: string): string {
  if (!pod) return `pod ${name} does not exist yet`;
  const cs = pod.status?.containerStatuses?.[0];
  const waiting = cs?.state?.waiting;
  const term = cs?.state?.terminated ?? cs?.lastState?.terminated;
  if (waiting?.reason) return `pod ${name} is waiting: ${waiting.reason}${waiting.message ? ` (${waiting.message})` : ''}`;
  if (term) return `pod ${name} exited with code ${term.exitCode ?? '?'}${term.reason ? ` (${term.reason})` : ''}`;
  return `pod ${name} is ${pod.status?.phase ?? 'Pending'}${pod.status?.message ? `: ${pod.status.message}` : ''}`;
}
