// Validation of backing-image download URLs: http or https with a host, and — unless the setting
// `allow-private-download-urls` is on — not a loopback, link-local, private or unspecified address, so that a
// backing image cannot be used to make the cluster fetch from its own internal network.
// Host names are checked as written (`localhost`, `*.localhost`, literal IPs in every form, see
// src/util/address-policy.ts); the data source checks the address it actually connects to, after DNS and after
// every redirect.

import { isIP } from 'node:net';
import { addressProblem } from './address-policy.js';

export const ALLOW_PRIVATE_SETTING = 'allow-private-download-urls';

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
  else if (isIP(host) !== 0) kind = addressProblem(host);
  if (!kind) return undefined;
  return `parameters.url "${raw}" points at ${kind} (${host}); set the setting ${ALLOW_PRIVATE_SETTING} to true to allow it`;
}
