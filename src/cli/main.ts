// The `stratum` command. Each subcommand is a thin layer over the API (src/client) or starts a process
// (manager, node, up); errors print as one line naming what was wrong, exit status 1.
//
// Only the command declarations load at start; each action imports its module when it runs. Every pod
// (instance manager, backing-image manager, data source, replica, engine) and every `stratum get` starts this file,
// and loading the manager, the store, fastify and better-sqlite3 for each cost about half a second and 25 MiB of RSS.
// Declaration modules (up, node, volume, ...) import their heavy parts the same way; test/cli-lazy.test.ts checks it.

import { Command, Option } from 'commander';
import type { KindInfo } from '../api/kind.js';
import type { RawResponse } from './api.js';
import { DEFAULT_NAMESPACE } from '../api/meta.js';
import { pickLiveServer } from '../client/failover.js';
import { isNotFound, StoreError } from '../store/errors.js';
import { clientCredential, DEFAULT_KUBECONFIG, useToken } from './credentials.js';
import type { ManagerFlags } from './commands/manager.js';
import { addImagesCommand } from './commands/images.js';
import { addLogsCommand } from './commands/logs.js';
import { bimCommand } from './commands/bim.js';
import { dataSourceCommand } from './commands/datasource.js';
import { instanceCommands } from './commands/instances.js';
import { addNodeCommand } from './commands/node.js';
import { addUpCommand } from './commands/up.js';
import { addTokenCommand } from './commands/token.js';
import { addVolumeCommand } from './commands/volume.js';
import { addUpgradeCommands } from './commands/upgrade.js';
import { fail, qualifiedName } from './output.js';

const program = new Command('stratum')
  .description('Stratum: backing images and the volumes built on them')
  .addOption(
    new Option('-s, --server <url>', 'API server URL (several managers: comma-separated; default: the kubeconfig\'s, else http://127.0.0.1:9500)').env('STRATUM_SERVER').default('http://127.0.0.1:9500'),
  )
  .addOption(new Option('--kubeconfig <file>', `credentials (default: ${DEFAULT_KUBECONFIG} when it exists, as \`stratum up\` writes it)`).env('STRATUM_KUBECONFIG'))
  .addOption(new Option('--token <token>', 'bearer token (instead of the kubeconfig\'s)').env('STRATUM_TOKEN'))
  .showHelpAfterError('(run with --help for usage)')
  .hook('preAction', async () => {
    const o = program.opts<{ kubeconfig?: string; token?: string; server?: string }>();
    const k = await clientCredential({ kubeconfig: o.kubeconfig, token: o.token, serverGiven: program.getOptionValueSource('server') !== 'default', given: o.server });
    useToken(k.token);
    if (k.server) program.setOptionValue('server', k.server);
    // Several managers (`--server a,b,c`): talk to the first one that answers.
    const list = program.opts<{ server?: string }>().server;
    if (list?.includes(',')) program.setOptionValue('server', await pickLiveServer(list));
  });

function server(): string {
  return (program.opts<{ server: string }>().server ?? '').replace(/\/+$/, '');
}

async function kindOf(arg: string): Promise<KindInfo> {
  const { findKind } = await import('../api/index.js');
  const info = findKind(arg);
  if (!info) throw new StoreError('NotFound', `the server doesn't have a resource type "${arg}"`);
  return info;
}

/** Runs an action, turning any error into one line on stderr. */
function action<A extends unknown[]>(fn: (...args: A) => Promise<void>) {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      fail(err instanceof Error ? err.message : String(err));
    }
  };
}

