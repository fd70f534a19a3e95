// What a data source accepts and shows: names and uuids that are safe path components, download URLs (http and
// https only), and the redaction applied to parameters before they leave the process (API, logs). Pure functions.

import { DataSourceError } from './errors.js';

/** A name or uuid becomes part of a directory name under `<disk>/tmp/`, so nothing that can climb out of it. */
export function validatePathPart(what: string, value: string): string {
  if (value === '') throw new DataSourceError('InvalidArgument', `${what} must not be empty`);
  if (value.includes('/') || value.includes('\\') || value.includes('\0') || value.includes('..')) {
    throw new DataSourceError('InvalidArgument', `${what} ${JSON.stringify(value)} must not contain "/", "\\", ".." or NUL`);
  }
  return value;
}

/** Parses and checks a download URL: absolute, http or https, with a host. */
export function validateSourceUrl(raw: string | undefined): URL {
  if (raw === undefined || raw.trim() === '') {
    throw new DataSourceError('InvalidArgument', 'a download data source needs the parameter "url"');
  }
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch (err) {
    throw new DataSourceError('InvalidArgument', `the download URL ${JSON.stringify(redactUrl(raw))} is not a valid absolute URL`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new DataSourceError(
      'InvalidArgument',
      `the download URL must be http or https, not "${url.protocol.replace(/:$/, '')}" (${redactUrl(raw)})`,
    );
  }
  if (url.hostname === '') throw new DataSourceError('InvalidArgument', `the download URL ${redactUrl(raw)} has no host`);
  return url;
}

// Query keys that commonly carry credentials in pre-signed URLs (S3, GCS, Azure SAS, generic tokens).
const SECRET_QUERY = /^(x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|sig|signature|token|access_token|api_key|apikey|key|password|secret)$/i;
const SECRET_PARAM = /(secret|token|password|passwd|credential|auth|apikey|api-key|private)/i;
export const REDACTED = '[redacted]';

/** The URL with its password and credential-looking query values replaced; unparsable input is returned whole only
 *  when it cannot carry userinfo. */
export function redactUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    return raw.includes('@') ? REDACTED : raw;
  }
  if (url.password !== '') url.password = 'xxxxx';
  for (const key of [...url.searchParams.keys()]) {
    if (SECRET_QUERY.test(key)) url.searchParams.set(key, REDACTED);
  }
  return url.href;
}

/** Parameters as the API shows them: secret-looking keys redacted, URLs without passwords or signatures. */
export function redactParameters(params: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) {
    if (SECRET_PARAM.test(k)) out[k] = REDACTED;
    else if (k === 'url' || /^[a-z][a-z0-9+.-]*:\/\//i.test(v)) out[k] = redactUrl(v);
    else out[k] = v;
  }
  return out;
}

/** Parses `k=v` strings (the `--parameters` flag) into a map; the first `=` splits, later ones belong to the value. */
export function parseParameters(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new DataSourceError('InvalidArgument', `--parameters expects key=value, got ${JSON.stringify(pair.slice(0, 40))}`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** A lower-case SHA-512 hex digest, or undefined for an empty value. */
export function normaliseChecksum(what: string, raw: string | undefined): string | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const v = raw.trim().toLowerCase();
  if (!/^[0-9a-f]{128}$/.test(v)) {
    throw new DataSourceError('InvalidArgument', `${what} must be a SHA-512 digest of 128 hex digits, got ${v.length} characters`);
  }
  return v;
}
