// Validation of backing-image download URLs: http or https with a host, and — unless the setting
// `allow-private-download-urls` is on — not a loopback, link-local, private or unspecified address, so that a
// backing image cannot be used to make the cluster fetch from its own internal network.
// Host names are checked as written (`localhost`, `*.localhost`, literal IPs); the data source re-checks the
// address it actually connects to.

import { isIP } from 'node:net';

export const ALLOW_PRIVATE_SETTING = 'allow-private-download-urls';

function ipv4Private(ip: string): string | undefined {
  const [a = 0, b = 0] = ip.split('.').map(Number);
  if (a === 127) return 'a loopback address';
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return 'a private address';
  if (a === 169 && b === 254) return 'a link-local address';
  if (a === 100 && b >= 64 && b <= 127) return 'a shared (carrier-grade NAT) address';
  if (a === 0) return 'an unspecified address';
  return undefined;
}

function ipv6Private(ip: string): string | undefined {
  const v = ip.toLowerCase();
  if (v === '::1') return 'a loopback address';
  if (v === '::') return 'an unspecified address';
  if (/^fe[89ab]/.test(v)) return 'a link-local address';
  if (/^f[cd]/.test(v)) return 'a private (unique local) address';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(v);
  if (mapped?.[1]) return ipv4Private(mapped[1]);
  // The URL parser normalises ::ffff:127.0.0.1 to ::ffff:7f00:1.
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v);
  if (hex?.[1] && hex[2]) {
    const hi = Number.parseInt(hex[1], 16);
    const lo = Number.parseInt(hex[2], 16);
    return ipv4Private(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
  }
  return undefined;
}

/** Returns why `raw` is not an acceptable download URL, or undefined when it is. */
export function downloadUrlProblem(raw: unknown, allowPrivate: boolean): string | undefined {
  if (typeof raw !== 'string' || raw.trim() === '') return 'parameters.url is required for a download backing image';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return `parameters.url "${raw}" is not a valid URL`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return `parameters.url "${raw}" uses scheme "${url.protocol.replace(/:$/, '')}": only http and https are supported`;
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (host === '') return `parameters.url "${raw}" has no host`;
  if (allowPrivate) return undefined;
  let kind: string | undefined;
  if (host === 'localhost' || host.endsWith('.localhost')) kind = 'a loopback address';
  else if (isIP(host) === 4) kind = ipv4Private(host);
  else if (isIP(host) === 6) kind = ipv6Private(host);
  if (!kind) return undefined;
  return `parameters.url "${raw}" points at ${kind} (${host}); set the setting ${ALLOW_PRIVATE_SETTING} to true to allow it`;
}
