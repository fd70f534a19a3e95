// What `stratum upgrade --wait` and `stratum version` read: the manager's release and the data-plane components
// per node (backing-image managers per disk, instance managers), and from that, what still waits for what.

import { isInFlightWork } from '../../api/backing-image-manager.js';
import { formatTable } from '../../util/table.js';
import type { ReleaseView } from '../../apiserver/longhorn-v1/upgrade.js';
import { request } from '../api.js';

const BASE = '/apis/longhorn.io/v1beta2/namespaces/longhorn-system';

interface Obj<S, T> {
  metadata: { name: string; deletionTimestamp?: string };
  spec?: S;
  status?: T;
}
type Bim = Obj<{ image?: string; nodeID?: string; diskUUID?: string; backingImages?: Record<string, string> }, {
  currentState?: string;
  apiVersion?: number;
  apiMinVersion?: number;
  backingImageFileMap?: Record<string, { state?: string; progress?: number; message?: string; senderManagerAddress?: string }>;
}>;
type Vol = Obj<{ image?: string; nodeID?: string }, { currentImage?: string; state?: string }>;
type Eng = Obj<{ image?: string; nodeID?: string; volumeName?: string }, { currentImage?: string; currentState?: string }>;
type Im = Obj<{ image?: string; nodeID?: string }, { currentState?: string; apiVersion?: number; apiMinVersion?: number; instanceEngines?: Record<string, unknown>; instanceReplicas?: Record<string, unknown> }>;

export interface UpgradeSnapshot {
  release: ReleaseView;
  /** The default-*-image settings as the manager pinned them. */
  defaults: Record<string, string>;
  backingImageManagers: Bim[];
  instanceManagers: Im[];
  engines: Eng[];
  volumes: Vol[];
  /** concurrent-automatic-engine-upgrade-per-node-limit: 0 means volumes are not moved automatically. */
  engineUpgradeLimit: number;
}

export async function snapshot(server: string, signal?: AbortSignal): Promise<UpgradeSnapshot> {
  const get = async <T>(path: string) => (await request('GET', `${server}${path}`, signal ? { signal } : {})).body as T;
  const release = await get<ReleaseView>('/v1/version');
  const settings = await get<{ data: { name: string; value: string }[] }>('/v1/settings');
  const defaults: Record<string, string> = {};
  for (const s of settings.data) if (s.name.startsWith('default-') && s.name.endsWith('-image')) defaults[s.name] = s.value;
  const limit = Number(settings.data.find((s) => s.name === 'concurrent-automatic-engine-upgrade-per-node-limit')?.value ?? '0');
  const bims = await get<{ items: Bim[] }>(`${BASE}/backingimagemanagers`);
  const ims = await get<{ items: Im[] }>(`${BASE}/instancemanagers`);
  const engines = await get<{ items: Eng[] }>(`${BASE}/engines`);
  const vols = await get<{ items: Vol[] }>(`${BASE}/volumes`);
  return { release, defaults, backingImageManagers: bims.items, instanceManagers: ims.items, engines: engines.items, volumes: vols.items, engineUpgradeLimit: limit };
}

const pct = (p: number | undefined) => (p === undefined ? '' : ` ${p}%`);

