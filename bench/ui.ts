// Web UI benchmark: bundle size (raw and gzip, as the manager serves it from dist/ui; what the first page loads
// apart from chunks loaded on demand) and first render in Debian's Chromium against an in-process API server
// holding N backing images, behind the manager's API guard with a real token (the page logs in as a user would). First render is the time from navigation
// start to the UI's `stratum:first-render` mark (the shell drawn); first data is the time until the backing
// images table shows all N rows (list fetched, watch started). The baseline is the same browser rendering a
// blank page from the same server, side by side, so the ratio is what the UI costs over a page that does nothing.

import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { KubeObject } from '../src/api/meta.js';
import { registerLonghornV1 } from '../src/apiserver/longhorn-v1/index.js';
import { startApiServer } from '../src/apiserver/server.js';
import { DEFAULT_UI_DIR, registerUiRoutes } from '../src/apiserver/ui/index.js';
import { issueToken, TokenTable } from '../src/auth/index.js';
import { policyContext } from '../src/manager/credentials.js';
import { openStore } from '../src/store/index.js';
import { chromiumSkip, launchBrowser } from '../test/helpers/browser.js';

const NS = 'longhorn-system';
const KiB = 1024;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

interface Sizes { js: number; jsGzip: number; css: number; cssGzip: number }

/** Sizes of the files index.html loads (`first`) and of the chunks loaded on demand (`lazy`). */
function bundle(dir: string): { first: Sizes; lazy: Sizes } {
  const index = readFileSync(join(dir, 'index.html'), 'utf8');
  const first = { js: 0, jsGzip: 0, css: 0, cssGzip: 0 };
  const lazy = { js: 0, jsGzip: 0, css: 0, cssGzip: 0 };
  for (const f of readdirSync(join(dir, 'assets'))) {
    const buf = readFileSync(join(dir, 'assets', f));
    const gz = gzipSync(buf, { level: 9 }).length;
    const to = index.includes(`assets/${f}`) ? first : lazy;
    if (f.endsWith('.js')) {
      to.js += buf.length;
      to.jsGzip += gz;
    } else if (f.endsWith('.css')) {
      to.css += buf.length;
      to.cssGzip += gz;
    }
  }
  return { first, lazy };
}

const kib = (n: number) => (n / KiB).toFixed(0);

export async function run(args: string[]): Promise<void> {
  const images = Number(args[0] ?? 50);
  const rounds = Number(args[1] ?? 5);
  const uiDir = resolve(DEFAULT_UI_DIR);
  if (!existsSync(join(uiDir, 'index.html'))) throw new Error(`no built UI in ${uiDir}: run npm run build`);
  const { first: b, lazy } = bundle(uiDir);
  process.stdout.write(`figure: ui bundle loaded by the first page: js ${kib(b.js)} KiB (gzip ${kib(b.jsGzip)} KiB), css ${kib(b.css)} KiB (gzip ${kib(b.cssGzip)} KiB); on demand: js ${kib(lazy.js)} KiB (gzip ${kib(lazy.jsGzip)} KiB)\n`);
  if (chromiumSkip) {
    process.stdout.write(`skipped first render: ${chromiumSkip}\n`);
    return;
  }

  const dir = mkdtempSync(join(tmpdir(), 'stratum-bench-ui-'));
  const { store, close } = await openStore({ path: join(dir, 'state.db') });
  for (let i = 0; i < images; i++) {
    await store.create({
      apiVersion: 'longhorn.io/v1beta2', kind: 'BackingImage', metadata: { name: `bench-${String(i).padStart(3, '0')}`, namespace: NS },
      spec: { sourceType: 'download', sourceParameters: { url: `https://example.com/image-${i}.qcow2` }, minNumberOfCopies: 1 },
    } as KubeObject);
  }
  const authFile = join(dir, 'auth.json');
  const token = issueToken(authFile, { name: 'admin', role: 'admin' });
  const api = await startApiServer({
    store, port: 0,
    guard: { tokens: new TokenTable(authFile), policy: policyContext(store), origins: { hostNames: [], corsOrigins: [] } },
    extend: async (app) => {
      await registerLonghornV1(app, store);
      registerUiRoutes(app, { dir: uiDir });
      // Under /ui/, which the guard leaves open as it does the UI's own files.
      app.get('/ui/bench-blank', async (_req, reply) => reply.type('text/html').send(
        '<!doctype html><html lang="en"><title>blank</title><p>blank</p><script>requestAnimationFrame(() => performance.mark("stratum:first-render"))</script></html>'));
    },
  });
  const ours: number[] = [];
  const data: number[] = [];
  const base: number[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      // A fresh profile each round: nothing cached, as on a first visit.
      const browser = await launchBrowser();
      try {
        const page = browser.page;
        // Logged in already (the token in sessionStorage, as after the login screen), so first render is the app's.
        await page.addInitScript((t) => (globalThis as unknown as { sessionStorage: { setItem(k: string, v: string): void } }).sessionStorage.setItem('stratum.token', t), token);
        // Functions run in the page; this file compiles without the DOM library, hence the casts.
        type Perf = { performance: { now(): number; getEntriesByName(n: string): { startTime: number }[] } };
        const mark = () => page.waitForFunction(() => (globalThis as unknown as Perf).performance.getEntriesByName('stratum:first-render').length > 0)
          .then(() => page.evaluate(() => (globalThis as unknown as Perf).performance.getEntriesByName('stratum:first-render')[0]?.startTime ?? NaN));
        await page.goto(`${api.url}/ui/bench-blank`);
        base.push(await mark());
        await page.goto(`${api.url}/`);
        ours.push(await mark());
        await page.locator('table[aria-label="backing images"] tbody tr').nth(images - 1).waitFor();
        data.push(await page.evaluate(() => (globalThis as unknown as Perf).performance.now()));
      } finally {
        await browser.close();
      }
    }
  } finally {
    await api.close();
    await close();
    rmSync(dir, { recursive: true, force: true });
  }
  const o = median(ours);
  const bl = median(base);
  process.stdout.write(`figure: ui first render (median of ${rounds}): ours ${o.toFixed(0)} ms, baseline (blank page) ${bl.toFixed(0)} ms, ratio ${(o / bl).toFixed(1)}\n`);
  process.stdout.write(`figure: ui first data (${images} backing images listed, median of ${rounds}): ours ${median(data).toFixed(0)} ms, baseline (blank page) ${bl.toFixed(0)} ms, ratio ${(median(data) / bl).toFixed(1)}\n`);
}

