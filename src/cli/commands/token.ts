// `stratum token`: API credentials, managed on the manager's machine over its data directory (auth.json). The
// running manager notices within a second; nothing restarts.
//
//   stratum token create NAME --role admin|view [--out kubeconfig]         a kubeconfig (or the bare token)
//   stratum token create NAME --role node --node N --out FILE                a node agent's credentials file
//   stratum token revoke NAME                                                 the token stops working
//   stratum token list
//
// Creating a token under an existing name replaces it: that is how a token is rotated.

import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUTH_FILE, ROLES, ensureAuthFile, issueToken, readAuthFile, revokeToken, TLS_DIR, writeKubeconfig, writeNodeCredentials, type Role } from '../../auth/index.js';
import { formatTable } from '../../util/table.js';
import { fail } from '../output.js';

interface TokenFlags {
  managerDataDir: string;
}

export function addTokenCommand(program: Command): void {
  const token = program.command('token').description("API tokens (admin, view, node): create, rotate, revoke; run where the manager's data directory is");
  const dirOption = ['--manager-data-dir <dir>', "the manager's data directory (holds auth.json)", join('.stratum', 'manager')] as const;

  token
    .command('create <name>')
    .description('issue a token (replacing one of the same name: rotation)')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
    .option('--node <node>', 'for --role node: the node it acts for')
    .option('--out <file>', 'write a kubeconfig (admin, view) or a node credentials file (node) instead of printing the token')
    .option('--url <url>', 'the API URL to put in the file', 'https://127.0.0.1:9500')
    .option(...dirOption)
    .action((name: string, o: TokenFlags & { role: string; node?: string; out?: string; url: string }) => {
      if (!ROLES.includes(o.role as Role)) fail(`--role must be one of ${ROLES.join(', ')}, not "${o.role}"`);
      const role = o.role as Role;
      if (role === 'node' && !o.node) fail('--role node needs --node <node>');
      if (role === 'node' && !o.out) fail('--role node needs --out FILE (the node credentials hold the cluster secret too)');
      const path = join(o.managerDataDir, AUTH_FILE);
      const t = issueToken(path, { name, role, ...(role === 'node' && o.node ? { node: o.node } : {}) });
      const caFile = join(o.managerDataDir, TLS_DIR, 'ca.crt');
      const ca = existsSync(caFile) ? { caPem: readFileSync(caFile, 'utf8') } : {};
      if (role === 'node' && o.out) {
        writeNodeCredentials(o.out, { server: o.url, token: t, clusterSecret: ensureAuthFile(path).clusterSecret, ...ca });
      } else if (o.out) {
        writeKubeconfig(o.out, { server: o.url, token: t, ...ca }, name);
      } else {
        process.stdout.write(`${t}\n`);
        return;
      }
      process.stdout.write(`token "${name}" (role ${role}) written to ${o.out}\n`);
    });

  token
    .command('revoke <name>')
    .description('remove a token')
    .option(...dirOption)
    .action((name: string, o: TokenFlags) => {
      if (!revokeToken(join(o.managerDataDir, AUTH_FILE), name)) fail(`there is no token named "${name}"`);
      process.stdout.write(`token "${name}" revoked\n`);
    });

  token
    .command('list')
    .description('the tokens (names and roles; the tokens themselves are not stored)')
    .option(...dirOption)
    .action((o: TokenFlags) => {
      const f = readAuthFile(join(o.managerDataDir, AUTH_FILE));
      process.stdout.write(`${formatTable(['NAME', 'ROLE', 'NODE', 'CREATED'], f.tokens.map((t) => [t.name, t.role, t.node ?? '', t.created]))}\n`);
    });
}
