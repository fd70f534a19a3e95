// A pod's volumes on this node, as the kubelet and a CSI node plugin provide them: for each
// `volumes[].persistentVolumeClaim`, the claim's PV names a Longhorn Volume (`csi.volumeHandle`); the agent
// attaches it here (Volume `spec.nodeID`), waits for its block device, makes a filesystem only when the device
// holds none (a backing image's filesystem is used as it is), grows the filesystem to the device after the volume
// was expanded (fs-grow.ts), and mounts it at
//
//   <data-dir>/volumes/<ns>_<pod>_<uid>/<volume name>/        one mount per pod volume
//   <data-dir>/volumes/<ns>_<pod>_<uid>/attached.json         the Volumes this pod attached (for release)
//
// The pod's process finds its mounts in STRATUM_MOUNTS (JSON: volumeMount.mountPath → host path): Stratum has
// no container filesystem to mount into. A volume attached to another node is left alone until that node's
// agent has released it (its pod stopped), then attached here: "detached there first".
// Release (pod stopped, deleted, or found orphaned): unmount every mount, then clear `spec.nodeID` of each
// Volume this pod attached. Mounts live outside the pod's record directory so that removing a record can never
// delete a volume's files.

import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeepReadonly } from '../api/meta.js';
import { DEFAULT_NAMESPACE } from '../api/meta.js';
import type { PersistentVolume } from '../api/persistent-volume.js';
import type { PersistentVolumeClaim } from '../api/persistent-volume-claim.js';
import type { Pod } from '../api/pod.js';
import type { Volume } from '../api/volume.js';
import type { Logger } from '../controller-kit/log.js';
import { isConflict, isNotFound } from '../store/errors.js';
import type { Store } from '../store/types.js';
import { AgentError } from './errors.js';
import { growExtFilesystem } from './fs-grow.js';
import { runTool } from './run-tool.js';

/** The environment variable with a pod's mounts: JSON `{"<mountPath>": "<host path>"}`. */
export const MOUNTS_ENV = 'STRATUM_MOUNTS';

export type VolumesResult = { ready: true; mounts: Record<string, string> } | { ready: false; message: string };

interface PodRef {
  namespace: string;
  name: string;
  uid: string;
}

export interface PodVolumesOptions {
  store: Store;
  nodeName: string;
  dataDir: string;
  logger: Logger;
  /** Namespace of Longhorn Volumes. */
  namespace?: string;
}


/** Mount points (decoded) from /proc/self/mountinfo. */
async function mountPoints(): Promise<Set<string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const decode = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  return new Set(text.split('\n').filter((l) => l).map((l) => decode(l.split(' ')[4] ?? '')));
}

export class PodVolumes {
  readonly #o: PodVolumesOptions;
  readonly #ns: string;

  constructor(o: PodVolumesOptions) {
    this.#o = o;
    this.#ns = o.namespace ?? DEFAULT_NAMESPACE;
  }

