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

/**
 * The token to log in with: STRATUM_TOKEN, else the user token of the cluster's kubeconfig (when the cluster
 * writes one into its data dir), else any string (a cluster without authentication ignores it).
 */
export function apiToken(dataDir: string): string {
  if (process.env['STRATUM_TOKEN']) return process.env['STRATUM_TOKEN'];
  const kubeconfig = join(dataDir, 'kubeconfig');
  if (existsSync(kubeconfig)) {
    const cfg = parse(readFileSync(kubeconfig, 'utf8')) as { users?: { user?: { token?: string } }[] };
    const token = cfg.users?.find((u) => u.user?.token)?.user?.token;
    if (token) return token;
  }
  return 'ui-test-token';
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
