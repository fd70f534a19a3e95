// The disks an instance manager may open replicas on. They come first from `--data-root` (the node's disks when
// its pod was made) and are replaced by PUT /v1/data-roots when the node's disks change: a disk added later must
// not wait for a restart of the manager, which would stop every replica and engine it hosts. Each root must be a
// registered disk (it holds the disk's identity file, which only the node agent writes). Instances already open
// keep running when their disk leaves the list; new ones, and removals of replica data, are refused there.

import { access, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DISK_CONFIG_FILE } from '../api/disk-layout.js';
import { ImError } from './errors.js';
import { checkPath } from './spec.js';

/** More disks than any node has; a bound on what one request can make the manager check. */
export const MAX_DATA_ROOTS = 64;

export class DataRoots {
  #list: readonly string[];

  constructor(initial: readonly string[] = []) {
    this.#list = [...initial];
  }

  get list(): readonly string[] {
    return this.#list;
  }

  /** Checks a PUT /v1/data-roots body ({dataRoots: [absolute paths]}) and makes it the list; returns the list. */
  async replace(body: unknown): Promise<readonly string[]> {
    const v = body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>)['dataRoots'] : undefined;
    if (!Array.isArray(v) || v.length > MAX_DATA_ROOTS) throw new ImError('InvalidArgument', `dataRoots must be an array of at most ${MAX_DATA_ROOTS} absolute paths`);
    const roots = [...new Set(v.map((p, i) => checkPath(`dataRoots[${i}]`, p, 'any')))];
    for (const [i, root] of roots.entries()) await checkRegisteredDisk(`dataRoots[${i}]`, root);
    this.#list = roots;
    return roots;
  }
}

async function checkRegisteredDisk(field: string, root: string): Promise<void> {
  try {
    if (!(await stat(root)).isDirectory()) throw new Error('not a directory');
    await access(join(root, DISK_CONFIG_FILE));
  } catch {
    throw new ImError('InvalidArgument', `${field} ${JSON.stringify(root)} is not a registered disk of this node: it is not a directory holding ${DISK_CONFIG_FILE}`);
  }
}
