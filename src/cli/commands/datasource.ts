// `stratum data-source`: one backing image's data source, run as a pod while its first file is prepared. Serves
// the API of docs/datasource-api.md until SIGINT/SIGTERM (pod deletion); a failure is reported through the API, not
// by exiting, so the controller can read it. Only bad flags make the process exit early (status 1).

import { CLUSTER_SECRET_ENV, clusterSecretFromEnv } from '../../auth/index.js';
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
// The error class alone, statically: the data source itself loads only when `stratum data-source` runs (main.ts).
import { DataSourceError } from '../../datasource/errors.js';
import type { SourceType } from '../../datasource/index.js';

export interface DataSourceCommandOptions {
  disk: string;
  name: string;
  uuid: string;
  sourceType: string;
  port: string | number;
  host?: string | undefined;
  parameters?: string[] | undefined;
  checksum?: string | undefined;
  headerFile?: string | undefined;
  stallTimeout?: string | undefined;
  retries?: string | undefined;
  retryDelay?: string | undefined;
  beginTimeout?: string | undefined;
  idleTimeout?: string | undefined;
  transferTimeout?: string | undefined;
  clusterSecretFile?: string | undefined;
  /** Download from loopback/private addresses (the setting allow-private-download-urls). */
  allowPrivateUrls?: boolean | undefined;
}

function seconds(flag: string, raw: string | undefined, dflt: number): number {
  if (raw === undefined) return dflt * 1000;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new DataSourceError('InvalidArgument', `--${flag} must be a positive number of seconds, not "${raw}"`);
  return Math.round(n * 1000);
}

/** Runs the data source until `signal` aborts; resolves after the server and the job have stopped. */
export async function runDataSource(o: DataSourceCommandOptions, signal: AbortSignal, log: (line: string) => void = defaultLog): Promise<void> {
  if (o.sourceType !== 'download' && o.sourceType !== 'upload') {
    throw new DataSourceError('InvalidArgument', `--source-type must be download or upload, not "${o.sourceType}"`);
  }
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new DataSourceError('InvalidArgument', `--port must be a port number, not "${o.port}"`);
  const retries = o.retries === undefined ? 8 : Number(o.retries);
  if (!Number.isInteger(retries) || retries < 0) throw new DataSourceError('InvalidArgument', `--retries must be a non-negative integer, not "${o.retries}"`);
  if (o.headerFile !== undefined && o.sourceType !== 'download') {
    throw new DataSourceError('InvalidArgument', '--header-file applies to download data sources only');
  }
  // Before anything is opened: a data source without the cluster secret would serve whoever connects.
  const clusterSecret = clusterSecretFromEnv(o.clusterSecretFile);
  const begin = seconds('begin-timeout', o.beginTimeout, 600);
  const { DataSource, normaliseChecksum, parseParameters, serveDataSource } = await import('../../datasource/index.js');
  const ds = await DataSource.open(
    {
      diskPath: resolve(o.disk),
      name: o.name,
      uuid: o.uuid,
      sourceType: o.sourceType as SourceType,
      parameters: parseParameters(o.parameters ?? []),
      expectedChecksum: normaliseChecksum('--checksum', o.checksum),
      headerFile: o.headerFile === undefined ? undefined : resolve(o.headerFile),
      allowPrivate: o.allowPrivateUrls === true,
      env: process.env,
      timeouts: {
        pending: begin,
        starting: begin,
        'in-progress': seconds('idle-timeout', o.idleTimeout, 1800),
        'ready-for-transfer': seconds('transfer-timeout', o.transferTimeout, 86_400),
      },
      stallTimeoutMs: seconds('stall-timeout', o.stallTimeout, 60),
      retries,
      retryBaseMs: seconds('retry-delay', o.retryDelay, 1),
      log,
    },
    { signal },
  );
  ds.onChange((kind) => {
    if (kind === 'state') {
      const i = ds.info();
      log(`state ${i.state}${i.message ? `: ${i.message}` : ''}`);
    }
  });
  ds.start();
  let server;
  try {
    server = await serveDataSource(ds, { host: o.host ?? '127.0.0.1', port, clusterSecret });
  } catch (err) {
    await ds.close();
    throw err;
  }
  log(`data source ${o.name}-${o.uuid} (${o.sourceType}) listening on ${server.url}`);
  if (!signal.aborted) await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
  // The job first: it aborts streaming uploads, so the server's close does not wait on a silent client.
  await ds.close();
  await server.close();
  log('stopped');
}

function defaultLog(line: string): void {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}

/** The `data-source` subcommand, for `program.addCommand(dataSourceCommand())`. */
export function dataSourceCommand(): Command {
  return new Command('data-source')
    .description("prepare a backing image's first file (download or upload) and serve its status until stopped")
    .requiredOption('--disk <path>', 'disk directory; work files go to <disk>/tmp/<name>-<uuid>/')
    .requiredOption('--name <name>', 'backing image name')
    .requiredOption('--uuid <uuid>', 'backing image uuid')
    .addOption(new Option('--source-type <type>', 'where the file comes from').choices(['download', 'upload']).makeOptionMandatory())
    .requiredOption('--port <port>', 'port of the API (0: any free port)')
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--allow-private-urls', 'download from loopback, private and link-local addresses too (the setting allow-private-download-urls)')
    .option('--cluster-secret-file <file>', `the cluster secret (default: $${CLUSTER_SECRET_ENV}, set by the node agent)`)
    .option('--parameters <k=v...>', 'source parameters, e.g. url=https://...')
    .option('--checksum <sha512>', 'expected SHA-512 of the file')
    .option('--header-file <file>', 'extra request headers for the download, one "Name: value" per line')
    .option('--stall-timeout <seconds>', 'retry a download that received no bytes for this long', '60')
    .option('--retries <n>', 'download attempts in a row without progress before failing', '8')
    .option('--retry-delay <seconds>', 'first retry backoff (doubles up to 30 s)', '1')
    .option('--begin-timeout <seconds>', 'limit on pending/starting (e.g. an upload that never begins)', '600')
    .option('--idle-timeout <seconds>', 'limit on in-progress without bytes moving', '1800')
    .option('--transfer-timeout <seconds>', 'limit on ready-for-transfer before the file is dropped', '86400')
    .action(async (o: DataSourceCommandOptions) => {
      const ac = new AbortController();
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort());
      try {
        await runDataSource(o, ac.signal);
      } catch (err) {
        process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = 1;
      }
    });
}
