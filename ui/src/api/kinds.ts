// The collections the UI watches, and where they live on the Kubernetes paths.

const LH = '/apis/longhorn.io/v1beta2/namespaces/longhorn-system';

export const KINDS = {
  backingimages: `${LH}/backingimages`,
  backingimagedatasources: `${LH}/backingimagedatasources`,
  volumes: `${LH}/volumes`,
  replicas: `${LH}/replicas`,
  engines: `${LH}/engines`,
  nodes: `${LH}/nodes`,
  settings: `${LH}/settings`,
  events: '/api/v1/namespaces/longhorn-system/events',
} as const;

export type KindKey = keyof typeof KINDS;
