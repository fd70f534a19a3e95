// `stratum volume create|attach|detach|expand|delete|get|snapshot …`: volumes through Longhorn's /v1 API (its attach/detach actions
// say what is meant better than raw spec edits, and its volume JSON already joins the engine's endpoint and the
// replicas). `attach --wait` prints the frontend endpoint — a device path or an NBD URI — alone on stdout, so
//   dev=$(stratum volume attach v1 --node node-1 --wait)
// works in scripts; progress and errors go to stderr.

import type { Command } from 'commander';
import { stringify } from 'yaml';
import { isNotFound, StoreError } from '../../store/errors.js';
import type { RawResponse } from '../api.js';
import { formatTable } from '../../util/table.js';
import { fail } from '../output.js';
import { humanBytes } from '../../util/bytes.js';
import { addVolumeSnapshotCommand } from './volume-snapshot.js';
import { endpointOf, parseDuration, waitForVolume, type V1Volume } from './volume-wait.js';

const FRONTENDS = ['blockdev', 'nbd', 'none'];

/** The API client loads on first use: declaring these commands is part of every `stratum` start (see main.ts). */
async function request(method: string, url: string, opts: { body?: unknown } = {}): Promise<RawResponse> {
  return (await import('../api.js')).request(method, url, opts);
}

interface CreateFlags {
  size: string;
  replicas?: string;
  backingImage?: string;
  frontend?: string;
  nodeSelector?: string;
  diskSelector?: string;
  dataLocality?: string;
  dataSource?: string;
}

const volumeUrl = (server: string, name: string) => `${server}/v1/volumes/${encodeURIComponent(name)}`;

function list(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  return v.split(',').map((t) => t.trim()).filter((t) => t !== '');
}

export function createBody(name: string, o: CreateFlags): Record<string, unknown> {
  const body: Record<string, unknown> = { name, size: o.size };
  if (o.replicas !== undefined) {
    if (!/^\d+$/.test(o.replicas)) throw new StoreError('BadRequest', `--replicas must be a whole number, not "${o.replicas}"`);
    body['numberOfReplicas'] = Number(o.replicas);
  }
  if (o.backingImage) body['backingImage'] = o.backingImage;
  if (o.frontend !== undefined) {
    if (!FRONTENDS.includes(o.frontend)) throw new StoreError('BadRequest', `--frontend must be one of ${FRONTENDS.join(', ')}, not "${o.frontend}"`);
    // Longhorn has no "none" frontend: a volume without one is disableFrontend with an empty frontend.
    if (o.frontend === 'none') Object.assign(body, { frontend: '', disableFrontend: true });
    else body['frontend'] = o.frontend;
  }
  const nodeSelector = list(o.nodeSelector);
  if (nodeSelector) body['nodeSelector'] = nodeSelector;
  const diskSelector = list(o.diskSelector);
  if (diskSelector) body['diskSelector'] = diskSelector;
  if (o.dataLocality) body['dataLocality'] = o.dataLocality;
  if (o.dataSource) body['dataSource'] = o.dataSource;
  return body;
}

