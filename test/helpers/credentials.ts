// Credentials for end-to-end tests: the admin token of a cluster (read from the kubeconfig the manager or
// `stratum up` wrote, as a user would), and a cluster secret for data-plane processes a test starts on its own
// (a stand-alone `stratum bim` or data source gets it through STRATUM_CLUSTER_SECRET_FILE, as from a node agent).

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AUTH_FILE, CLUSTER_SECRET_ENV, clusterAuthHeaders, ensureAuthFile, issueToken, KUBECONFIG_FILE, newSecret, readKubeconfig, writeNodeCredentials } from '../../src/auth/index.js';

/** One cluster secret per test process, in a private temp file. */
export const TEST_CLUSTER_SECRET = newSecret();
const secretDir = mkdtempSync(join(tmpdir(), 'stratum-test-secret-'));
export const TEST_CLUSTER_SECRET_FILE = join(secretDir, 'cluster-secret');
writeFileSync(TEST_CLUSTER_SECRET_FILE, `${TEST_CLUSTER_SECRET}\n`, { mode: 0o600 });
// Gone with the test process: a secret left in /tmp would outlive every cluster it was for.
process.on('exit', () => rmSync(secretDir, { recursive: true, force: true }));

/** Environment for a data-plane process started by a test. */
export const DATA_PLANE_ENV = { [CLUSTER_SECRET_ENV]: TEST_CLUSTER_SECRET_FILE };

/** Headers a test sends to a data-plane process it started (the cluster credential). */
export function dataPlaneAuth(): Record<string, string> {
  return clusterAuthHeaders(TEST_CLUSTER_SECRET);
}

/** The admin token in `<dir>/kubeconfig` (a `stratum up` directory or a manager's data directory). */
export function adminToken(dir: string): string {
  return readKubeconfig(join(dir, KUBECONFIG_FILE)).token;
}

export function bearerHeaders(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

// The admin token of each running test cluster, by its API URL: the helpers that take only a URL (api, kubectl,
// stratum) present it, as a user with the cluster's kubeconfig would.
const tokens = new Map<string, string>();
const kubeconfigs = new Map<string, string>();

/** Remembers the admin credentials of the cluster at `url`, from `<dir>/kubeconfig`. */
export function rememberCluster(url: string, dir: string): void {
  tokens.set(new URL(url).origin, adminToken(dir));
  kubeconfigs.set(new URL(url).origin, join(dir, KUBECONFIG_FILE));
}

/** The kubeconfig of the cluster at `url` (https with the cluster CA: kubectl sends tokens over TLS only). */
export function kubeconfigFor(url: string): string | undefined {
  try {
    return kubeconfigs.get(new URL(url).origin);
  } catch {
    return undefined;
  }
}

export function tokenFor(url: string): string | undefined {
  try {
    return tokens.get(new URL(url).origin);
  } catch {
    return undefined;
  }
}

/** `Authorization` for the cluster at `url` (none when no token is known for it). */
export function authFor(url: string): Record<string, string> {
  const t = tokenFor(url);
  return t ? bearerHeaders(t) : {};
}

/**
 * Credentials for a node agent a test starts next to a cluster (`stratum token create --role node` does the same):
 * a node token in `<managerDir>/auth.json` and the cluster secret, written to `<file>`.
 */
export function nodeCredentialsFile(managerDir: string, node: string, file: string): string {
  const authPath = join(managerDir, AUTH_FILE);
  const token = issueToken(authPath, { name: node, role: 'node', node });
  writeNodeCredentials(file, { token, clusterSecret: ensureAuthFile(authPath).clusterSecret });
  return file;
}
