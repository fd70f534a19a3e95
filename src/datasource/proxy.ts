// Proxy support for downloads from the usual environment variables, without a dependency: `http_proxy` for http
// URLs, `https_proxy` for https URLs (upper-case names as a fallback), `no_proxy` to bypass. http goes to the proxy
// as an absolute-form request; https is tunnelled with CONNECT and TLS runs end to end, so the proxy sees neither
// the path nor the headers. Only http:// proxies are supported (as curl's default); the choice is a pure function.

import { request as httpRequest } from 'node:http';
import type { Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { DataSourceError } from './errors.js';

export type ProxyEnv = Readonly<Record<string, string | undefined>>;

function envVar(env: ProxyEnv, name: string): string | undefined {
  const v = env[name] ?? env[name.toUpperCase()];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function defaultPort(url: URL): number {
  return url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
}

/** Whether `no_proxy` (comma/space separated hosts, `.domain` suffixes, `host:port`, or `*`) exempts `url`. */
export function bypassesProxy(url: URL, noProxy: string | undefined): boolean {
  if (noProxy === undefined) return false;
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = defaultPort(url);
  for (const raw of noProxy.split(/[\s,]+/)) {
    let entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return true;
    let entryPort: string | undefined;
    const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry) ?? /^([^:]+):(\d+)$/.exec(entry);
    if (m) {
      entry = m[1] ?? '';
      entryPort = m[2];
    }
    if (entryPort !== undefined && Number(entryPort) !== port) continue;
    entry = entry.replace(/^\*?\./, '');
    if (host === entry || host.endsWith(`.${entry}`)) return true;
  }
  return false;
}

/** The proxy to use for `url`, or undefined for a direct connection. */
export function proxyFor(url: URL, env: ProxyEnv): URL | undefined {
  const raw = envVar(env, url.protocol === 'https:' ? 'https_proxy' : 'http_proxy');
  if (raw === undefined || bypassesProxy(url, envVar(env, 'no_proxy'))) return undefined;
  let proxy: URL;
  try {
    proxy = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch (err) {
    throw new DataSourceError('InvalidArgument', `the ${url.protocol === 'https:' ? 'https' : 'http'}_proxy setting is not a valid URL`, { cause: err });
  }
  if (proxy.protocol !== 'http:') {
    throw new DataSourceError('InvalidArgument', `only http:// proxies are supported, the proxy setting uses ${proxy.protocol}`);
  }
  return proxy;
}

/** `Proxy-Authorization` for a proxy URL with userinfo. */
export function proxyAuthorization(proxy: URL): string | undefined {
  if (proxy.username === '') return undefined;
  const creds = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return `Basic ${Buffer.from(creds).toString('base64')}`;
}

/** Opens a CONNECT tunnel through `proxy` to `target` and starts TLS over it (the callback form Node's
 *  `createConnection` option accepts). */
export function tunnel(proxy: URL, target: URL, signal: AbortSignal, cb: (err: Error | null, socket?: TLSSocket) => void): void {
  const authority = `${target.hostname}:${defaultPort(target)}`;
  const headers: Record<string, string> = { host: authority };
  const auth = proxyAuthorization(proxy);
  if (auth) headers['proxy-authorization'] = auth;
  const req = httpRequest({ host: proxy.hostname, port: defaultPort(proxy), method: 'CONNECT', path: authority, headers, signal });
  req.once('connect', (res, socket: Socket) => {
    if (res.statusCode !== 200) {
      socket.destroy();
      cb(new DataSourceError('SourceUnreachable', `the proxy ${proxy.host} refused to connect to ${authority} (${res.statusCode ?? '?'})`));
      return;
    }
    cb(null, tlsConnect({ socket, servername: target.hostname.replace(/^\[|\]$/g, '') }));
  });
  req.once('error', (err) => cb(err));
  req.end();
}
