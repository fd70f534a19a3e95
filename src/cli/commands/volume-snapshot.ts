// `stratum volume snapshot create|ls|rm|revert|purge`: a volume's snapshots through Longhorn's /v1 snapshot actions
// (src/apiserver/longhorn-v1/snapshots.ts). The volume must be attached; revert needs it attached without a frontend.

import type { Command } from 'commander';
import type { EngineSnapshotStatus } from '../../api/engine.js';
import { StoreError } from '../../store/errors.js';
import { formatTable } from '../../util/table.js';
import { humanBytes } from '../../util/bytes.js';

/** A snapshot as the /v1 snapshot actions answer it (its Longhorn fields). */
type V1Snapshot = EngineSnapshotStatus;

export function snapshotTable(snaps: V1Snapshot[]): string {
  const rows = snaps.map((s) => [s.name, s.parent || '-', Object.keys(s.children).join(',') || '-', humanBytes(Number(s.size)), s.removed ? 'yes' : 'no', s.created || '-']);
  return formatTable(['NAME', 'PARENT', 'CHILDREN', 'SIZE', 'REMOVED', 'CREATED'], rows);
}

export function addVolumeSnapshotCommand(vol: Command, ctx: { server: () => string; action: <A extends unknown[]>(fn: (...args: A) => Promise<void>) => (...args: A) => Promise<void> }): void {
  const request = async (volume: string, action: string, body: unknown) =>
    (await import('../api.js')).request('POST', `${ctx.server()}/v1/volumes/${encodeURIComponent(volume)}?action=${action}`, { body });
  const snap = vol.command('snapshot').alias('snap').description("a volume's snapshots: create, ls, rm, revert, purge");

  snap.command('create')
    .description('take a crash-consistent snapshot of an attached volume; prints its name')
    .argument('<volume>')
    .argument('[name]', 'snapshot name (default: generated)')
    .option('--label <key=value...>', 'labels of the snapshot')
    .action(ctx.action(async (volume: string, name: string | undefined, o: { label?: string[] }) => {
      const labels: Record<string, string> = {};
      for (const l of o.label ?? []) {
        const i = l.indexOf('=');
        if (i <= 0) throw new StoreError('BadRequest', `--label must be key=value, not "${l}"`);
        labels[l.slice(0, i)] = l.slice(i + 1);
      }
      const r = (await request(volume, 'snapshotCreate', { ...(name ? { name } : {}), labels })).body as V1Snapshot;
      process.stdout.write(`${r.name}\n`);
    }));

  snap.command('ls')
    .alias('list')
    .description("list a volume's snapshots (volume-head is the live data)")
    .argument('<volume>')
    .option('-o, --output <format>', 'json (the /v1 resources)')
    .action(ctx.action(async (volume: string, o: { output?: string }) => {
      const data = ((await request(volume, 'snapshotList', {})).body as { data: V1Snapshot[] }).data;
      if (o.output === 'json') process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
      else process.stdout.write(snapshotTable(data));
    }));

  snap.command('rm')
    .alias('delete')
    .description('delete a snapshot (one with children is marked removed until a purge merges it)')
    .argument('<volume>')
    .argument('<name>')
    .action(ctx.action(async (volume: string, name: string) => {
      await request(volume, 'snapshotDelete', { name });
      process.stdout.write(`snapshot ${name} of volume ${volume} deleted\n`);
    }));

  snap.command('revert')
    .description('revert a volume attached without a frontend to a snapshot (its later writes are discarded)')
    .argument('<volume>')
    .argument('<name>')
    .action(ctx.action(async (volume: string, name: string) => {
      await request(volume, 'snapshotRevert', { name });
      process.stdout.write(`volume ${volume} reverted to snapshot ${name}\n`);
    }));

  snap.command('purge')
    .description('merge removed snapshots into their child, freeing their space')
    .argument('<volume>')
    .action(ctx.action(async (volume: string) => {
      await request(volume, 'snapshotPurge', {});
      process.stdout.write(`snapshots of volume ${volume} purged\n`);
    }));
}
