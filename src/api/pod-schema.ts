// The JSON schema of the Pod subset (see pod.ts), apart so pod.ts stays about types and rules.

import {
  arrayOf, conditionsSchema, enumOf, int, intOrString, obj, resourceSchema, str, strMap, bool, type Schema,
} from './schema.js';

const PORT = { minimum: 1, maximum: 65535 };

const probe: Schema = obj({
  httpGet: obj(
    { path: str(), port: intOrString(), host: str(), scheme: enumOf(['HTTP', 'HTTPS']) },
    { required: ['port'] },
  ),
  tcpSocket: obj({ port: intOrString(), host: str() }, { required: ['port'] }),
  exec: obj({ command: arrayOf(str()) }),
  initialDelaySeconds: int({ minimum: 0 }),
  periodSeconds: int({ minimum: 1 }),
  timeoutSeconds: int({ minimum: 1 }),
  successThreshold: int({ minimum: 1 }),
  failureThreshold: int({ minimum: 1 }),
});

const container: Schema = obj(
  {
    name: str(),
    image: str({ minLength: 1 }),
    command: arrayOf(str()),
    args: arrayOf(str()),
    workingDir: str(),
    env: arrayOf(obj({ name: str({ minLength: 1 }), value: str() }, { required: ['name'] })),
    ports: arrayOf(
      obj(
        { name: str(), containerPort: int(PORT), protocol: enumOf(['TCP', 'UDP', 'SCTP']) },
        { required: ['containerPort'] },
      ),
    ),
    readinessProbe: probe,
    livenessProbe: probe,
    imagePullPolicy: enumOf(['Always', 'IfNotPresent', 'Never']),
    volumeMounts: arrayOf(
      obj({ name: str({ minLength: 1 }), mountPath: str({ minLength: 1 }), readOnly: bool(), subPath: str() }, { required: ['name', 'mountPath'] }),
    ),
  },
  { required: ['name', 'image'] },
);

const containerState: Schema = obj({
  waiting: obj({ reason: str(), message: str() }),
  running: obj({ startedAt: str() }),
  terminated: obj({
    exitCode: int(),
    signal: int(),
    reason: str(),
    message: str(),
    startedAt: str(),
    finishedAt: str(),
    containerID: str(),
  }),
});

const volume: Schema = obj(
  {
    name: str({ minLength: 1 }),
    persistentVolumeClaim: obj({ claimName: str({ minLength: 1 }), readOnly: bool() }, { required: ['claimName'] }),
  },
  { required: ['name'] },
);

/** The pod spec; also the spec of a StatefulSet's pod template. */
export const podSpecSchema: Schema = obj(
  {
    nodeName: str(),
    containers: arrayOf(container),
    volumes: arrayOf(volume),
    restartPolicy: enumOf(['Always', 'OnFailure', 'Never']),
    terminationGracePeriodSeconds: int({ minimum: 0 }),
    hostname: str(),
    subdomain: str(),
    nodeSelector: strMap(),
  },
  { required: ['containers'] },
);

export const podSchema: Schema = resourceSchema({
  description: 'Pod is one process, run by the node agent of spec.nodeName, with the volumes of its claims mounted.',
  spec: podSpecSchema,
  status: obj(
    {
      phase: enumOf(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown']),
      conditions: conditionsSchema,
      podIP: str(),
      hostIP: str(),
      startTime: str(),
      containerStatuses: arrayOf(
        obj({
          name: str(),
          ready: bool(),
          restartCount: int({ minimum: 0 }),
          started: bool(),
          state: containerState,
          lastState: containerState,
          containerID: str(),
          image: str(),
          imageID: str(),
        }),
      ),
      message: str(),
      reason: str(),
    },
    { preserveUnknown: true },
  ),
  required: ['spec'],
});
