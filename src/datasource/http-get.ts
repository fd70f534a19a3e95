// One GET of a download, redirects included, over node:http/node:https (not fetch: the downloader needs the socket
// stream for stall detection and backpressure, and the environment proxy support below, which Node 20's fetch
// lacks). Redirects are followed up to a bound and a loop names the URL that came back. Extra headers from the
// header file go only to the origin the user named: a redirect to another host (a CDN, a signed bucket URL) must
// not receive an `Authorization` meant for the first one.

import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { addressProblem } from '../util/address-policy.js';
import { DataSourceError } from './errors.js';
import { proxyAuthorization, proxyFor, tunnel, type ProxyEnv } from './proxy.js';
import type { RequestHeaders } from './request-headers.js';
import { redactUrl } from './source-url.js';

export const USER_AGENT = 'stratum-data-source/0.1';
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
// No keep-alive: a download makes a handful of requests, and Node 20's global agent would keep an idle socket (and
// so the stopping process) alive for another 5 s.
const httpAgent = new HttpAgent({ keepAlive: false });
const httpsAgent = new HttpsAgent({ keepAlive: false });

export interface GetOptions {
  /** Header-file headers: sent to the original origin only. */
  headers: RequestHeaders;
  /** Range headers of this attempt, sent to every hop. */
  extra: Readonly<Record<string, string>>;
  env: ProxyEnv;
  maxRedirects: number;
  /** Connect to loopback/private/link-local/… addresses too (allow-private-download-urls). */
  allowPrivate?: boolean;
  signal: AbortSignal;
}

/**
 * A `lookup` for node:http that resolves as usual and then refuses any address the download policy refuses (see
 * src/util/address-policy.ts): the check is on the address connected to, so a DNS name that resolves to
 * 127.0.0.1, or a redirect to one, is caught too.
 */
export function checkedLookup(host: string): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const list = addresses as LookupAddress[];
      for (const a of list) {
        const why = addressProblem(a.address);
        if (why) return callback(refused(host, a.address, why), '', 0);
      }
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
      const first = list[0];
      if (!first) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '', 0);
      return callback(null, first.address, first.family);
    });
  };
}

function refused(host: string, address: string, why: string): DataSourceError {
  return new DataSourceError('SourceRefused', `${host} is ${address}, ${why}: downloads from the cluster's own network are refused; set the setting allow-private-download-urls to true to allow them`);
}

/** GETs `url`, following redirects; resolves with the first non-redirect response (its body unread). */
export async function getFollowingRedirects(url: URL, opts: GetOptions): Promise<{ res: IncomingMessage; url: URL }> {
  const chain: string[] = [url.href];
  let current = url;
  for (;;) {
    const headers: OutgoingHttpHeaders = { 'user-agent': USER_AGENT, 'accept-encoding': 'identity', ...opts.extra };
    if (current.origin === url.origin) for (const [k, v] of opts.headers) headers[k.toLowerCase()] = v;
    const res = await requestOnce(current, headers, opts.env, opts.allowPrivate === true, opts.signal);
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (!REDIRECTS.has(status) || location === undefined) return { res, url: current };
    res.resume();
    let next: URL;
    try {
      next = new URL(location, current);
    } catch (err) {
      throw new DataSourceError('BadRedirect', `${redactUrl(current.href)} redirected to an invalid location`, { cause: err });
    }
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new DataSourceError('BadRedirect', `${redactUrl(current.href)} redirected to a ${next.protocol.replace(/:$/, '')} URL; only http and https are followed`);
    }
    if (chain.includes(next.href)) {
      const path = [...chain.slice(chain.indexOf(next.href)), next.href].map(redactUrl).join(' → ');
      throw new DataSourceError('BadRedirect', `redirect loop at ${redactUrl(next.href)}: ${path}`);
    }
    chain.push(next.href);
    if (chain.length - 1 > opts.maxRedirects) {
      throw new DataSourceError('BadRedirect', `more than ${opts.maxRedirects} redirects starting at ${redactUrl(url.href)} (the last to ${redactUrl(next.href)})`);
    }
    current = next;
  }
}

function requestOnce(url: URL, headers: OutgoingHttpHeaders, env: ProxyEnv, allowPrivate: boolean, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const proxy = proxyFor(url, env);
    const https = url.protocol === 'https:';
    let req;
    if (proxy === undefined) {
      // Direct: the address connected to is checked (a literal here, a name in the lookup). Through a proxy the
      // proxy connects; the operator chose it, and it is the proxy's policy that applies.
      const host = url.hostname.replace(/^\[|\]$/g, '');
      const literal = isIP(host) !== 0 ? addressProblem(host) : undefined;
      if (!allowPrivate && literal) {
        reject(refused(url.host, host, literal));
        return;
      }
      const lookup = allowPrivate ? {} : { lookup: checkedLookup(url.host) };
      req = https ? httpsRequest(url, { method: 'GET', headers, signal, agent: httpsAgent, ...lookup }) : httpRequest(url, { method: 'GET', headers, signal, agent: httpAgent, ...lookup });
    } else if (!https) {
      // Absolute-form request to the proxy; the target's credentials (userinfo) travel as Authorization.
      const h: OutgoingHttpHeaders = { ...headers, host: url.host };
      const auth = proxyAuthorization(proxy);
      if (auth) h['proxy-authorization'] = auth;
      const userinfo = url.username === '' ? undefined : `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
      req = httpRequest({
        host: proxy.hostname,
        port: proxy.port === '' ? 80 : Number(proxy.port),
        path: url.href.replace(/^(https?:\/\/)[^@/]*@/, '$1'),
        method: 'GET',
        headers: h,
        signal,
        agent: httpAgent,
        ...(userinfo === undefined ? {} : { auth: userinfo }),
      });
    } else {
      req = httpsRequest(url, {
        method: 'GET',
        headers,
        signal,
        createConnection: (_opts, oncreate) => {
          tunnel(proxy, url, signal, (err, socket) => oncreate(err, socket as NonNullable<typeof socket>));
          return undefined;
        },
      });
    }
    req.once('response', resolve);
    req.once('error', reject);
    req.end();
  });
}
