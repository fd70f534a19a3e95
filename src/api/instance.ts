// The fields Engine and Replica share (Longhorn's InstanceSpec/InstanceStatus): both are processes hosted by an
// instance manager on a node, with a desired and a current state.

import { DATA_ENGINES, type DataEngine, type InstanceState } from './common.js';
import type { Condition } from './meta.js';
import { bool, conditionsSchema, enumOf, int, int64String, str, type Schema } from './schema.js';

export interface InstanceSpec {
  volumeName?: string;
  /** Bytes, as a decimal string. */
  volumeSize?: string;
  nodeID?: string;
  /** Deprecated by Longhorn in favour of `image`. */
  engineImage?: string;
  image?: string;
  desireState?: InstanceState | '';
  logRequested?: boolean;
  salvageRequested?: boolean;
  /** Deprecated by Longhorn in favour of `dataEngine`. */
  backendStoreDriver?: string;
  dataEngine?: DataEngine;
  targetNodeID?: string;
}

export interface InstanceStatus {
  ownerID?: string;
  instanceManagerName?: string;
  currentState?: InstanceState | '';
  currentImage?: string;
  ip?: string;
  storageIP?: string;
  port?: number;
  targetIP?: string;
  storageTargetIP?: string;
  targetPort?: number;
  started?: boolean;
  starting?: boolean;
  logFetched?: boolean;
  salvageExecuted?: boolean;
  conditions?: Condition[] | null;
  currentTargetNodeID?: string;
  targetInstanceReplacementCreated?: boolean;
  ublkID?: number;
  uuid?: string;
}

export const instanceSpecProperties: Record<string, Schema> = {
  volumeName: str(),
  volumeSize: int64String(),
  nodeID: str(),
  engineImage: str({ description: 'Deprecated: use image.' }),
  image: str(),
  desireState: str(),
  logRequested: bool(),
  salvageRequested: bool(),
  backendStoreDriver: str({ description: 'Deprecated: use dataEngine.' }),
  dataEngine: enumOf(DATA_ENGINES),
  targetNodeID: str(),
};

export const instanceStatusProperties: Record<string, Schema> = {
  ownerID: str(),
  instanceManagerName: str(),
  currentState: str(),
  currentImage: str(),
  ip: str(),
  storageIP: str(),
  port: int(),
  targetIP: str(),
  storageTargetIP: str(),
  targetPort: int(),
  started: bool(),
  starting: bool(),
  logFetched: bool(),
  salvageExecuted: bool(),
  conditions: conditionsSchema,
  currentTargetNodeID: str(),
  targetInstanceReplacementCreated: bool(),
  ublkID: int(),
  uuid: str(),
};