/** One line per thing the roll still waits for, saying what it waits for. Empty: the upgrade is complete. */
export function waiting(s: UpgradeSnapshot): string[] {
  const out: string[] = [];
  const bimImage = s.defaults['default-backing-image-manager-image'] ?? s.release.release.defaults['backing-image-manager'];
  const byDisk = new Map<string, Bim[]>();
  for (const m of s.backingImageManagers) byDisk.set(m.spec?.diskUUID ?? '', [...(byDisk.get(m.spec?.diskUUID ?? '') ?? []), m]);
  for (const [disk, ms] of byDisk) {
    const fresh = ms.find((m) => m.spec?.image === bimImage);
    for (const old of ms.filter((m) => m.spec?.image !== bimImage)) {
      const busy = Object.entries(old.status?.backingImageFileMap ?? {}).filter(([, f]) => isInFlightWork(f));
      const where = `backing-image manager ${old.metadata.name} (${old.spec?.image}) on ${old.spec?.nodeID}`;
      out.push(busy.length > 0
        ? `${where}: retired once its in-flight work is done: ${busy.map(([bi, f]) => `${bi} ${f.state}${pct(f.progress)}`).join(', ')}`
        : `${where}: being retired (its files stay on disk ${disk})`);
      out.push(fresh
        ? `backing-image manager ${fresh.metadata.name} (${bimImage}) on ${fresh.spec?.nodeID}: waits for ${old.metadata.name} to leave the disk`
        : `disk ${disk} on ${old.spec?.nodeID}: no backing-image manager of ${bimImage} yet; waits for ${old.metadata.name} to be retired`);
    }
    if (!fresh || ms.length > 1) continue;
    const where = `backing-image manager ${fresh.metadata.name} (${bimImage}) on ${fresh.spec?.nodeID}`;
    if (fresh.status?.currentState !== 'running') {
      out.push(`${where}: ${fresh.status?.currentState || 'being created'}`);
      continue;
    }
    for (const bi of Object.keys(fresh.spec?.backingImages ?? {})) {
      const f = fresh.status.backingImageFileMap?.[bi];
      // Not reported: nothing exists to take over (e.g. an image whose first file failed); nothing to wait for.
      if (!f || f.state === 'ready') continue;
      const readyElsewhere = s.backingImageManagers.some((m) => m !== fresh && m.status?.backingImageFileMap?.[bi]?.state === 'ready');
      // A failed copy is synced again after the backoff only from a ready one; without one it waits for a person.
      if (f.state === 'failed' && !readyElsewhere) continue;
      const why = f.state === 'failed' ? ' (taken over in progress: synced again from a ready copy after the backoff)' : '';
      out.push(`${where}: copy of ${bi} ${f.state}${pct(f.progress)}${why}`);
    }
  }
  // Engines: with automatic upgrade on, every volume moves to the default engine image (a detached one offline, an
  // attached one live, at most the limit per node); with it off, only volumes already asked to move are waited for.
  const engine = s.defaults['default-engine-image'] ?? '';
  for (const v of s.volumes) {
    const from = v.status?.currentImage;
    if (!from) continue;
    const how = v.status?.state === 'detached' ? 'offline' : 'live';
    if (v.spec?.image && v.spec.image !== from) out.push(`volume ${v.metadata.name}: engine image ${from} -> ${v.spec.image} (${how}, in progress)`);
    else if (s.engineUpgradeLimit > 0 && from !== engine) out.push(`volume ${v.metadata.name}: engine image ${from}, waits for a slot of its node to move to ${engine} (${how}; its events say why it waits)`);
  }
  return out;
}

export interface FollowOptions {
  report: (line: string) => void;
  signal: AbortSignal;
  pollMs?: number;
}

/** Waits for the manager to run `version`, then for the data plane to settle; reports each change of what waits. */
export async function follow(server: string, version: string, o: FollowOptions): Promise<UpgradeSnapshot> {
  const poll = o.pollMs ?? 1000;
  const sleep = () => new Promise<void>((r) => setTimeout(r, poll));
  let shown = new Set<string>();
  let unreachable = false;
  let managerUp = false;
  let settled = 0;
  for (;;) {
    if (o.signal.aborted) throw new Error(`the upgrade to ${version} did not complete in time; still waiting for: ${[...shown].join('; ') || 'the manager'}`);
    let s: UpgradeSnapshot;
    try {
      // Not AbortSignal.any with the long-lived signal: every poll's composite would stay referenced by it.
      s = await snapshot(server, AbortSignal.timeout(10_000));
    } catch {
      if (!unreachable) o.report('manager: restarting (not answering yet)');
      unreachable = true;
      await sleep();
      continue;
    }
    unreachable = false;
    if (s.release.release.version !== version) {
      if (!shown.has('manager')) o.report(`manager: still running release ${s.release.release.version}; waiting for it to restart on ${version}`);
      shown = new Set(['manager']);
      await sleep();
      continue;
    }
    if (!managerUp) o.report(`manager: running release ${version} (since ${s.release.appliedAt ?? 'now'})`);
    managerUp = true;
    const now = waiting(s);
    for (const line of now) if (!shown.has(line)) o.report(line);
    shown = new Set(now);
    // Twice empty: a manager may be between retired and replaced for one poll.
    settled = now.length === 0 ? settled + 1 : 0;
    if (settled >= 2) return s;
    await sleep();
  }
}

