// Entry point that runs `stratum bim` from the compiled tree for the tests, through the same commander definition
// the CLI uses (bimCommand), so the tests do not depend on how main.ts wires its subcommands.

import { Command } from 'commander';
import { bimCommand } from '../../src/cli/commands/bim.js';

await new Command('stratum').addCommand(bimCommand()).parseAsync(process.argv);
