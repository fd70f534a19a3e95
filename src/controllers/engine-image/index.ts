// The EngineImage controller (issue 12): one EngineImage object (Longhorn's shape) per engine image in use — the
// default one (setting default-engine-image) and every image a Volume names in spec.image or status.currentImage.
// Engines run inside the instance managers, so an engine image is deployed on a node when the node's instance
// manager runs. Per image:
//   ensureObject → updateStatus (state, refCount/noRefSince, nodeDeploymentMap, version and API range from the
//   manager's catalog; `incompatible` when the range is outside the one the manager's release speaks).

import { engineImageName, type EngineImage, type EngineImageStatus } from '../../api/engine-image.js';
import type { InstanceManager } from '../../api/instance-manager.js';
import { LONGHORN_API_VERSION, type DeepReadonly } from '../../api/meta.js';
import type { Node } from '../../api/node.js';
import type { Volume } from '../../api/volume.js';
import { Controller } from '../../controller-kit/controller.js';
import type { InformerFactory } from '../../controller-kit/informer-factory.js';
import { isAlreadyExists } from '../../store/errors.js';
import type { Store } from '../../store/types.js';
import { settingsFrom } from '../common/settings.js';
import { mutateStatus } from '../common/status.js';
import { nodeIsReady } from '../scheduling.js';

type RO<T> = DeepReadonly<T>;

export interface ImageInfo {
  version: string;
  apiVersion: number;
  apiMinVersion: number;
}

export interface EngineImageControllerOptions {
  store: Store;
  informers: InformerFactory;
  namespace: string;
  /** What the manager's catalog says of an image (undefined: not in the catalog). */
  imageInfo: (image: string) => ImageInfo | undefined;
  /** The engine API range the manager's release speaks. */
  api: { min: number; max: number };
  now?: () => Date;
}

/** Images a volume refers to. */
export function volumeImages(v: RO<Volume>): string[] {
  return [...new Set([v.spec?.image, v.status?.currentImage].filter((i): i is string => !!i))];
}

export function engineImageController(opts: EngineImageControllerOptions): Controller {
  const { store, informers, namespace } = opts;
  const now = () => (opts.now ?? (() => new Date()))().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const settings = settingsFrom(informers);
  const volumes = informers.informerFor<Volume>('Volume');
  const eis = informers.informerFor<EngineImage>('EngineImage');
  const ims = informers.informerFor<InstanceManager>('InstanceManager');
  const nodes = informers.informerFor<Node>('Node');
  const BY_IMAGE = 'volumeByEngineImage';
  volumes.addIndex(BY_IMAGE, (v) => volumeImages(v));

  const reconcile = async (image: string) => {
    if (!image) return;
    const name = engineImageName(image);
    const isDefault = image === settings.string('default-engine-image');
    const users = volumes.byIndex(BY_IMAGE, image).filter((v) => v.metadata.namespace === namespace && !v.metadata.deletionTimestamp);
    let ei = eis.get(namespace, name);
    if (!ei) {
      // An image nobody uses and that is not the default gets no object (a removed one is not brought back).
      if (!isDefault && users.length === 0) return;
      await ensureObject(name, image);
      return;
    }
    ei = ei as RO<EngineImage>;
    const info = opts.imageInfo(image);
    const deployed: Record<string, boolean> = {};
    for (const n of nodes.list()) {
      if (!nodeIsReady(n)) continue;
      // Engines are hosted by the node's instance manager: the image is deployed where one runs.
      deployed[n.metadata.name ?? ''] = ims.list().some((m) => m.spec?.nodeID === n.metadata.name && m.status?.currentState === 'running');
    }
    const incompatible = !info || info.apiVersion < opts.api.min || info.apiMinVersion > opts.api.max;
    const allDeployed = Object.keys(deployed).length > 0 && Object.values(deployed).every(Boolean);
    const state: EngineImageStatus['state'] = incompatible ? 'incompatible' : allDeployed ? 'deployed' : 'deploying';
    const refCount = users.length;
    await mutateStatus<EngineImage>(store, 'EngineImage', namespace, name, (st) => {
      st.state = state;
      st.incompatible = incompatible;
      st.refCount = refCount;
      if (refCount > 0) st.noRefSince = '';
      else if (!st.noRefSince) st.noRefSince = now();
      st.nodeDeploymentMap = deployed;
      st.version = info?.version ?? '';
      // One API for the engine, its control and its command line in Stratum (the engine is in-process).
      st.controllerAPIVersion = info?.apiVersion ?? 0;
      st.controllerAPIMinVersion = info?.apiMinVersion ?? 0;
      st.cliAPIVersion = info?.apiVersion ?? 0;
      st.cliAPIMinVersion = info?.apiMinVersion ?? 0;
      st.dataFormatVersion = 1;
      st.dataFormatMinVersion = 1;
      const ready = state === 'deployed';
      const message = !info
        ? `image ${image} is not in the manager's catalog`
        : incompatible
          ? `engine API ${info.apiMinVersion}..${info.apiVersion} is outside the manager's ${opts.api.min}..${opts.api.max}`
          : ready ? '' : `not deployed on ${Object.entries(deployed).filter(([, d]) => !d).map(([n]) => n).join(', ')} (no running instance manager)`;
      const old = (st.conditions ?? []).find((c) => c.type === 'Ready');
      const status = ready ? 'True' : 'False';
      st.conditions = [{ type: 'Ready', status, reason: ready ? '' : incompatible ? 'Incompatible' : 'Deploying', message,
        lastTransitionTime: old && old.status === status ? old.lastTransitionTime ?? now() : now(), lastProbeTime: '' }];
    });
  };

  async function ensureObject(name: string, image: string) {
    try {
      await store.create<EngineImage>({ apiVersion: LONGHORN_API_VERSION, kind: 'EngineImage', metadata: { name, namespace }, spec: { image } });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }

  const controller = new Controller({ name: 'engine-image', workers: 1, reconcile });
  const all = () => {
    controller.enqueue(settings.string('default-engine-image'));
    for (const e of eis.list()) if (e.spec?.image) controller.enqueue(e.spec.image);
  };
  // Few images, few events: instance managers and nodes concern every image; a volume only its own.
  volumes.addEventHandler({
    onAdd: (v) => volumeImages(v).forEach((i) => controller.enqueue(i)),
    onUpdate: (a, b) => [...volumeImages(a), ...volumeImages(b)].forEach((i) => controller.enqueue(i)),
    onDelete: (v) => volumeImages(v).forEach((i) => controller.enqueue(i)),
  });
  eis.addEventHandler({ onAdd: (e) => controller.enqueue(e.spec?.image ?? ''), onDelete: (e) => controller.enqueue(e.spec?.image ?? '') });
  ims.addEventHandler({
    onAdd: all,
    onUpdate: (a, b) => void (a.status?.currentState !== b.status?.currentState && all()),
    onDelete: all,
  });
  nodes.addEventHandler({ onUpdate: (a, b) => void (nodeIsReady(a) !== nodeIsReady(b) && all()) });
  informers.informerFor('Setting').addEventHandler({ onAdd: all, onUpdate: all });
  return controller;
}
