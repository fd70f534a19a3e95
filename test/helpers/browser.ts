// Test helpers for the web UI: Debian's Chromium driven by playwright-core (never a downloaded browser), a fresh
// profile per run, the API token the tests log in with, and axe-core injected into the page.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { parse } from 'yaml';
import { tempDir } from './processes.js';

export const CHROMIUM = '/usr/bin/chromium';
export const chromiumSkip: string | false = existsSync(CHROMIUM) ? false : `needs chromium (${CHROMIUM}; Debian package chromium)`;

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Closes the browser (its processes end with it) and removes the profile. */
  close(): Promise<void>;
}

export async function launchBrowser(opts: { downloads?: boolean } = {}): Promise<Browser> {
  const profile = tempDir('chromium');
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile.path, {
      executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1400, height: 900 }, acceptDownloads: opts.downloads ?? true,
      // The UI skips its transitions for reduced motion: axe then never measures a dialog's contrast mid-fade (which
      // reported the half-faded text of the create dialog as too pale on a loaded machine).
      reducedMotion: 'reduce',
    });
  } catch (err) {
    profile.remove();
    throw err;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    close: async () => {
      await context.close().catch(() => undefined);
      profile.remove();
    },
  };
}

/** The token to log in with: STRATUM_TOKEN, else the admin token of the kubeconfig the cluster wrote into `dataDir`. */
export function apiToken(dataDir: string): string {
  if (process.env['STRATUM_TOKEN']) return process.env['STRATUM_TOKEN'];
  const kubeconfig = kubeconfigOf(dataDir);
  const cfg = parse(readFileSync(kubeconfig, 'utf8')) as { users?: { user?: { token?: string } }[] };
  const token = cfg.users?.find((u) => u.user?.token)?.user?.token;
  if (!token) throw new Error(`${kubeconfig} names no user token`);
  return token;
}

/** The kubeconfig `stratum up` or a first `stratum manager` writes into its data dir (docs/security.md). */
export function kubeconfigOf(dataDir: string): string {
  const path = join(dataDir, 'kubeconfig');
  if (!existsSync(path)) throw new Error(`no kubeconfig in ${dataDir}: the cluster did not write its admin credential`);
  return path;
}

/**
 * Watches every request the page makes to the manager at `base`: API requests without `Authorization: Bearer`,
 * and answers 401 or 403 (a refused token, Host or Origin). `watches` counts watch requests, to show they were seen.
 */
export function auditApiRequests(page: Page, base: string): { missing: string[]; refused: string[]; watches: number } {
  const audit = { missing: [] as string[], refused: [] as string[], watches: 0 };
  const isApi = (u: string) => u.startsWith(base) && /^\/(api|apis|v1)(\/|$|\?)/.test(u.slice(base.length));
  page.on('request', (r) => {
    if (!isApi(r.url())) return;
    if (/[?&]watch=(true|1)/.test(r.url())) audit.watches++;
    if (!/^Bearer \S+$/.test(r.headers()['authorization'] ?? '')) audit.missing.push(`${r.method()} ${r.url()}`);
  });
  page.on('response', (r) => {
    if (isApi(r.url()) && (r.status() === 401 || r.status() === 403)) audit.refused.push(`${r.request().method()} ${r.url()}: ${r.status()}`);
  });
  return audit;
}

export async function login(page: Page, url: string, token: string): Promise<void> {
  await page.goto(url);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('navigation', { name: 'main' }).waitFor();
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: unknown[] }[];
}

/** axe-core's violations of impact serious or critical on the current page. */
export async function seriousViolations(page: Page): Promise<AxeViolation[]> {
  const require = createRequire(import.meta.url);
  await page.addScriptTag({ path: require.resolve('axe-core/axe.min.js') });
  const violations = await page.evaluate(async () => {
    // Runs in the page (these tests compile without the DOM library, hence globalThis).
    const g = globalThis as unknown as { axe: { run(ctx: unknown, opts: object): Promise<{ violations: AxeViolation[] }> }; document: unknown };
    return (await g.axe.run(g.document, { resultTypes: ['violations'] })).violations;
  });
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) }));
}