program
  .command('manager')
  .description('run the control plane: store, API server, controllers')
  .option('--host <addr>', 'address to listen on', '127.0.0.1')
  .option('--port <port>', 'port to listen on', '9500')
  .option('--data-dir <dir>', 'where the state database lives', '.stratum/manager')
  .option('--backing-image-manager-image <image>', 'catalog image of backing-image managers (an upgrade changes it)')
  .option('--instance-manager-image <image>', 'catalog image of instance managers')
  .option('--etcd <urls>', 'keep the state in this etcd cluster (client URLs, comma-separated); managers sharing it elect a leader')
  .option('--etcd-prefix <prefix>', 'key prefix of this cluster in etcd', '/stratum/')
  .option('--images <file>', 'image catalog added to the built-in one (Pods may use only catalog images); repeatable', (v: string, all: string[] | undefined) => [...(all ?? []), v])
  .option('--advertise-host <name...>', 'DNS names of the manager the API answers for (besides IP literals and localhost)')
  .option('--cors-origin <origin...>', 'browser origins allowed to call the API cross-origin (default: none, CORS off)')
  .option('--event-ttl <seconds>', 'Events older than this are deleted (default 3600, as Kubernetes)')
  .action(action(async (o: ManagerFlags) => (await import('./commands/manager.js')).runManagerCommand(o)));

program
  .command('apply')
  .description('create or update resources from YAML (multi-document files, directories, - for stdin)')
  .requiredOption('-f, --filename <path>', 'file, directory or -')
  .option('-n, --namespace <ns>', 'namespace for namespaced objects that name none', DEFAULT_NAMESPACE)
  .action(
    action(async (o: { filename: string; namespace: string }) => {
      const { applyDocument, readDocuments } = await import('./commands/apply.js');
      const docs = readDocuments(o.filename);
      let failed = 0;
      for (const doc of docs) {
        try {
          process.stdout.write(`${await applyDocument(server(), doc, o.namespace)}\n`);
        } catch (err) {
          failed++;
          process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
        }
      }
      if (failed > 0) process.exit(1);
    }),
  );

program
  .command('get')
  .description('list resources, or show one')
  .argument('<kind>', 'kind, plural or short name (bi, bim, bids, lhv, pods, ...)')
  .argument('[name]')
  .option('-n, --namespace <ns>', 'namespace', DEFAULT_NAMESPACE)
  .option('-A, --all-namespaces', 'list across all namespaces', false)
  .option('-o, --output <format>', 'wide, yaml, json or name')
  .option('-l, --selector <selector>', 'label selector')
  .option('-w, --watch', 'after listing, print changes as they happen', false)
  .action(
    action(async (kind: string, name: string | undefined, o: { namespace: string; allNamespaces: boolean; output?: string; selector?: string; watch: boolean }) => {
      const { get } = await import('./commands/get.js');
      const ac = new AbortController();
      process.once('SIGINT', () => ac.abort());
      await get({
        server: server(),
        info: await kindOf(kind),
        name,
        namespace: o.namespace,
        allNamespaces: o.allNamespaces,
        output: o.output,
        selector: o.selector,
        watch: o.watch,
        signal: ac.signal,
        write: (t) => process.stdout.write(t),
      });
    }),
  );

program
  .command('describe')
  .description('show one resource in detail, with its events')
  .argument('<kind>')
  .argument('<name>')
  .option('-n, --namespace <ns>', 'namespace', DEFAULT_NAMESPACE)
  .action(
    action(async (kind: string, name: string, o: { namespace: string }) => {
      const { describe } = await import('./commands/describe.js');
      process.stdout.write(await describe(server(), await kindOf(kind), o.namespace, name));
    }),
  );

program
  .command('delete')
  .description('delete resources (waits until finalizers let them go, unless --wait=false)')
  .argument('<kind>')
  .argument('<names...>')
  .option('-n, --namespace <ns>', 'namespace', DEFAULT_NAMESPACE)
  .option('--cascade <policy>', 'background, foreground or orphan', 'background')
  .option('--wait <bool>', 'wait for the object to be gone', 'true')
  .option('--timeout <seconds>', 'how long to wait', '60')
  .action(
    action(async (kind: string, names: string[], o: { namespace: string; cascade: string; wait: string; timeout: string }) => {
      const info = await kindOf(kind);
      const [{ resourceUrl }, { request }] = await Promise.all([import('../client/http-store.js'), import('./api.js')]);
      const policy = { background: 'Background', foreground: 'Foreground', orphan: 'Orphan' }[o.cascade];
      if (!policy) throw new StoreError('BadRequest', `--cascade must be background, foreground or orphan, not "${o.cascade}"`);
      for (const name of names) {
        const url = resourceUrl(server(), info, o.namespace, name);
        await request('DELETE', url, { body: { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: policy } });
        process.stdout.write(`${qualifiedName(info, name).replace('/', ' "')}" deleted\n`);
        if (o.wait === 'true') await waitGone(request, url, Number(o.timeout) * 1000, name);
      }
    }),
  );

