// Credentials and their checks, for every Stratum server and client:
//   tokens.ts              the manager's auth.json: cluster secret + hashed API tokens (admin, view, node roles)
//   policy.ts              what each role may do on the manager's API
//   origin.ts              Host/Origin checks (DNS rebinding, CSRF) and CORS origins
//   kubeconfig.ts          client files: the kubeconfig `stratum up` writes, a node agent's credentials
//   cluster-credential.ts  the data plane's credential: HTTP hook and headers, TCP handshake proofs, NBD PSKs
//   tls.ts, same-port-tls.ts  the manager's CA and certificate (openssl), HTTPS and HTTP on one port
// See docs/security.md for the threat model.

export * from './errors.js';
export * from './tokens.js';
export * from './policy.js';
export * from './origin.js';
export * from './kubeconfig.js';
export * from './cluster-credential.js';
export * from './tls.js';
export * from './same-port-tls.js';
