// One agent per data directory: two agents adopting the same pods would each restart what the other runs. The
// lock is a file naming the holder by pid and start time, so a lock left by a killed agent is recognised as
// stale and taken over, and a live holder is named in the error.

import { randomBytes } from 'node:crypto';
import { link, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentError } from './errors.js';
import { identityOf, isRunning, type ProcessIdentity } from './proc.js';

export interface DirLock {
  release(): Promise<void>;
}

/** Locks `dir` for this process; `what` names the kind of holder in the error (`stratum node`, `stratum up`). */
export async function lockDataDir(dir: string, what = 'stratum node', name = 'agent.lock'): Promise<DirLock> {
  const file = join(dir, name);
  const me: ProcessIdentity = identityOf(process.pid) ?? { pid: process.pid, startTime: '0' };
  const content = JSON.stringify(me);
  const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, content);
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(tmp, file);
        return { release: () => unlink(file).catch(() => undefined) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = await readFile(file, 'utf8').then((t) => JSON.parse(t) as ProcessIdentity).catch(() => undefined);
      if (holder && holder.pid !== process.pid && isRunning(holder)) {
        throw new AgentError('DataDirLocked', `Cannot use data directory ${dir}: another ${what} (pid ${holder.pid}) uses it; stop it first or choose another --data-dir`);
      }
      // Stale (its agent is gone): take it over, then check that we won against any other starter.
      await rename(tmp, file);
      await writeFile(tmp, content);
      const now = await readFile(file, 'utf8').catch(() => '');
      if (now === content) return { release: () => unlink(file).catch(() => undefined) };
    }
    throw new AgentError('DataDirLocked', `Cannot lock data directory ${dir}: another ${what} is starting there at the same time`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}