const bi = program.command('bi').alias('backingimage').description('backing images: create, upload, download, scrub, clean up copies');

bi.command('create')
  .description('create a backing image downloaded from a URL, or exported from a volume')
  .argument('<name>')
  .option('--url <url>', 'http or https URL of the image (qcow2 or raw)')
  .option('--from-volume <volume>', 'export the volume\'s content (backing image and snapshots flattened) from a fresh snapshot; the volume must be attached')
  .option('--export-type <type>', 'with --from-volume: raw or qcow2', 'raw')
  .option('--checksum <sha512>', 'expected SHA-512 of the file')
  .option('--min-copies <n>', 'minNumberOfCopies')
  .action(
    action(async (name: string, o: { url?: string; fromVolume?: string; exportType: string; checksum?: string; minCopies?: string }) => {
      if ((o.url === undefined) === (o.fromVolume === undefined)) throw new StoreError('BadRequest', 'give one of --url or --from-volume');
      await (await import('./commands/backing-image.js')).createImage(server(), name, o);
      process.stdout.write(`backingimage.longhorn.io/${name} created\n`);
    }),
  );

bi.command('upload')
  .description('upload a local file as a backing image (created if missing); re-run to resume an interrupted upload')
  .argument('<name>')
  .argument('<file>')
  .option('--checksum <sha512>', 'expected SHA-512 (computed from the file when omitted)')
  .action(
    action(async (name: string, file: string, o: { checksum?: string }) => {
      await (await import('./commands/backing-image.js')).uploadImage(server(), name, file, { ...(o.checksum ? { checksum: o.checksum } : {}), log: (l) => process.stdout.write(`${l}\n`) });
    }),
  );

bi.command('download')
  .description('download a ready copy to a local file (resumes a partial download)')
  .argument('<name>')
  .requiredOption('-o, --output <file>', 'where to write the image')
  .action(action(async (name: string, o: { output: string }) => (await import('./commands/backing-image.js')).downloadImage(server(), name, o.output)));

bi.command('cleanup')
  .description('remove copies of a backing image from chosen disks')
  .argument('<name>')
  .requiredOption('--disk <uuid...>', 'disk UUID(s) to remove the copy from')
  .action(
    action(async (name: string, o: { disk: string[] }) => {
      await (await import('./commands/backing-image.js')).cleanupImage(server(), name, o.disk);
      process.stdout.write(`backingimage.longhorn.io/${name} cleaned up on ${o.disk.join(', ')}\n`);
    }),
  );

bi.command('scrub')
  .description('read every ready copy again now and check it against the SHA-512; changed chunks are repaired from other copies')
  .argument('<name>')
  .option('--wait', 'follow the copies until each is verified, repaired or failed; exit 1 unless every copy verified clean')
  .option('--timeout <seconds>', 'with --wait: give up after this long', '3600')
  .action(
    action(async (name: string, o: { wait?: boolean; timeout: string }) => {
      const clean = await (await import('./commands/backing-image.js')).scrubImage(server(), name, { wait: o.wait === true, timeoutSeconds: Number(o.timeout), log: (l) => process.stdout.write(`${l}\n`) });
      if (!clean) process.exitCode = 1;
    }),
  );

async function waitGone(request: (method: string, url: string) => Promise<RawResponse>, url: string, timeoutMs: number, name: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      await request('GET', url);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new StoreError('Internal', `timed out after ${timeoutMs / 1000}s waiting for "${name}" to be deleted (finalizers still pending; see describe)`);
}

addNodeCommand(program);
addTokenCommand(program);
addUpCommand(program);
addVolumeCommand(program);
addUpgradeCommands(program);
addImagesCommand(program);
addLogsCommand(program);

program.addCommand(bimCommand());
program.addCommand(dataSourceCommand());
for (const c of instanceCommands()) program.addCommand(c);

await program.parseAsync(process.argv);