async function getVolume(server: string, name: string): Promise<V1Volume | undefined> {
  try {
    return (await request('GET', volumeUrl(server, name))).body as V1Volume;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** 2147483648 → `2Gi`; sizes that are not a whole number of MiB fall back to `humanBytes`. */
export function sizeText(bytes: string): string {
  if (!/^\d+$/.test(bytes)) return bytes;
  const n = BigInt(bytes);
  for (const [unit, mult] of [['Ti', 1n << 40n], ['Gi', 1n << 30n], ['Mi', 1n << 20n]] as const) {
    if (n >= mult && n % mult === 0n) return `${n / mult}${unit}`;
  }
  return humanBytes(Number(n));
}

export function volumeTable(vols: V1Volume[]): string {
  const rows = vols.map((v) => [
    v.name,
    v.state,
    v.robustness,
    sizeText(v.size),
    v.currentNodeID || v.nodeID,
    v.backingImage,
    endpointOf(v, v.currentNodeID || undefined),
  ]);
  return `${formatTable(['NAME', 'STATE', 'ROBUSTNESS', 'SIZE', 'NODE', 'BACKINGIMAGE', 'ENDPOINT'], rows)}\n`;
}

/** A volume is detached once no node holds it; `''` is a volume no controller has looked at yet. */
function isDetached(v: V1Volume): boolean {
  return !v.nodeID && !v.currentNodeID && (v.state === 'detached' || v.state === '');
}

export function addVolumeCommand(program: Command): void {
  const server = () => (program.opts<{ server?: string }>().server ?? 'http://127.0.0.1:9500').replace(/\/+$/, '');
  const report = (line: string) => process.stderr.write(`${line}\n`);
  const action = <A extends unknown[]>(fn: (...args: A) => Promise<void>) => async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      fail(err instanceof Error ? err.message : String(err));
    }
  };
  const vol = program.command('volume').alias('vol').description('volumes: create, attach, detach, expand, delete, list');

  vol.command('create')
    .description('create a volume, optionally from a backing image')
    .argument('<name>')
    .requiredOption('--size <size>', 'bytes or a quantity such as 2Gi (at least the backing image\'s virtual size)')
    .option('--replicas <n>', 'number of replicas (default: the default-replica-count setting)')
    .option('--backing-image <name>', 'backing image the volume is created from')
    .option('--frontend <frontend>', `${FRONTENDS.join(', ')} (default blockdev)`)
    .option('--node-selector <tags>', 'comma-separated node tags replicas must be placed on')
    .option('--disk-selector <tags>', 'comma-separated disk tags replicas must be placed on')
    .option('--data-locality <mode>', 'disabled, best-effort or strict-local')
    .option('--data-source <uri>', "a clone: vol://<volume> (its content now) or snap://<volume>/<snapshot>, on the source's backing image")
    .action(action(async (name: string, o: CreateFlags) => {
      await request('POST', `${server()}/v1/volumes`, { body: createBody(name, o) });
      process.stdout.write(`volume.longhorn.io/${name} created\n`);
    }));

  vol.command('attach')
    .description('attach a volume to a node; with --wait, print its endpoint (device path or NBD URI) once usable')
    .argument('<name>')
    .requiredOption('--node <node>', 'node to attach to')
    .option('--wait', 'wait until attached with its frontend up, then print the endpoint', false)
    .option('--timeout <duration>', 'how long --wait waits', '120s')
    .action(action(async (name: string, o: { node: string; wait: boolean; timeout: string }) => {
      const timeoutMs = parseDuration('--timeout', o.timeout);
      await request('POST', `${volumeUrl(server(), name)}?action=attach`, { body: { hostId: o.node, attachedBy: 'stratum-cli' } });
      if (!o.wait) {
        process.stdout.write(`volume.longhorn.io/${name} attaching to ${o.node}\n`);
        return;
      }
      const v = await waitForVolume(name, () => getVolume(server(), name), (v) => {
        if (v.nodeID !== o.node) throw new StoreError('Conflict', `volume "${name}" is no longer asked to attach to ${o.node} (now: ${v.nodeID || 'detach'})`);
        const noFrontend = v.disableFrontend || v.frontend === '';
        return v.state === 'attached' && (noFrontend || endpointOf(v, o.node) !== '');
      }, { what: `attached on ${o.node} with its frontend up`, timeoutMs, report });
      const endpoint = endpointOf(v, o.node);
      if (endpoint) process.stdout.write(`${endpoint}\n`);
      else report(`volume ${name}: attached on ${o.node} without a frontend`);
    }));

  vol.command('detach')
    .description('detach a volume from its node')
    .argument('<name>')
    .option('--wait', 'wait until detached', false)
    .option('--timeout <duration>', 'how long --wait waits', '120s')
    .action(action(async (name: string, o: { wait: boolean; timeout: string }) => {
      const timeoutMs = parseDuration('--timeout', o.timeout);
      await request('POST', `${volumeUrl(server(), name)}?action=detach`, { body: {} });
      if (o.wait) await waitForVolume(name, () => getVolume(server(), name), isDetached, { what: 'detached', timeoutMs, report });
      process.stdout.write(`volume.longhorn.io/${name} ${o.wait ? 'detached' : 'detaching'}\n`);
    }));

  vol.command('expand')
    .description('grow a detached volume (offline: its replicas grow when it is next attached); never shrinks')
    .argument('<name>')
    .requiredOption('--size <size>', 'the new size: bytes or a quantity such as 4Gi (rounded up to 2 MiB)')
    .action(action(async (name: string, o: { size: string }) => {
      await request('POST', `${volumeUrl(server(), name)}?action=expand`, { body: { size: o.size } });
      process.stdout.write(`volume.longhorn.io/${name} expanded\n`);
    }));

  vol.command('upgrade')
    .description("move a volume to another engine image (Longhorn's engineUpgrade); a detached volume is moved offline")
    .argument('<name>')
    .requiredOption('--image <image>', 'the engine image (its EngineImage must be deployed)')
    .option('--wait', 'wait until the volume runs it', false)
    .option('--timeout <duration>', 'how long --wait waits', '120s')
    .action(action(async (name: string, o: { image: string; wait: boolean; timeout: string }) => {
      const timeoutMs = parseDuration('--timeout', o.timeout);
      await request('POST', `${volumeUrl(server(), name)}?action=engineUpgrade`, { body: { image: o.image } });
      if (o.wait) {
        const runs = (v: V1Volume) => (v as V1Volume & { currentImage?: string }).currentImage === o.image;
        await waitForVolume(name, () => getVolume(server(), name), runs, { what: `running engine image ${o.image}`, timeoutMs, report });
      }
      process.stdout.write(`volume.longhorn.io/${name} ${o.wait ? 'upgraded to' : 'upgrading to'} ${o.image}\n`);
    }));

  vol.command('delete')
    .description('delete a volume (its replicas\' data goes with it)')
    .argument('<name>')
    .option('--wait', 'wait until the volume is gone', false)
    .option('--timeout <duration>', 'how long --wait waits', '120s')
    .action(action(async (name: string, o: { wait: boolean; timeout: string }) => {
      const timeoutMs = parseDuration('--timeout', o.timeout);
      await request('DELETE', volumeUrl(server(), name));
      if (o.wait) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const v = await getVolume(server(), name);
          if (!v) break;
          if (Date.now() > deadline) {
            throw new StoreError('Internal', `timed out after ${timeoutMs / 1000}s waiting for volume "${name}" to be deleted (state ${v.state || 'unknown'}; finalizers still pending, see stratum describe lhv ${name})`);
          }
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      process.stdout.write(`volume.longhorn.io/${name} deleted\n`);
    }));

  addVolumeSnapshotCommand(vol, { server, action });

  vol.command('get')
    .alias('list')
    .description('list volumes, or show one')
    .argument('[name]')
    .option('-o, --output <format>', 'json or yaml (the /v1 resource), or name')
    .action(action(async (name: string | undefined, o: { output?: string }) => {
      if (o.output !== undefined && o.output !== 'json' && o.output !== 'yaml' && o.output !== 'name') {
        throw new StoreError('BadRequest', `unknown output format "${o.output}": use json, yaml or name`);
      }
      const vols = name
        ? [(await request('GET', volumeUrl(server(), name))).body as V1Volume]
        : ((await request('GET', `${server()}/v1/volumes`)).body as { data: V1Volume[] }).data;
      if (o.output === 'json') process.stdout.write(`${JSON.stringify(name ? vols[0] : vols, null, 2)}\n`);
      else if (o.output === 'yaml') process.stdout.write(stringify(name ? vols[0] : vols));
      else if (o.output === 'name') process.stdout.write(vols.map((v) => `volume.longhorn.io/${v.name}\n`).join(''));
      else if (vols.length === 0) process.stderr.write('No volumes found.\n');
      else process.stdout.write(volumeTable(vols));
    }));
}
