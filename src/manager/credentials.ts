// The manager's credentials: `<data dir>/auth.json` (cluster secret, hashed API tokens; see src/auth/tokens.ts),
// created on first start. A manager started on its own (not by `stratum up`) with no admin token issues one and
// writes `<data dir>/kubeconfig` for it, so a fresh `stratum manager` is usable at once and never open.

import { join } from 'node:path';
import { AUTH_FILE, KUBECONFIG_FILE, clusterAuthHeaders, ensureAuthFile, ensureTls, issueToken, serverNames, TokenTable, writeKubeconfig, type PolicyContext, type TlsMaterial } from '../auth/index.js';
import type { Pod } from '../api/pod.js';
import { SETTINGS } from '../api/settings.js';
import { isNotFound } from '../store/errors.js';
import type { Store } from '../store/types.js';

export interface ManagerCredentials {
  tokens: TokenTable;
  tls: TlsMaterial;
  /** Writes `<data dir>/kubeconfig` for the admin token issued at start, if one was (call once the URL is known). */
  writeKubeconfig(url: string): string | undefined;
  dataPlaneHeaders(): Record<string, string>;
}

export function loadManagerCredentials(dataDir: string, advertiseHosts: string[] = []): ManagerCredentials {
  const tls = ensureTls(dataDir, serverNames(advertiseHosts));
  const path = join(dataDir, AUTH_FILE);
  const f = ensureAuthFile(path);
  const kubeconfig = join(dataDir, KUBECONFIG_FILE);
  const adminToken = f.tokens.some((t) => t.role === 'admin') ? undefined : issueToken(path, { name: 'admin', role: 'admin' });
  const tokens = new TokenTable(path);
  return {
    tokens,
    tls,
    writeKubeconfig: (url) => {
      if (adminToken === undefined) return undefined;
      // https: kubectl sends a bearer token over TLS only.
      writeKubeconfig(kubeconfig, { server: url.replace(/^http:/, 'https:'), token: adminToken, caPem: tls.caPem });
      return kubeconfig;
    },
    dataPlaneHeaders: () => clusterAuthHeaders(tokens.clusterSecret),
  };
}

const READ_ONLY = new Set(SETTINGS.filter((s) => s.readOnly).map((s) => s.name));

export function policyContext(store: Store): PolicyContext {
  return {
    podNode: async (namespace, name) => {
      try {
        return (await store.get<Pod>('Pod', namespace, name)).spec?.nodeName;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    volumeNode: async (namespace, name) => {
      try {
        return (await store.get<{ apiVersion: string; kind: string; metadata: object; spec?: { nodeID?: string } }>('Volume', namespace, name)).spec?.nodeID ?? '';
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    isReadOnlySetting: (name) => READ_ONLY.has(name),
  };
}