  dirOf(p: PodRef): string {
    return join(this.#o.dataDir, 'volumes', `${p.namespace}_${p.name}_${p.uid}`);
  }

  /** Pods with a volume directory here (to find orphans after a restart). */
  async list(): Promise<PodRef[]> {
    const names = await readdir(join(this.#o.dataDir, 'volumes')).catch(() => [] as string[]);
    return names.flatMap((n) => {
      const [namespace, name, uid] = n.split('_');
      return namespace && name && uid ? [{ namespace, name, uid }] : [];
    });
  }

  /**
   * Attaches and mounts every claimed volume of `pod`; `ready: false` says what it waits for (call again later).
   * Throws AgentError `VolumeMountFailed` when a tool fails.
   *
   * The claims are taken in the pod's order, and a free volume is claimed for this node without waiting for the
   * ones before it to finish attaching: a pod's volumes attach together, not one per check. A volume that is not
   * free (bound elsewhere, attached to another node) stops the pass there, so a pod only ever holds a prefix of its
   * claims, as before. Mounting starts once every volume is attached.
   */
  async prepare(pod: DeepReadonly<Pod>, signal: AbortSignal): Promise<VolumesResult> {
    const ref = { namespace: pod.metadata.namespace ?? '', name: pod.metadata.name ?? '', uid: pod.metadata.uid ?? '' };
    const dir = this.dirOf(ref);
    const attached = new Set(await this.#attached(dir));
    const ready: { name: string; endpoint: string; fsType: string }[] = [];
    let waiting: string | undefined;
    for (const v of pod.spec?.volumes ?? []) {
      if (!v.persistentVolumeClaim) continue;
      const claim = v.persistentVolumeClaim.claimName;
      const pvc = await this.#get<PersistentVolumeClaim>('PersistentVolumeClaim', ref.namespace, claim);
      const pvName = pvc?.spec?.volumeName;
      if (!pvc || !pvName || pvc.status?.phase !== 'Bound') return { ready: false, message: waiting ?? `waiting for claim "${claim}" to be bound` };
      const pv = await this.#get<PersistentVolume>('PersistentVolume', '', pvName);
      const handle = pv?.spec?.csi?.volumeHandle;
      if (!handle) return { ready: false, message: waiting ?? `PV ${pvName} of claim "${claim}" names no volume` };
      const volume = await this.#get<Volume>('Volume', this.#ns, handle);
      if (!volume) return { ready: false, message: waiting ?? `waiting for volume ${handle} of claim "${claim}"` };
      const owner = volume.spec?.nodeID ?? '';
      if (owner !== '' && owner !== this.#o.nodeName) {
        return { ready: false, message: waiting ?? `volume ${handle} of claim "${claim}" is attached to ${owner}; waiting for it to be detached there` };
      }
      if (owner === '') {
        attached.add(handle);
        await this.#saveAttached(dir, attached);
        try {
          await this.#o.store.patch('Volume', this.#ns, handle, 'merge', { spec: { nodeID: this.#o.nodeName }, metadata: { resourceVersion: volume.metadata.resourceVersion } });
        } catch (err) {
          if (!isConflict(err)) throw err;
        }
        waiting ??= `attaching volume ${handle} of claim "${claim}"`;
        continue;
      }
      const st = volume.status;
      if (st?.state !== 'attached' || st.currentNodeID !== this.#o.nodeName || !st.endpoint) {
        waiting ??= `waiting for volume ${handle} of claim "${claim}" to be attached (state ${st?.state || 'unknown'})`;
        continue;
      }
      if (!attached.has(handle)) {
        attached.add(handle);
        await this.#saveAttached(dir, attached);
      }
      ready.push({ name: v.name, endpoint: st.endpoint, fsType: pv.spec?.csi?.fsType || 'ext4' });
    }
    if (waiting !== undefined) return { ready: false, message: waiting };
    const hostPathOf = new Map<string, string>();
    for (const r of ready) {
      const target = join(dir, r.name);
      await this.#mount(r.endpoint, target, r.fsType, signal);
      hostPathOf.set(r.name, target);
    }
    const mounts: Record<string, string> = {};
    for (const m of pod.spec?.containers[0]?.volumeMounts ?? []) {
      const host = hostPathOf.get(m.name);
      if (host !== undefined) mounts[m.mountPath] = m.subPath ? join(host, m.subPath) : host;
    }
    return { ready: true, mounts };
  }

  /** Unmounts the pod's volumes and detaches the Volumes it attached; idempotent. */
  async release(ref: PodRef, signal: AbortSignal): Promise<void> {
    const dir = this.dirOf(ref);
    const mounted = await mountPoints();
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const target = join(dir, name);
      if (!mounted.has(target)) continue;
      const r = await runTool('umount', [target], signal);
      if (r.code !== 0) throw new AgentError('VolumeMountFailed', `Cannot unmount ${target} of pod ${ref.namespace}/${ref.name}: ${r.stderr.trim()}`);
    }
    for (const handle of await this.#attached(dir)) {
      const volume = await this.#get<Volume>('Volume', this.#ns, handle);
      if (volume?.spec?.nodeID !== this.#o.nodeName) continue;
      await this.#o.store.patch('Volume', this.#ns, handle, 'merge', { spec: { nodeID: '' } }).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
    }
    await rm(dir, { recursive: true, force: true });
  }

  async #mount(device: string, target: string, fsType: string, signal: AbortSignal): Promise<void> {
    if ((await mountPoints()).has(target)) return;
    await mkdir(target, { recursive: true });
    // blkid exits 2 when the device holds no recognisable filesystem: only then is one made.
    const probe = await runTool('blkid', ['-p', '-o', 'value', '-s', 'TYPE', device], signal);
    if (probe.code === 2) {
      const mk = await runTool(`mkfs.${fsType}`, fsType === 'ext4' ? ['-q', '-F', device] : ['-q', device], signal);
      if (mk.code !== 0) throw new AgentError('VolumeMountFailed', `Cannot make a ${fsType} filesystem on ${device}: ${mk.stderr.trim()}`);
      this.#o.logger.info(`made a ${fsType} filesystem on ${device}`);
    } else if (probe.code !== 0) {
      throw new AgentError('VolumeMountFailed', `Cannot probe ${device} for a filesystem: blkid exited with ${probe.code}: ${probe.stderr.trim()}`);
    }
    const found = probe.stdout.trim();
    // An expanded volume: its device is larger than its filesystem (ext*: grown before the mount, see fs-grow.ts).
    if (/^ext[234]$/.test(found)) {
      const grew = await growExtFilesystem(runTool, device, signal);
      if (grew) this.#o.logger.info(grew);
    }
    const r = await runTool('mount', [device, target], signal);
    if (r.code !== 0) throw new AgentError('VolumeMountFailed', `Cannot mount ${device} at ${target}: ${r.stderr.trim()}`);
    if (found === 'xfs') {
      // xfs grows only mounted; a no-op when it already fills the device.
      const g = await runTool('xfs_growfs', [target], signal);
      if (g.code !== 0) this.#o.logger.warn(`cannot grow the xfs filesystem at ${target} to its device ${device}: xfs_growfs exited with ${g.code}: ${g.stderr.trim()}`);
    }
  }

  async #attached(dir: string): Promise<string[]> {
    try {
      return JSON.parse(await readFile(join(dir, 'attached.json'), 'utf8')) as string[];
    } catch {
      return [];
    }
  }

  async #saveAttached(dir: string, handles: Set<string>): Promise<void> {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'attached.json'), JSON.stringify([...handles]));
  }

  async #get<T>(kind: string, ns: string, name: string): Promise<T | undefined> {
    try {
      return await this.#o.store.get<T & { kind: string; apiVersion: string; metadata: object }>(kind, ns, name);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }
}
