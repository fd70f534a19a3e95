// The credentials of a `stratum up` cluster, prepared before its processes start:
//
//   DIR/manager/auth.json                       cluster secret and token hashes (the manager's; see src/auth/tokens.ts)
//   DIR/kubeconfig                              the admin token and the API URL: `kubectl --kubeconfig`, `stratum`
//   DIR/node-<i>/agent/node-credentials.json    node-<i>'s token (role node) and the cluster secret
//
// A second run reuses what is still valid (a token that auth.json no longer knows is re-issued), so a resumed
// cluster keeps its kubeconfig.

import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  AUTH_FILE,
  ensureAuthFile,
  ensureTls,
  issueToken,
  serverNames,
  KUBECONFIG_FILE,
  NODE_CREDENTIALS_FILE,
  readKubeconfig,
  readNodeCredentials,
  TokenTable,
  writeKubeconfig,
  writeNodeCredentials,
} from '../../auth/index.js';

export interface UpCredentials {
  kubeconfig: string;
  /** Node name → its credentials file. */
  nodeFiles: Map<string, string>;
}

export function prepareUpCredentials(dir: string, managerDir: string, url: string, nodes: { name: string; agentDir: string }[]): UpCredentials {
  mkdirSync(managerDir, { recursive: true });
  const authPath = join(managerDir, AUTH_FILE);
  const { clusterSecret } = ensureAuthFile(authPath);
  // The manager serves HTTPS on its port too (kubectl sends tokens over TLS only); its CA goes into the kubeconfig.
  const { caPem } = ensureTls(managerDir, serverNames());
  const table = new TokenTable(authPath, { recheckMs: 0 });
  const kubeconfig = join(dir, KUBECONFIG_FILE);
  let admin: string | undefined;
  if (existsSync(kubeconfig)) {
    try {
      const k = readKubeconfig(kubeconfig);
      if (table.authenticate(k.token)?.role === 'admin') admin = k.token;
    } catch {
      // unreadable: a new one is written below
    }
  }
  writeKubeconfig(kubeconfig, { server: url.replace(/^http:/, 'https:'), token: admin ?? issueToken(authPath, { name: 'admin', role: 'admin' }), caPem });
  const nodeFiles = new Map<string, string>();
  for (const n of nodes) {
    const file = join(n.agentDir, NODE_CREDENTIALS_FILE);
    let ok = false;
    if (existsSync(file)) {
      try {
        const c = readNodeCredentials(file);
        const id = table.authenticate(c.token);
        ok = id?.role === 'node' && id.node === n.name && c.clusterSecret === clusterSecret;
      } catch {
        ok = false;
      }
    }
    if (!ok) {
      mkdirSync(dirname(file), { recursive: true });
      writeNodeCredentials(file, { server: url, token: issueToken(authPath, { name: n.name, role: 'node', node: n.name }), clusterSecret, caPem });
    }
    nodeFiles.set(n.name, file);
  }
  return { kubeconfig, nodeFiles };
}
