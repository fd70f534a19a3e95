// The manager's TLS material: a cluster CA and a server certificate it signs, generated once with the openssl
// command (EC P-256: instant, unlike RSA in JavaScript) under `<manager data dir>/tls/`:
//
//   ca.crt ca.key             the cluster CA (10 years); clients trust ca.crt (kubeconfig certificate-authority-data)
//   server.crt server.key     the API server's certificate, for 127.0.0.1, ::1, localhost, this machine's addresses
//   server.names              and the advertised names; re-issued when that list changes
//
// Rotation: delete server.* (new server certificate at the next start) or the whole folder (new CA: kubeconfigs
// and node credentials must then be re-issued, see docs/security.md).

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { AuthError } from './errors.js';

export const TLS_DIR = 'tls';

export interface TlsMaterial {
  caPem: string;
  certPem: string;
  keyPem: string;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new AuthError('InvalidCredentialsFile', `cannot create the TLS certificates with openssl (is it installed?): ${e.stderr?.toString().trim() || e.message}`, { cause: err });
  }
}

/** The names and addresses the server certificate covers: loopback, this machine's addresses, `extra`. */
export function serverNames(extra: string[] = []): string[] {
  const ips = Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address.replace(/%.*$/, '')));
  return [...new Set(['localhost', '127.0.0.1', '::1', ...ips, ...extra.map((e) => e.toLowerCase())])].sort();
}

/** Loads (or creates) the CA and a server certificate for `names` under `<dataDir>/tls/`. */
export function ensureTls(dataDir: string, names: string[]): TlsMaterial {
  const dir = join(dataDir, TLS_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const p = (f: string) => join(dir, f);
  if (!existsSync(p('ca.crt')) || !existsSync(p('ca.key'))) {
    openssl(['req', '-x509', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '3650',
      '-subj', '/CN=stratum cluster CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
    rmSync(p('server.crt'), { force: true });
  }
  const wanted = names.join('\n');
  const have = existsSync(p('server.names')) ? readFileSync(p('server.names'), 'utf8') : undefined;
  if (have !== wanted || !existsSync(p('server.crt')) || !existsSync(p('server.key'))) {
    const san = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
    writeFileSync(p('server.ext'), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`);
    openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=stratum manager'], dir);
    openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '825', '-extfile', 'server.ext'], dir);
    writeFileSync(p('server.names'), wanted);
  }
  return { caPem: readFileSync(p('ca.crt'), 'utf8'), certPem: readFileSync(p('server.crt'), 'utf8'), keyPem: readFileSync(p('server.key'), 'utf8') };
}
