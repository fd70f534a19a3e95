// The schema of Volume.status, apart from volume.ts to keep that file about the spec and its rules. Status is
// written by Stratum's controllers, so unknown fields are kept rather than pruned.

import { arrayOf, bool, conditionsSchema, int, int64, obj, str, type Schema } from './schema.js';

export const volumeStatusSchema: Schema = obj(
  {
    ownerID: str(),
    state: str(),
    robustness: str(),
    currentNodeID: str(),
    currentEngineNodeID: str(),
    currentImage: str(),
    kubernetesStatus: obj({
      pvName: str(),
      pvStatus: str(),
      namespace: str(),
      pvcName: str(),
      lastPVCRefAt: str(),
      lastPodRefAt: str(),
      workloadsStatus: arrayOf(
        obj({ podName: str(), podStatus: str(), workloadName: str(), workloadType: str() }),
        { nullable: true },
      ),
    }),
    conditions: conditionsSchema,
    lastBackup: str(),
    lastBackupAt: str(),
    lastAutoSalvagedAt: str(),
    pendingNodeID: str({ description: 'Deprecated.' }),
    currentMigrationNodeID: str(),
    frontendDisabled: bool(),
    restoreRequired: bool(),
    restoreInitiated: bool(),
    cloneStatus: obj({
      sourceVolume: str(),
      snapshot: str(),
      state: str(),
      attemptCount: int(),
      nextAllowedAttemptAt: str(),
      message: str({ description: 'Stratum: what the clone waits for, or why it failed.' }),
    }),
    remountRequestedAt: str(),
    expansionRequired: bool(),
    isStandby: bool(),
    actualSize: int64(),
    lastDegradedAt: str(),
    lastOnDemandSnapshotHashingCompleteAt: str(),
    shareEndpoint: str(),
    endpoint: str({ description: 'Stratum: the block device path or NBD URI of the attached volume.' }),
    nbdEndpoint: str({ description: 'Stratum: the NBD URI of the attached volume, whatever the frontend.' }),
    shareState: str(),
    switchoverState: str(),
  },
  { preserveUnknown: true },
);
