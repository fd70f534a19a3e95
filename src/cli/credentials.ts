// Which credential the `stratum` command presents: --token, else the kubeconfig given by --kubeconfig
// ($STRATUM_KUBECONFIG), else `.stratum/kubeconfig` when it exists (what `stratum up` writes). The kubeconfig's
// server is used unless --server ($STRATUM_SERVER) was given.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { KUBECONFIG_FILE, readKubeconfig } from '../auth/index.js';

export const DEFAULT_KUBECONFIG = join('.stratum', KUBECONFIG_FILE);

let token: string | undefined;

/** The bearer token every call of this process sends (from --token or the kubeconfig; see main.ts). */
export function useToken(t: string | undefined): void {
  token = t;
}

/** Headers for the CLI's own fetch calls (uploads, downloads, watches, logs). */
export function authHeaders(): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

export async function clientCredential(o: { kubeconfig?: string | undefined; token?: string | undefined; serverGiven: boolean; given?: string | undefined }): Promise<{ token?: string; server?: string }> {
  const file = o.kubeconfig ?? (existsSync(DEFAULT_KUBECONFIG) ? DEFAULT_KUBECONFIG : undefined);
  if (file === undefined) return o.token ? { token: o.token } : {};
  const k = readKubeconfig(file);
  const server = o.serverGiven ? undefined : k.server;
  // The cluster CA also for https URLs given on the command line (several managers of one cluster share it).
  if (k.caPem && (server ?? (o.serverGiven ? o.given : undefined))?.includes('https:')) await trustCa(k.caPem);
  return { token: o.token ?? k.token, ...(server ? { server } : {}) };
}

/** Every fetch of this process trusts the cluster CA (for https:// manager URLs), besides the system's CAs. */
export async function trustCa(caPem: string): Promise<void> {
  // Loaded only when needed: it costs start-up time of every CLI call otherwise.
  const { Agent, setGlobalDispatcher } = await import('undici');
  setGlobalDispatcher(new Agent({ connect: { ca: [...rootCertificates, caPem] } }));
}
