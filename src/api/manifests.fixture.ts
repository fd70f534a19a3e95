// Realistic manifests of every kind, for the tests: shaped like `kubectl get -o yaml` output of a Longhorn
// cluster (spec and status), or like the Pods, Events and Leases Stratum itself writes. Not a test file itself.

import { parseAllDocuments } from 'yaml';

import type { KubeObject } from './meta.js';

const SHA512 = 'a'.repeat(64) + '0123456789abcdef'.repeat(4);

const YAML_TEXT = `
apiVersion: longhorn.io/v1beta2
kind: BackingImage
metadata:
  name: parrot
  namespace: longhorn-system
  finalizers: [longhorn.io]
  labels: {app.kubernetes.io/name: longhorn}
spec:
  sourceType: download
  sourceParameters:
    url: https://longhorn-backing-image.s3-us-west-1.amazonaws.com/parrot.qcow2
  checksum: ${SHA512}
  minNumberOfCopies: 2
  diskFileSpecMap:
    7f6c1d2e-0000-4000-8000-000000000001: {evictionRequested: false, dataEngine: v1}
  disks: {}
  diskSelector: [ssd]
  nodeSelector: []
  dataEngine: v1
  secret: ""
  secretNamespace: ""
status:
  ownerID: node-1
  uuid: 4b2f9c1a
  size: 34359296
  virtualSize: 34359296
  realSize: 33554432
  checksum: ${SHA512}
  diskFileStatusMap:
    7f6c1d2e-0000-4000-8000-000000000001:
      dataEngine: v1
      state: ready
      progress: 100
      message: ""
      lastStateTransitionTime: "2024-05-01T10:00:00Z"
  diskLastRefAtMap: {}
  v2FirstCopyStatus: ""
  v2FirstCopyDisk: ""
---
apiVersion: longhorn.io/v1beta2
kind: BackingImageDataSource
metadata: {name: parrot, namespace: longhorn-system, labels: {longhorn.io/component: backing-image-data-source}}
spec:
  nodeID: node-1
  uuid: 4b2f9c1a
  diskUUID: 7f6c1d2e-0000-4000-8000-000000000001
  diskPath: /var/lib/longhorn
  checksum: ""
  sourceType: download
  parameters: {url: "https://example.com/parrot.qcow2"}
  fileTransferred: true
  recoveryRequested: false
status:
  ownerID: node-1
  runningParameters: {}
  currentState: ready-for-transfer
  ip: 10.42.0.12
  storageIP: 10.42.0.12
  size: 34359296
  progress: 100
  checksum: ${SHA512}
  message: ""
  retryCount: 0
---
apiVersion: longhorn.io/v1beta2
kind: BackingImageManager
metadata: {name: bim-0c5a8d7b3c5e, namespace: longhorn-system, labels: {longhorn.io/node: node-1, longhorn.io/disk-uuid: 7f6c1d2e-0000-4000-8000-000000000001}}
spec:
  image: stratum-bim:v1
  nodeID: node-1
  diskUUID: 7f6c1d2e-0000-4000-8000-000000000001
  diskPath: /var/lib/longhorn
  backingImages: {parrot: 4b2f9c1a}
status:
  ownerID: node-1
  currentState: running
  ip: 10.42.0.13
  storageIP: 10.42.0.13
  apiMinVersion: 1
  apiVersion: 1
  backingImageFileMap:
    parrot: {name: parrot, uuid: 4b2f9c1a, size: 34359296, virtualSize: 34359296, realSize: 33554432, state: ready,
             currentChecksum: ${SHA512}, message: "", sendingReference: 0, senderManagerAddress: "", progress: 100}
---
apiVersion: longhorn.io/v1beta2
kind: Volume
metadata: {name: pvc-5f3c, namespace: longhorn-system}
spec:
  Standby: false
  accessMode: rwo
  backingImage: parrot
  backupCompressionMethod: lz4
  backupTargetName: default
  dataEngine: v1
  dataLocality: disabled
  dataSource: ""
  disableFrontend: false
  diskSelector: []
  encrypted: false
  freezeFilesystemForSnapshot: ignored
  fromBackup: ""
  frontend: blockdev
  image: longhornio/longhorn-engine:v1.7.2
  lastAttachedBy: ""
  migratable: false
  migrationNodeID: ""
  nodeID: node-1
  nodeSelector: []
  numberOfReplicas: 3
  offlineRebuilding: ignored
  replicaAutoBalance: ignored
  replicaDiskSoftAntiAffinity: ignored
  replicaSoftAntiAffinity: ignored
  replicaZoneSoftAntiAffinity: ignored
  restoreVolumeRecurringJob: ignored
  revisionCounterDisabled: true
  size: "2147483648"
  snapshotDataIntegrity: ignored
  snapshotMaxCount: 250
  snapshotMaxSize: "0"
  staleReplicaTimeout: 2880
  unmapMarkSnapChainRemoved: ignored
status:
  actualSize: 0
  cloneStatus: {attemptCount: 0, nextAllowedAttemptAt: "", snapshot: "", sourceVolume: "", state: ""}
  conditions:
    - {lastProbeTime: "", lastTransitionTime: "2024-05-01T10:00:00Z", message: "", reason: "", status: "True", type: Scheduled}
    - {lastProbeTime: "", lastTransitionTime: "2024-05-01T10:00:00Z", message: "", reason: "", status: "False", type: WaitForBackingImage}
  currentImage: longhornio/longhorn-engine:v1.7.2
  currentMigrationNodeID: ""
  currentNodeID: node-1
  expansionRequired: false
  frontendDisabled: false
  isStandby: false
  kubernetesStatus: {lastPVCRefAt: "", lastPodRefAt: "", namespace: default, pvName: pvc-5f3c, pvStatus: Bound, pvcName: www1, workloadsStatus: null}
  lastBackup: ""
  lastBackupAt: ""
  lastDegradedAt: ""
  ownerID: node-1
  remountRequestedAt: "2024-05-01T10:00:00Z"
  restoreInitiated: false
  restoreRequired: false
  robustness: healthy
  shareEndpoint: ""
  shareState: ""
  state: attached
---
apiVersion: longhorn.io/v1beta2
kind: Engine
metadata: {name: pvc-5f3c-e-0, namespace: longhorn-system, labels: {longhornvolume: pvc-5f3c}}
spec:
  active: true
  backupVolume: ""
  dataEngine: v1
  desireState: running
  disableFrontend: false
  frontend: blockdev
  image: longhornio/longhorn-engine:v1.7.2
  logRequested: false
  nodeID: node-1
  replicaAddressMap: {pvc-5f3c-r-1: "10.42.0.14:10000"}
  requestedBackupRestore: ""
  requestedDataSource: ""
  revisionCounterDisabled: true
  salvageRequested: false
  snapshotMaxCount: 250
  snapshotMaxSize: "0"
  unmapMarkSnapChainRemovedEnabled: false
  upgradedReplicaAddressMap: {}
  volumeName: pvc-5f3c
  volumeSize: "2147483648"
status:
  currentImage: longhornio/longhorn-engine:v1.7.2
  currentReplicaAddressMap: {pvc-5f3c-r-1: "10.42.0.14:10000"}
  currentSize: "2147483648"
  currentState: running
  endpoint: /dev/longhorn/pvc-5f3c
  instanceManagerName: instance-manager-1a2b
  ip: 10.42.0.14
  isExpanding: false
  lastExpansionError: ""
  lastExpansionFailedAt: ""
  lastRestoredBackup: ""
  logFetched: false
  ownerID: node-1
  port: 10010
  rebuildStatus: {}
  replicaModeMap: {pvc-5f3c-r-1: RW}
  replicaTransitionTimeMap: {pvc-5f3c-r-1: "2024-05-01T10:00:00Z"}
  salvageExecuted: false
  snapshots:
    volume-head: {children: {}, created: "2024-05-01T10:00:00Z", labels: {}, name: volume-head, parent: "", removed: false, size: "0", usercreated: false}
  snapshotsError: ""
  started: true
  storageIP: 10.42.0.14
  unmapMarkSnapChainRemovedEnabled: false
---
apiVersion: longhorn.io/v1beta2
kind: Replica
metadata: {name: pvc-5f3c-r-1, namespace: longhorn-system, labels: {longhorn.io/backing-image: parrot, longhorndiskuuid: 7f6c1d2e-0000-4000-8000-000000000001}}
spec:
  active: true
  backingImage: parrot
  dataDirectoryName: pvc-5f3c-9a8b7c6d
  dataEngine: v1
  desireState: running
  diskID: 7f6c1d2e-0000-4000-8000-000000000001
  diskPath: /var/lib/longhorn/
  engineName: pvc-5f3c-e-0
  evictionRequested: false
  failedAt: ""
  hardNodeAffinity: ""
  healthyAt: "2024-05-01T10:00:00Z"
  image: longhornio/longhorn-engine:v1.7.2
  lastFailedAt: ""
  lastHealthyAt: "2024-05-01T10:00:00Z"
  logRequested: false
  migrationEngineName: ""
  nodeID: node-1
  rebuildRetryCount: 0
  revisionCounterDisabled: true
  salvageRequested: false
  snapshotMaxCount: 250
  snapshotMaxSize: "0"
  unmapMarkDiskChainRemovedEnabled: false
  volumeName: pvc-5f3c
  volumeSize: "2147483648"
status:
  conditions:
    - {lastProbeTime: "", lastTransitionTime: "2024-05-01T10:00:00Z", message: "", reason: "", status: "False", type: WaitForBackingImage}
  currentImage: longhornio/longhorn-engine:v1.7.2
  currentState: running
  instanceManagerName: instance-manager-1a2b
  ip: 10.42.0.14
  logFetched: false
  ownerID: node-1
  port: 10000
  salvageExecuted: false
  started: true
  storageIP: 10.42.0.14
---
apiVersion: longhorn.io/v1beta2
kind: Node
metadata: {name: node-1, namespace: longhorn-system}
spec:
  allowScheduling: true
  disks:
    default-disk-fd0100000000:
      allowScheduling: true
      diskDriver: ""
      diskType: filesystem
      evictionRequested: false
      path: /var/lib/longhorn/
      storageReserved: 32212254720
      tags: []
  evictionRequested: false
  instanceManagerCPURequest: 0
  name: node-1
  tags: []
status:
  autoEvicting: false
  conditions:
    - {lastProbeTime: "", lastTransitionTime: "2024-05-01T10:00:00Z", message: "Node node-1 is ready", reason: "", status: "True", type: Ready}
    - {lastProbeTime: "", lastTransitionTime: "2024-05-01T10:00:00Z", message: "", reason: "", status: "True", type: Schedulable}
  diskStatus:
    default-disk-fd0100000000:
      conditions: []
      diskDriver: ""
      diskName: default-disk-fd0100000000
      diskPath: /var/lib/longhorn/
      diskType: filesystem
      diskUUID: 7f6c1d2e-0000-4000-8000-000000000001
      filesystemType: ext2/ext3
      instanceManagerName: instance-manager-1a2b
      scheduledBackingImage: {parrot: 33554432}
      scheduledReplica: {pvc-5f3c-r-1: 2147483648}
      storageAvailable: 80000000000
      storageMaximum: 107374182400
      storageScheduled: 2181038080
  region: ""
  snapshotCheckStatus: {lastPeriodicCheckedAt: "2024-05-01T10:00:00Z"}
  zone: ""
---
apiVersion: longhorn.io/v1beta2
kind: Setting
metadata: {name: default-replica-count, namespace: longhorn-system}
value: '{"v1":"3","v2":"2"}'
status: {applied: true}
---
apiVersion: longhorn.io/v1beta2
kind: EngineImage
metadata: {name: ei-b907910b, namespace: longhorn-system}
spec: {image: "longhornio/longhorn-engine:v1.7.2"}
status:
  buildDate: "2024-10-24T08:00:00+00:00"
  cliAPIMinVersion: 3
  cliAPIVersion: 9
  conditions: [{lastProbeTime: "", lastTransitionTime: "2024-05-01T10:00:00Z", message: "", reason: "", status: "True", type: ready}]
  controllerAPIMinVersion: 3
  controllerAPIVersion: 5
  dataFormatMinVersion: 1
  dataFormatVersion: 1
  gitCommit: 4c2dd9a
  incompatible: false
  noRefSince: ""
  nodeDeploymentMap: {node-1: true}
  ownerID: node-1
  refCount: 1
  state: deployed
  version: v1.7.2
---
apiVersion: longhorn.io/v1beta2
kind: InstanceManager
metadata: {name: instance-manager-1a2b, namespace: longhorn-system}
spec:
  dataEngine: v1
  dataEngineSpec: {v2: {cpuMask: ""}}
  image: stratum-im:v1
  nodeID: node-1
  type: aio
status:
  apiMinVersion: 1
  apiVersion: 5
  backingImages: {}
  conditions: []
  currentState: running
  dataEngineStatus: {v2: {cpuMask: ""}}
  instanceEngines:
    pvc-5f3c-e-0:
      spec: {dataEngine: v1, name: pvc-5f3c-e-0}
      status: {conditions: {}, endpoint: "", errorMsg: "", listen: "", portEnd: 10020, portStart: 10010, resourceVersion: 0, state: running, targetPortEnd: 0, targetPortStart: 0, type: engine}
  instanceReplicas: {}
  ip: 10.42.0.14
  ownerID: node-1
  proxyApiMinVersion: 1
  proxyApiVersion: 1
---
apiVersion: v1
kind: Pod
metadata: {name: backing-image-manager-0c5a-7f6c, namespace: longhorn-system, labels: {longhorn.io/component: backing-image-manager}}
spec:
  nodeName: node-1
  restartPolicy: Always
  terminationGracePeriodSeconds: 30
  containers:
    - name: backing-image-manager
      image: stratum-bim:v1
      command: [backing-image-manager, daemon]
      args: [--listen, "0.0.0.0:8000"]
      env: [{name: DISK_PATH, value: /var/lib/longhorn}]
      ports: [{name: api, containerPort: 8000, protocol: TCP}]
      readinessProbe: {tcpSocket: {port: 8000}, periodSeconds: 5}
status:
  phase: Running
  conditions: [{type: Ready, status: "True", lastTransitionTime: "2024-05-01T10:00:00Z"}]
  podIP: 10.42.0.13
  hostIP: 192.168.1.11
  startTime: "2024-05-01T10:00:00Z"
  containerStatuses:
    - name: backing-image-manager
      ready: true
      restartCount: 0
      image: stratum-bim:v1
      containerID: stratum://4711
      state: {running: {startedAt: "2024-05-01T10:00:01Z"}}
      lastState: {}
---
apiVersion: v1
kind: Event
metadata: {name: parrot.17c9a3b4f0e1d2c3, namespace: longhorn-system}
involvedObject: {apiVersion: longhorn.io/v1beta2, kind: BackingImage, name: parrot, namespace: longhorn-system, uid: 0b0e6c55-1c1e-4f4c-9b6e-3a1b2c3d4e5f}
reason: Ready
message: Backing image parrot is ready on disk 7f6c1d2e-0000-4000-8000-000000000001
type: Normal
count: 1
firstTimestamp: "2024-05-01T10:00:00Z"
lastTimestamp: "2024-05-01T10:00:00Z"
source: {component: stratum-manager, host: node-1}
reportingComponent: stratum-manager
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: node-1, namespace: longhorn-system}
spec:
  holderIdentity: node-1
  leaseDurationSeconds: 30
  acquireTime: "2024-05-01T10:00:00.000000Z"
  renewTime: "2024-05-01T10:05:00.000000Z"
  leaseTransitions: 0
---
kind: StorageClass
apiVersion: storage.k8s.io/v1
metadata: {name: longhorn-test1}
provisioner: driver.longhorn.io
allowVolumeExpansion: true
reclaimPolicy: Delete
volumeBindingMode: Immediate
parameters: {numberOfReplicas: "3", staleReplicaTimeout: "2880", fromBackup: "", fsType: ext4, backingImage: bi-test1}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: www1-web-0, namespace: default, finalizers: [kubernetes.io/pvc-protection]}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 32Mi}}
  storageClassName: longhorn-test1
  volumeMode: Filesystem
  volumeName: pvc-6b1f0d52-9a7e-4c55-8d0e-1f2a3b4c5d6e
status: {phase: Bound, accessModes: [ReadWriteOnce], capacity: {storage: 32Mi}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pvc-6b1f0d52-9a7e-4c55-8d0e-1f2a3b4c5d6e, finalizers: [kubernetes.io/pv-protection]}
spec:
  capacity: {storage: 32Mi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: longhorn-test1
  volumeMode: Filesystem
  claimRef: {kind: PersistentVolumeClaim, apiVersion: v1, namespace: default, name: www1-web-0, uid: 6b1f0d52-9a7e-4c55-8d0e-1f2a3b4c5d6e}
  csi: {driver: driver.longhorn.io, volumeHandle: pvc-6b1f0d52-9a7e-4c55-8d0e-1f2a3b4c5d6e, fsType: ext4, volumeAttributes: {numberOfReplicas: "3"}}
status: {phase: Bound}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: nginx}}
  serviceName: nginx
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.8
        ports: [{containerPort: 80, name: web}]
        volumeMounts: [{name: www1, mountPath: /usr/share/nginx/html}]
  volumeClaimTemplates:
  - metadata: {name: www1}
    spec: {accessModes: [ReadWriteOnce], storageClassName: longhorn-test1, resources: {requests: {storage: 32Mi}}}
status: {observedGeneration: 1, replicas: 2, readyReplicas: 2, currentReplicas: 2, updatedReplicas: 2, currentRevision: web-5d8f, updateRevision: web-5d8f}
---
apiVersion: v1
kind: Service
metadata: {name: nginx, namespace: default, labels: {app: nginx}}
spec:
  ports: [{port: 80, name: web}]
  selector: {app: nginx}
  type: NodePort
`;

/** A fresh copy of every manifest, keyed by kind. */
export function realisticManifests(): Map<string, KubeObject> {
  const out = new Map<string, KubeObject>();
  for (const doc of parseAllDocuments(YAML_TEXT)) {
    if (doc.errors.length > 0) throw doc.errors[0];
    const o = doc.toJS() as KubeObject;
    out.set(o.kind, o);
  }
  return out;
}

/**
 * The tests poke arbitrary paths into manifests, wrong types included on purpose; a precise type would forbid
 * exactly what they need to do.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Untyped = any;

/** A fresh, freely mutable copy of the manifest of `kind`. */
export function untyped(kind: string): Untyped {
  return manifest(kind);
}

export function manifest(kind: string): KubeObject {
  const m = realisticManifests().get(kind);
  if (m === undefined) throw new Error(`no fixture for ${kind}`);
  return m;
}

export { SHA512 as FIXTURE_SHA512 };
