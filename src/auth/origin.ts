// Host and Origin checks against DNS rebinding and cross-site requests. A browser page on another site can make a
// browser send requests to the manager, and with DNS rebinding even read the answers; what it cannot forge is the
// Host header (the page's own name) or the Origin header. So:
//   - Host must be an IP literal, `localhost`, or a name the manager is configured with. IP literals are safe:
//     a rebinding page's Host is its own DNS name.
//   - Origin, when sent, must be the same origin as Host (the UI the manager serves) or a configured CORS origin.

import { isIP } from 'node:net';

export interface OriginPolicy {
  /** Extra DNS names the server answers for (its advertised names), lower case, without port. */
  hostNames: string[];
  /** Origins (`https://ui.example:8443`) allowed to make cross-origin calls; empty: CORS off. */
  corsOrigins: string[];
}

/** `host[:port]` → host (brackets of an IPv6 literal removed), lower case; undefined when malformed. */
export function hostOf(hostHeader: string): string | undefined {
  const h = hostHeader.trim().toLowerCase();
  const v6 = /^\[([0-9a-f:.]+)\](?::\d{1,5})?$/.exec(h);
  if (v6?.[1]) return isIP(v6[1]) === 6 ? v6[1] : undefined;
  const m = /^([a-z0-9.-]+)(?::\d{1,5})?$/.exec(h);
  return m?.[1];
}

/** Why a request with this Host header is refused, or undefined. */
export function hostProblem(hostHeader: string | undefined, p: OriginPolicy): string | undefined {
  if (hostHeader === undefined || hostHeader === '') return 'the request has no Host header';
  const host = hostOf(hostHeader);
  if (host === undefined) return `malformed Host header ${JSON.stringify(hostHeader)}`;
  if (isIP(host) !== 0 || host === 'localhost' || p.hostNames.includes(host)) return undefined;
  return `this server does not answer for host "${host}" (a DNS-rebinding page?); add it with --advertise-host if it is one of the manager's names`;
}

/** Why a request with this Origin is refused, or undefined (no Origin: not a browser's cross-origin request). */
export function originProblem(origin: string | undefined, hostHeader: string | undefined, p: OriginPolicy): string | undefined {
  if (origin === undefined) return undefined;
  if (p.corsOrigins.includes(origin)) return undefined;
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return `cross-origin request from ${JSON.stringify(origin)} refused`;
  }
  if ((u.protocol === 'http:' || u.protocol === 'https:') && hostHeader !== undefined && u.host === hostHeader.trim().toLowerCase()) return undefined;
  return `cross-origin request from ${origin} refused (CORS is off; configure --cors-origin to allow it)`;
}
