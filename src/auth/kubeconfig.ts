// Client credential files: the kubeconfig `stratum up` writes (`DIR/kubeconfig`, used by kubectl --kubeconfig and
// by `stratum` by default) and a node agent's credentials (`node-credentials.json`: its token and the cluster
// secret). Both are written 0600. Only the fields Stratum writes are read back: one cluster, one user, a token.

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { AuthError } from './errors.js';

export const KUBECONFIG_FILE = 'kubeconfig';
export const NODE_CREDENTIALS_FILE = 'node-credentials.json';

export interface ClientCredential {
  server: string;
  token: string;
  /** PEM of the CA that signed the server's certificate, when it serves HTTPS. */
  caPem?: string;
}

function writePrivate(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}

export function writeKubeconfig(path: string, c: ClientCredential, user = 'admin'): void {
  const cluster: Record<string, string> = { server: c.server };
  if (c.caPem) cluster['certificate-authority-data'] = Buffer.from(c.caPem).toString('base64');
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'stratum', cluster }],
    users: [{ name: user, user: { token: c.token } }],
    // No namespace: kubectl's own default (`default`) applies, as with any cluster's kubeconfig, so manifests that
    // leave the namespace out (the seed's Service) land where their authors meant. Longhorn's objects name
    // longhorn-system themselves.
    contexts: [{ name: 'stratum', context: { cluster: 'stratum', user } }],
    'current-context': 'stratum',
  };
  writePrivate(path, stringify(doc));
}

/** The server, token (and CA) of a kubeconfig's current context. */
export function readKubeconfig(path: string): ClientCredential {
  const bad = (why: string) => new AuthError('InvalidCredentialsFile', `kubeconfig ${path}: ${why}`);
  let doc: unknown;
  try {
    doc = parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new AuthError('InvalidCredentialsFile', `cannot read kubeconfig ${path}: ${(err as Error).message}`, { cause: err });
  }
  const d = doc as {
    'current-context'?: string;
    contexts?: { name: string; context?: { cluster?: string; user?: string } }[];
    clusters?: { name: string; cluster?: { server?: string; 'certificate-authority-data'?: string } }[];
    users?: { name: string; user?: { token?: string } }[];
  } | null;
  if (!d || typeof d !== 'object') throw bad('not a YAML map');
  const ctx = (d.contexts ?? []).find((c) => c.name === d['current-context']) ?? d.contexts?.[0];
  const cluster = (d.clusters ?? []).find((c) => c.name === ctx?.context?.cluster) ?? d.clusters?.[0];
  const user = (d.users ?? []).find((u) => u.name === ctx?.context?.user) ?? d.users?.[0];
  const server = cluster?.cluster?.server;
  const token = user?.user?.token;
  if (typeof server !== 'string') throw bad('no cluster server');
  if (typeof token !== 'string') throw bad('no user token');
  const ca = cluster?.cluster?.['certificate-authority-data'];
  return { server, token, ...(typeof ca === 'string' ? { caPem: Buffer.from(ca, 'base64').toString() } : {}) };
}

export interface NodeCredentials {
  /** The manager's URL as the agent should reach it (optional: `--manager` wins). */
  server?: string;
  /** The node's API token (role node, for this node only). */
  token: string;
  /** The cluster secret, handed on to the node's pods. */
  clusterSecret: string;
  /** The cluster CA, for an https:// manager URL. */
  caPem?: string;
}

export function writeNodeCredentials(path: string, c: NodeCredentials): void {
  writePrivate(path, `${JSON.stringify(c, null, 2)}\n`);
}

export function readNodeCredentials(path: string): NodeCredentials {
  let v: Partial<NodeCredentials>;
  try {
    v = JSON.parse(readFileSync(path, 'utf8')) as Partial<NodeCredentials>;
  } catch (err) {
    throw new AuthError('InvalidCredentialsFile', `cannot read node credentials ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof v.token !== 'string' || typeof v.clusterSecret !== 'string' || !/^[0-9a-f]{64,}$/.test(v.clusterSecret)) {
    throw new AuthError('InvalidCredentialsFile', `node credentials ${path} need "token" and "clusterSecret" (64+ hex digits)`);
  }
  return { token: v.token, clusterSecret: v.clusterSecret, ...(typeof v.server === 'string' ? { server: v.server } : {}), ...(typeof v.caPem === 'string' ? { caPem: v.caPem } : {}) };
}

/** Writes a private file holding just the cluster secret (what pods are pointed at). */
export function writeSecretFile(path: string, secret: string): void {
  if (existsSync(path) && readFileSync(path, 'utf8').trim() === secret) return;
  writePrivate(path, `${secret}\n`);
}
