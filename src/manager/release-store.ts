// Where the active release is kept on the etcd control plane: one key, `<prefix>release`, beside the registry, so
// that every manager sharing the cluster runs the same release. A manager copies it into `<data dir>/release.yaml`
// at start (the file the catalog, the supervisor and the node agents read, as on SQLite; on etcd the managers share
// that directory) and an accepted upgrade writes the key before the supervisor restarts every manager on it.
// A manager without that supervisor (started on its own, on another machine, by systemd) watches the key instead
// and stops when the release changes under it, so that whatever restarts it starts it on the new one: managers of
// two releases never run controllers side by side.

import { Etcd3, type Watcher } from 'etcd3';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const RELEASE_FILE = 'release.yaml';
const RELEASE_KEY = 'release';

export interface EtcdReleaseOptions {
  endpoints: string[];
  /** The cluster's key prefix in etcd (default /stratum/). */
  prefix?: string | undefined;
  /** Connecting (ms). */
  timeoutMs?: number;
  signal?: AbortSignal | undefined;
}

/** A client for one call; closed when the call ends or `signal` aborts (which fails the call). */
function client(o: EtcdReleaseOptions): { etcd: Etcd3; key: string } {
  const etcd = new Etcd3({ hosts: o.endpoints, dialTimeout: o.timeoutMs ?? 10_000 });
  o.signal?.throwIfAborted();
  o.signal?.addEventListener('abort', () => etcd.close(), { once: true });
  return { etcd, key: `${o.prefix ?? '/stratum/'}${RELEASE_KEY}` };
}

/**
 * Makes `<dataDir>/release.yaml` the release stored in etcd: written when etcd has one that differs, removed when
 * etcd has none (etcd is the truth: a file left from elsewhere must not give this manager another release).
 * Returns what it did, for the manager's log.
 */
export async function syncReleaseFromEtcd(o: EtcdReleaseOptions & { dataDir: string }): Promise<'kept' | 'written' | 'removed' | 'none'> {
  const { etcd, key } = client(o);
  try {
    const text = await etcd.get(key).string();
    const file = join(o.dataDir, RELEASE_FILE);
    const local = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
    if (text === null) {
      if (local === undefined) return 'none';
      rmSync(file, { force: true });
      return 'removed';
    }
    if (local === text) return 'kept';
    // Managers sharing the directory may start together: each writes its own temporary file.
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, file);
    return 'written';
  } finally {
    etcd.close();
  }
}

/**
 * Stores an accepted release in etcd, the release every manager of the cluster starts on from now on, if the key
 * still holds `expected` (the stored text this manager started on; undefined: no release stored). Two upgrades sent
 * to two managers at once are both validated against the same running release; only the first to store wins, and
 * the other learns it (false) instead of silently replacing a release that was already accepted.
 */
export async function writeReleaseToEtcd(o: EtcdReleaseOptions, text: string, expected: string | undefined): Promise<boolean> {
  const { etcd, key } = client(o);
  try {
    const guard = expected === undefined ? etcd.if(key, 'Create', '==', 0) : etcd.if(key, 'Value', '==', expected);
    const r = await guard.then(etcd.put(key).value(text)).commit();
    return r.succeeded;
  } finally {
    etcd.close();
  }
}

/**
 * Watches the release key and calls `onChange` once, the first time the stored release is not `startedOn` (the text
 * this manager started on; undefined: none stored), with the text now stored (undefined: deleted). A change made
 * before the watch began counts too. Resolves once watching, to a function that stops it.
 */
export async function watchReleaseInEtcd(o: EtcdReleaseOptions, startedOn: string | undefined, onChange: (now: string | undefined) => void): Promise<() => Promise<void>> {
  const { etcd, key } = client(o);
  let fired = false;
  let stopped = false;
  let watcher: Watcher | undefined;
  let retry: NodeJS.Timeout | undefined;
  const check = (now: string | undefined): void => {
    if (fired || stopped || now === startedOn) return;
    fired = true;
    onChange(now);
  };
  // etcd3 re-establishes a watch whose connection broke, from the last revision it saw. One that etcd canceled is
  // gone (an `error`): a new one is opened a second later, and the key read again, so no change is missed.
  const open = async (): Promise<void> => {
    const w = await etcd.watch().key(key).create();
    w.on('put', (kv) => check(kv.value.toString()));
    w.on('delete', () => check(undefined));
    w.on('error', () => {
      if (watcher === w) watcher = undefined;
      reopen();
    });
    watcher = w;
    check((await etcd.get(key).string()) ?? undefined);
  };
  const reopen = (): void => {
    if (stopped || fired) return;
    retry = setTimeout(() => void open().catch(reopen), 1000);
    retry.unref();
  };
  try {
    await open();
  } catch (err) {
    etcd.close();
    throw err;
  }
  return async () => {
    stopped = true;
    clearTimeout(retry);
    const w = watcher;
    watcher = undefined;
    await w?.cancel().catch(() => undefined);
    etcd.close();
  };
}
