// What the agent remembers about each pod it runs, on disk, so that a restarted agent (even after kill -9)
// adopts running processes instead of starting them twice, and keeps their restart count, ports and last exit.
//
//   <data-dir>/pods/<namespace>_<name>_<uid>/
//     record.json      this file's content (written by rename, never half-written)
//     logs/<n>.log     stdout+stderr of instance n (the current one and the previous one are kept)
//     pid-<n>, exit-<n> written by the instance's shim (see instance.ts)

import { mkdirSync, readdirSync } from 'node:fs';
import { readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeepReadonly } from '../api/meta.js';
import type { Pod } from '../api/pod.js';
import type { ExitRecord, InstanceRecord } from './instance.js';

export interface PodRecord {
  uid: string;
  namespace: string;
  name: string;
  /** Restarts so far (the next instance gets this number). */
  restartCount: number;
  /** Consecutive failures, for crash-loop backoff. */
  failures: number;
  /** Port key (port name, or the containerPort number when unnamed) → reserved host port. */
  ports: Record<string, number>;
  /** When the agent first accepted the pod (status.startTime). */
  startTime: string;
  /** Set once any instance started (the pod is Running from then on, even while it waits to restart). */
  everStarted: boolean;
  current?: InstanceRecord;
  lastExit?: ExitRecord;
  /** Why the pod ended for good (Failed/Succeeded), when it did. */
  terminal?: { phase: 'Succeeded' | 'Failed'; reason: string; message: string };
  /** Earliest time (ISO) of the next start while backing off. */
  backoffUntil?: string;
}

/** The record of a pod this agent has not run before. */
export function newPodRecord(pod: DeepReadonly<Pod>): PodRecord {
  const st = pod.status;
  const r: PodRecord = {
    uid: pod.metadata.uid ?? '',
    namespace: pod.metadata.namespace ?? '',
    name: pod.metadata.name ?? '',
    // An agent that lost its data directory still continues the count the pod shows.
    restartCount: st?.containerStatuses?.[0]?.restartCount ?? 0,
    failures: 0,
    ports: {},
    startTime: st?.startTime ?? new Date().toISOString(),
    everStarted: false,
  };
  // A pod that already ended (by another agent's account) is not run again.
  if (st?.phase === 'Succeeded' || st?.phase === 'Failed') {
    r.terminal = { phase: st.phase, reason: st.reason ?? '', message: st.message ?? '' };
  }
  return r;
}

export function podDirName(namespace: string, name: string, uid: string): string {
  return `${namespace}_${name}_${uid}`;
}

export function parsePodDirName(dir: string): { namespace: string; name: string; uid: string } | undefined {
  // Namespaces and names are DNS labels/subdomains (no '_'); uids have none either.
  const m = /^([^_]+)_([^_]+)_([^_]+)$/.exec(dir);
  return m ? { namespace: m[1] ?? '', name: m[2] ?? '', uid: m[3] ?? '' } : undefined;
}

export class PodStore {
  readonly root: string;

  constructor(dataDir: string) {
    this.root = join(dataDir, 'pods');
    mkdirSync(this.root, { recursive: true });
  }

  dirOf(r: { namespace: string; name: string; uid: string }): string {
    return join(this.root, podDirName(r.namespace, r.name, r.uid));
  }

  logFile(r: { namespace: string; name: string; uid: string }, n: number): string {
    return join(this.dirOf(r), 'logs', `${n}.log`);
  }

  async load(dir: string): Promise<PodRecord | undefined> {
    const text = await readFile(join(dir, 'record.json'), 'utf8').catch(() => undefined);
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as PodRecord;
    } catch {
      return undefined;
    }
  }

  async save(r: PodRecord): Promise<void> {
    const dir = this.dirOf(r);
    mkdirSync(join(dir, 'logs'), { recursive: true });
    const tmp = join(dir, `record.json.tmp-${process.pid}`);
    await writeFile(tmp, JSON.stringify(r, null, 1));
    await rename(tmp, join(dir, 'record.json'));
  }

  /** Drops logs and status files of instances older than `keepFrom` (the previous instance stays for --previous). */
  async prune(r: PodRecord, keepFrom: number): Promise<void> {
    const dir = this.dirOf(r);
    for (const sub of ['', 'logs']) {
      let names: string[] = [];
      try {
        names = readdirSync(join(dir, sub));
      } catch {
        continue;
      }
      for (const f of names) {
        const m = /^(?:pid-|exit-)?(\d+)(?:\.log)?$/.exec(f);
        if (m && Number(m[1]) < keepFrom) await unlink(join(dir, sub, f)).catch(() => undefined);
      }
    }
  }

  async remove(r: { namespace: string; name: string; uid: string }): Promise<void> {
    await rm(this.dirOf(r), { recursive: true, force: true });
  }

  /** Every pod directory, parsed. */
  list(): { dir: string; namespace: string; name: string; uid: string }[] {
    let names: string[] = [];
    try {
      names = readdirSync(this.root);
    } catch {
      return [];
    }
    return names.flatMap((d) => {
      const p = parsePodDirName(d);
      return p ? [{ dir: join(this.root, d), ...p }] : [];
    });
  }
}
