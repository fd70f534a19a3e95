// `stratum images`: the image catalog a node agent would use (built-in entries plus an optional file), as a
// table: name, component, version, API version range, and where each entry came from.

import type { Command } from 'commander';
import { fail } from '../output.js';

export function addImagesCommand(program: Command): void {
  program
    .command('images')
    .description('list the image catalog of node agents (built-in plus --images FILE)')
    .option('--images <file>', 'image catalog (YAML or JSON) added to the built-in one')
    .option('-o, --output <format>', 'wide (adds command and env), json or yaml')
    .action(async (o: { images?: string; output?: string }) => {
      try {
        const { formatCatalog, loadCatalog } = await import('../../agent/index.js');
        const catalog = loadCatalog(o.images);
        if (o.output === 'json') process.stdout.write(`${JSON.stringify(catalog.list(), null, 2)}\n`);
        else if (o.output === 'yaml') process.stdout.write((await import('yaml')).stringify({ images: catalog.list() }));
        else if (o.output === undefined || o.output === 'wide') process.stdout.write(formatCatalog(catalog, { wide: o.output === 'wide' }));
        else fail(`--output must be wide, json or yaml, not "${o.output}"`);
      } catch (err) {
        fail(err instanceof Error ? err.message : String(err));
      }
    });
}
