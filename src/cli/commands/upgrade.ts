// `stratum upgrade --images FILE [--wait]` and `stratum version`.
//
// upgrade sends a release (src/release/release.ts) to the manager, which validates it against the running cluster
// (a refusal names the entry; nothing changes) and restarts on it. With --wait it follows the roll on stderr, one
// line per change of what waits for what, and prints a summary when nothing waits any more.
// version prints the manager's release and, per node, what each data-plane component runs.

import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { fail } from '../output.js';
import { parseDuration } from './volume-wait.js';
import type { ReleaseView } from '../../apiserver/longhorn-v1/upgrade.js';
import type { UpgradeSnapshot } from './upgrade-progress.js';

export function addUpgradeCommands(program: Command): void {
  const server = () => (program.opts<{ server?: string }>().server ?? 'http://127.0.0.1:9500').replace(/\/+$/, '');
  const action = <A extends unknown[]>(fn: (...args: A) => Promise<void>) => async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      fail(err instanceof Error ? err.message : String(err));
    }
  };

  program
    .command('upgrade')
    .description('upgrade the cluster to a release (default images, versions, API ranges); refused before anything changes if it cannot apply')
    .requiredOption('--images <file>', 'the release file (an image catalog with release, manager.apis and defaults)')
    .option('--wait', 'follow the roll on stderr until nothing waits, then print a summary', false)
    .option('--dry-run', 'validate the release against the cluster only', false)
    .option('--timeout <duration>', 'how long --wait waits', '30m')
    .action(action(async (o: { images: string; wait: boolean; dryRun: boolean; timeout: string }) => {
      const { request } = await import('../api.js');
      let text: string;
      try {
        text = readFileSync(o.images, 'utf8');
      } catch (err) {
        throw new Error(`cannot read the release file ${o.images}: ${(err as Error).message}`);
      }
      const started = Date.now();
      const before = o.wait ? await (await import('./upgrade-progress.js')).snapshot(server()) : undefined;
      const res = await request('POST', `${server()}/v1/upgrade`, { body: { release: text, name: basename(o.images), dir: dirname(resolve(o.images)), dryRun: o.dryRun } });
      const body = res.body as { release: { version: string }; previous: { version: string } };
      if (o.dryRun) {
        process.stdout.write(`release ${body.release.version} can be applied (running ${body.previous.version}); nothing was changed\n`);
        return;
      }
      process.stderr.write(`upgrade: release ${body.release.version} accepted (was ${body.previous.version}); the manager restarts on it\n`);
      if (!o.wait) {
        process.stdout.write(`upgrading to release ${body.release.version}: \`stratum version\` shows what each node runs\n`);
        return;
      }
      const { follow, summary } = await import('./upgrade-progress.js');
      const after = await follow(server(), body.release.version, {
        report: (line) => process.stderr.write(`upgrade: ${line}\n`),
        signal: AbortSignal.timeout(parseDuration('--timeout', o.timeout)),
      });
      process.stdout.write(summary(before as UpgradeSnapshot, after, Date.now() - started));
    }));

  program
    .command('version')
    .description("the manager's release and, per node, what each data-plane component runs")
    .option('-o, --output <format>', 'json')
    .action(action(async (o: { output?: string }) => {
      const { snapshot, versionText } = await import('./upgrade-progress.js');
      const snap = await snapshot(server());
      if (o.output === 'json') process.stdout.write(`${JSON.stringify(snap, null, 2)}\n`);
      else if (o.output === undefined) process.stdout.write(versionText(snap));
      else fail(`--output must be json, not "${o.output}"`);
    }));
}

export type { ReleaseView };
