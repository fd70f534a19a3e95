// The manager's side of an upgrade. The active release is `<data dir>/release.yaml` (absent: the built-in one); on
// the etcd control plane that file is a copy of the release stored in etcd (release-store.ts).
// An upgrade request is validated against the running cluster (src/release/validate.ts) and, once accepted, the
// release is written there and the manager asks its supervisor to restart it: the new manager process starts on
// the release (its default-*-image settings and API ranges), as a Longhorn upgrade replaces longhorn-manager. The
// controllers then roll the data plane (backing-image managers retire, see their controller). Nothing changes
// when the release is refused, and nothing is written without a supervisor to restart the manager.

import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { defaultContext, loadCatalog } from '../agent/images.js';
import type { BackingImageManager } from '../api/backing-image-manager.js';
import type { InstanceManager } from '../api/instance-manager.js';
import { DEFAULT_NAMESPACE } from '../api/meta.js';
import { BUILTIN_RELEASE, parseRelease, releaseCatalog, ReleaseError, validateRelease, type Release, type RunningInstance } from '../release/index.js';
import type { Store } from '../store/types.js';
import type { ReleaseView, UpgradeService } from '../apiserver/longhorn-v1/upgrade.js';
import { RELEASE_FILE } from './release-store.js';

export { RELEASE_FILE };

/** The release the manager in `dataDir` runs on. */
export function activeRelease(dataDir: string): ReleaseView & { file?: string } {
  const file = join(dataDir, RELEASE_FILE);
  if (!existsSync(file)) return { release: BUILTIN_RELEASE, source: 'built-in' };
  return { release: parseRelease(readFileSync(file, 'utf8'), file), source: file, file, appliedAt: statSync(file).mtime.toISOString() };
}

/** Every backing-image manager and instance manager that reported an API range. */
export async function runningInstances(store: Store): Promise<RunningInstance[]> {
  const out: RunningInstance[] = [];
  for (const m of (await store.list<BackingImageManager>('BackingImageManager', { namespace: DEFAULT_NAMESPACE })).items) {
    if (!m.status?.apiVersion) continue;
    out.push({ component: 'backing-image-manager', name: `BackingImageManager ${m.metadata.name}`, image: m.spec?.image ?? '', apiMinVersion: m.status.apiMinVersion ?? 0, apiVersion: m.status.apiVersion });
  }
  for (const m of (await store.list<InstanceManager>('InstanceManager', { namespace: DEFAULT_NAMESPACE })).items) {
    if (!m.status?.apiVersion) continue;
    out.push({ component: 'instance-manager', name: `InstanceManager ${m.metadata.name}`, image: m.spec?.image ?? '', apiMinVersion: m.status.apiMinVersion ?? 0, apiVersion: m.status.apiVersion });
  }
  return out;
}

export interface UpgraderOptions {
  store: Store;
  dataDir: string;
  /** The --images files the manager's catalog is built from (the release's entries come on top). */
  imagesFiles: readonly string[];
  /** Asks the supervisor (`stratum up`) to restart this manager; undefined when nothing would. */
  restart: (() => void) | undefined;
  /**
   * Stores an accepted release where every manager of the cluster reads it (etcd), before the local file, if the
   * stored release is still `expected` (the text this manager started on; undefined: none); false when another
   * upgrade stored one meanwhile.
   */
  persist?: ((text: string, expected: string | undefined) => Promise<boolean>) | undefined;
  log: (line: string) => void;
}

export function upgrader(o: UpgraderOptions): UpgradeService {
  let pending = false;
  // What this process runs: read once, so that the old manager does not claim the new release before it restarted.
  const active = activeRelease(o.dataDir);
  const activeText = active.file ? readFileSync(active.file, 'utf8') : undefined;
  return {
    current: () => {
      const { file, ...view } = active;
      const images: NonNullable<ReleaseView['images']> = {};
      for (const e of loadCatalog([...o.imagesFiles, ...(file ? [file] : [])]).list()) {
        images[e.name] = { component: e.component, version: e.version, apiMinVersion: e.apiMinVersion, apiVersion: e.apiVersion };
      }
      return { ...view, images };
    },
    upgrade: async (text, dir, dryRun, name) => {
      if (pending) throw new ReleaseError('UpgradeUnavailable', 'an upgrade was accepted and the manager is restarting on it; try again once it is back');
      // `{dir}` means the directory of the file the user gave: fixed here, since the stored copy lives elsewhere.
      const expanded = dir === undefined ? text : text.replaceAll('{dir}', dir);
      const source = name ?? 'the release file';
      const release = parseRelease(expanded, source);
      // What runs now (the active release's entries included): a new release may derive from them.
      const base = loadCatalog([...o.imagesFiles, ...(active.file ? [active.file] : [])]).list();
      const catalog = releaseCatalog(release, base, source, { ...defaultContext(), dir: dir ?? process.cwd() });
      await validateRelease(release, catalog, await runningInstances(o.store), { source, trusted: loadCatalog(o.imagesFiles).list() });
      const previous = active.release;
      if (dryRun) return { release, previous };
      if (!o.restart) {
        throw new ReleaseError('UpgradeUnavailable', 'this manager was not started by `stratum up`, so nothing would restart it on the release; stop it and start it with the release file in its data directory as release.yaml');
      }
      // The stored release must stand alone (the next manager loads it over the --images files only): it keeps
      // the active release's entries that the new one does not replace, so a `from` into them still resolves.
      const stored = storedRelease(release, previous);
      try {
        releaseCatalog(parseRelease(stored, RELEASE_FILE), loadCatalog(o.imagesFiles).list(), RELEASE_FILE, { ...defaultContext(), dir: dir ?? process.cwd() });
      } catch (err) {
        throw new ReleaseError('InvalidRelease', `release ${source} refused, nothing was changed: it would not load on its own: ${(err as Error).message}`, { cause: err });
      }
      if (o.persist && !(await o.persist(stored, activeText))) {
        throw new ReleaseError(
          'UpgradeUnavailable',
          `release ${source} refused, nothing was changed: another upgrade stored a new release for the cluster while this one was being checked against ${previous.version}; look at the release the cluster runs now and send this one again if it still applies`,
        );
      }
      const file = join(o.dataDir, RELEASE_FILE);
      writeFileSync(`${file}.tmp`, stored);
      renameSync(`${file}.tmp`, file);
      pending = true;
      o.log(`stratum manager: release ${release.version} accepted (was ${previous.version}); restarting on it`);
      // After the reply is on its way: the supervisor stops this process and starts the new one.
      setTimeout(() => o.restart?.(), 200).unref();
      return { release, previous };
    },
  };
}

/** The release as stored: its own entries plus the entries of `previous` it does not replace. */
function storedRelease(r: Release, previous: Release): string {
  const images = new Map(previous.images.map((e) => [e.name, e]));
  for (const e of r.images) images.set(e.name, e);
  return stringifyYaml({ release: r.version, manager: { apis: r.apis }, defaults: r.defaults, images: [...images.values()] });
}

/** The release as a pinned setting value per default-*-image setting. */
export function releaseSettings(r: Release): Record<string, string> {
  return {
    'default-backing-image-manager-image': r.defaults['backing-image-manager'],
    'default-instance-manager-image': r.defaults['instance-manager'],
    'default-engine-image': r.defaults.engine,
  };
}