export function summary(before: UpgradeSnapshot, after: UpgradeSnapshot, ms: number): string {
  const names = (ms: Bim[]) => new Set(ms.map((m) => m.metadata.name));
  const afterNames = names(after.backingImageManagers);
  const retired = before.backingImageManagers.filter((m) => !afterNames.has(m.metadata.name));
  const lines = [
    `upgraded to release ${after.release.release.version} (from ${before.release.release.version}) in ${Math.round(ms / 1000)} s`,
    `  backing-image managers: ${after.backingImageManagers.length} running ${after.defaults['default-backing-image-manager-image']}` +
      (retired.length > 0 ? `; retired ${retired.map((m) => `${m.metadata.name} (${m.spec?.image}, ${m.spec?.nodeID})`).join(', ')}` : '; none retired'),
    `  instance managers: ${after.instanceManagers.length} of ${[...new Set(after.instanceManagers.map((m) => m.spec?.image))].join(', ')}`,
  ];
  // An instance manager of an older image keeps what it hosts (attached volumes) until it is empty; it is not waited
  // for: detaching a volume, or its next attach, moves it to the new one.
  const imImage = after.defaults['default-instance-manager-image'];
  const oldIms = after.instanceManagers.filter((m) => m.spec?.image !== imImage);
  if (oldIms.length > 0) {
    lines.push(`  instance managers of an older image, retired once empty (detach their volumes to move them): ${oldIms.map((m) =>
      `${m.metadata.name} (${m.spec?.image}, ${m.spec?.nodeID}: ${Object.keys(m.status?.instanceEngines ?? {}).length} engine(s), ${Object.keys(m.status?.instanceReplicas ?? {}).length} replica(s))`).join(', ')}`);
  }
  const engine = after.defaults['default-engine-image'];
  const on = after.volumes.filter((v) => v.status?.currentImage === engine).length;
  const others = after.volumes.filter((v) => v.status?.currentImage !== engine).map((v) => `${v.metadata.name} (${v.status?.currentImage})`);
  lines.push(`  volumes: ${on} of ${after.volumes.length} run engine image ${engine}` + (others.length > 0 ? `; on another image: ${others.join(', ')}` : ''));
  for (const name of ['default-backing-image-manager-image', 'default-instance-manager-image', 'default-engine-image']) {
    const a = before.defaults[name];
    const b = after.defaults[name];
    lines.push(`  ${name}: ${a === b ? `${b} (unchanged)` : `${a} -> ${b}`}`);
  }
  return `${lines.join('\n')}\n`;
}

/** `stratum version`: the release, then one row per node × component. */
export function versionText(s: UpgradeSnapshot): string {
  const r = s.release.release;
  const img = (name: string | undefined) => s.release.images?.[name ?? ''];
  const range = (min?: number, max?: number) => (max ? (min === max ? String(max) : `${min}..${max}`) : '-');
  const lines = [
    `manager: release ${r.version} (${s.release.source}${s.release.appliedAt ? `, applied ${s.release.appliedAt}` : ''})`,
    `  speaks: ${Object.entries(r.apis).map(([c, a]) => `${c} API ${range(a.min, a.max)}`).join(', ')}`,
    `  defaults: ${Object.entries(s.defaults).map(([k, v]) => `${k}=${v}`).join(', ')}`,
    '',
  ];
  const rows: string[][] = [];
  for (const m of s.backingImageManagers) {
    rows.push([m.spec?.nodeID ?? '', 'backing-image-manager', m.metadata.name, m.spec?.image ?? '', img(m.spec?.image)?.version ?? '?', range(m.status?.apiMinVersion, m.status?.apiVersion), m.status?.currentState ?? '', `disk ${m.spec?.diskUUID ?? ''}`]);
  }
  for (const m of s.instanceManagers) {
    const n = Object.keys(m.status?.instanceEngines ?? {}).length;
    const rep = Object.keys(m.status?.instanceReplicas ?? {}).length;
    rows.push([m.spec?.nodeID ?? '', 'instance-manager', m.metadata.name, m.spec?.image ?? '', img(m.spec?.image)?.version ?? '?', range(m.status?.apiMinVersion, m.status?.apiVersion), m.status?.currentState ?? '', `${n} engine(s), ${rep} replica(s)`]);
  }
  // Each engine that runs (inside its node's instance manager), with the engine image it runs: its status says so,
  // as its instance manager reports it (a live upgrade changes it).
  for (const e of s.engines) {
    if (!e.spec?.nodeID || !e.status?.currentImage) continue;
    const info = img(e.status.currentImage);
    const moving = e.spec.image && e.spec.image !== e.status.currentImage ? `, moving to ${e.spec.image}` : '';
    rows.push([e.spec.nodeID, 'engine', e.metadata.name, e.status.currentImage, info?.version ?? '?', range(info?.apiMinVersion, info?.apiVersion), e.status.currentState ?? '', `volume ${e.spec.volumeName ?? '?'}${moving}`]);
  }
  rows.sort((a, b) => (a[0] ?? '').localeCompare(b[0] ?? '') || (a[1] ?? '').localeCompare(b[1] ?? ''));
  lines.push(formatTable(['NODE', 'COMPONENT', 'NAME', 'IMAGE', 'VERSION', 'API', 'STATE', 'DETAIL'], rows));
  return `${lines.join('\n')}\n`;
}
