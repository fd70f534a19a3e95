// `stratum bim`: the per-disk backing-image manager in the foreground until SIGINT/SIGTERM (run as a pod, one per
// disk). Flags are checked here and turned into `startBim` options; env variables override the API version range
// (upgrade tests fake a newer manager with them) and the state deadlines.

import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { CLUSTER_SECRET_ENV, clusterSecretFromEnv } from '../../auth/index.js';
// The error class alone, statically: the manager itself loads only when `stratum bim` runs (see main.ts).
import { BimError } from '../../bim/errors.js';
import type { Timeouts } from '../../bim/index.js';

export interface BimCommandOptions {
  disk: string;
  diskUuid: string;
  port: string;
  host?: string | undefined;
  apiVersion?: string | undefined;
  apiMinVersion?: string | undefined;
  maxConcurrentSends?: string | undefined;
  bandwidthLimit?: string | undefined;
  clusterSecretFile?: string | undefined;
}

function int(flag: string, v: string | undefined, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new BimError('InvalidArgument', `${flag} must be an integer between ${min} and ${max}, not ${JSON.stringify(v)}`);
  }
  return n;
}

/** Bytes per second: a number with an optional k/M/G (×1000) or Ki/Mi/Gi (×1024) suffix. */
export function parseRate(flag: string, v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(k|m|g|ki|mi|gi)?\s*$/i.exec(v);
  if (!m) throw new BimError('InvalidArgument', `${flag} must be bytes per second such as 104857600, 100Mi or 100M, not ${JSON.stringify(v)}`);
  const unit = (m[2] ?? '').toLowerCase();
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3 }[unit] ?? 1;
  const n = Math.floor(Number(m[1]) * mult);
  if (n < 1024) throw new BimError('InvalidArgument', `${flag} of ${n} bytes per second is below the 1024 minimum`);
  return n;
}

function timeoutsFromEnv(env: NodeJS.ProcessEnv): Partial<Timeouts> {
  const t: Partial<Timeouts> = {};
  const read = (k: keyof Timeouts, name: string) => {
    const v = env[name];
    if (v !== undefined && v !== '') t[k] = int(name, v, 0, 100);
  };
  read('pendingMs', 'STRATUM_BIM_PENDING_TIMEOUT_MS');
  read('startingMs', 'STRATUM_BIM_STARTING_TIMEOUT_MS');
  read('stallMs', 'STRATUM_BIM_STALL_TIMEOUT_MS');
  return t;
}

/** Runs the manager until `signal` aborts, then closes it gracefully. */
export async function runBim(opts: BimCommandOptions, signal: AbortSignal): Promise<void> {
  if (!opts.disk) throw new BimError('InvalidArgument', '--disk is required');
  if (!opts.diskUuid) throw new BimError('InvalidArgument', '--disk-uuid is required');
  const port = int('--port', opts.port, -1, 0, 65535);
  if (port < 0) throw new BimError('InvalidArgument', '--port is required');
  // A pod gets its image's API range as STRATUM_API_VERSION / STRATUM_API_MIN_VERSION (the agent's imageEnv).
  const apiVersion = int('--api-version', opts.apiVersion ?? process.env['STRATUM_API_VERSION'], 1, 1);
  const apiMinVersion = int('--api-min-version', opts.apiMinVersion ?? process.env['STRATUM_API_MIN_VERSION'], Math.min(1, apiVersion), 1);
  if (apiMinVersion > apiVersion) throw new BimError('InvalidArgument', `--api-min-version ${apiMinVersion} is above --api-version ${apiVersion}`);
  const { startBim } = await import('../../bim/index.js');
  const bim = await startBim({
    disk: resolve(opts.disk),
    diskUUID: opts.diskUuid,
    clusterSecret: clusterSecretFromEnv(opts.clusterSecretFile),
    host: opts.host ?? '127.0.0.1',
    port,
    versions: { apiVersion, apiMinVersion },
    // The pod's image (the agent sets STRATUM_IMAGE): a manager of a new image takes the disk's files over.
    image: process.env['STRATUM_IMAGE'],
    maxConcurrentSends: int('--max-concurrent-sends', opts.maxConcurrentSends, 3, 1, 1000),
    bandwidthLimit: opts.bandwidthLimit ? parseRate('--bandwidth-limit', opts.bandwidthLimit) : undefined,
    timeouts: timeoutsFromEnv(process.env),
    signal,
  });
  process.stdout.write(`stratum bim: disk ${resolve(opts.disk)} (${opts.diskUuid}) served at ${bim.url}\n`);
  if (!signal.aborted) await new Promise<void>((res) => signal.addEventListener('abort', () => res(), { once: true }));
  await bim.close();
}

/** The `bim` subcommand, for `program.addCommand(bimCommand())`. */
export function bimCommand(): Command {
  return new Command('bim')
    .description('run the backing-image manager of one disk')
    .requiredOption('--disk <path>', 'the disk folder (holding longhorn-disk.cfg)')
    .requiredOption('--disk-uuid <uuid>', 'the disk UUID; the manager refuses a disk whose longhorn-disk.cfg names another')
    .requiredOption('--port <port>', 'port to listen on (0: any free port)')
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .addOption(new Option('--api-version <n>', 'API version this manager reports').env('STRATUM_BIM_API_VERSION'))
    .addOption(new Option('--api-min-version <n>', 'oldest API version this manager still serves').env('STRATUM_BIM_API_MIN_VERSION'))
    .option('--max-concurrent-sends <n>', 'receivers one file is sent to at once (more get 429)', '3')
    .addOption(new Option('--bandwidth-limit <bytes/s>', 'cap on the bytes per second this manager sends (e.g. 100Mi)').env('STRATUM_BIM_BANDWIDTH_LIMIT'))
    .option('--cluster-secret-file <file>', `the cluster secret (default: $${CLUSTER_SECRET_ENV}, set by the node agent)`)
    .action(async (o: BimCommandOptions) => {
      const ac = new AbortController();
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort());
      try {
        await runBim(o, ac.signal);
      } catch (err) {
        process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(1);
      }
    });
}
