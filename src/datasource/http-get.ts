// One GET of a download, redirects included, over node:http/node:https (not fetch: the downloader needs the socket
// stream for stall detection and backpressure, and the environment proxy support below, which Node 20's fetch
// lacks). Redirects are followed up to a bound and a loop names the URL that came back. Extra headers from the
// header file go only to the origin the user named: a redirect to another host (a CDN, a signed bucket URL) must
// not receive an `Authorization` meant for the first one.

import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
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
  signal: AbortSignal;
}

/** GETs `url`, following redirects; resolves with the first non-redirect response (its body unread). */
export async function getFollowingRedirects(url: URL, opts: GetOptions): Promise<{ res: IncomingMessage; url: URL }> {
  const chain: string[] = [url.href];
  let current = url;
  for (;;) {
    const headers: OutgoingHttpHeaders = { 'user-agent': USER_AGENT, 'accept-encoding': 'identity', ...opts.extra };
    if (current.origin === url.origin) for (const [k, v] of opts.headers) headers[k.toLowerCase()] = v;
    const res = await requestOnce(current, headers, opts.env, opts.signal);
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

function requestOnce(url: URL, headers: OutgoingHttpHeaders, env: ProxyEnv, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const proxy = proxyFor(url, env);
    const https = url.protocol === 'https:';
    let req;
    if (proxy === undefined) {
      req = https ? httpsRequest(url, { method: 'GET', headers, signal, agent: httpsAgent }) : httpRequest(url, { method: 'GET', headers, signal, agent: httpAgent });
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
