// End-to-end: the web UI when the manager goes away and comes back (a real `stratum manager`, killed with
// SIGKILL and restarted on the same port and data): a banner says the connection is lost, the watches reconnect
// by themselves, and a change made while the page kept open shows without a reload. A refused token sends the page
// back to its login screen, and choosing the kubeconfig the manager wrote logs in again.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { apiToken, auditApiRequests, chromiumSkip, kubeconfigOf, launchBrowser, login, type Browser } from '../helpers/browser.js';
import { ManagerProcess, tempDir, waitFor } from '../helpers/processes.js';

const dir = tempDir('ui-connection');
const manager = new ManagerProcess(join(dir.path, 'manager'));
let browser: Browser | undefined;
let page: Page;
let token = '';

async function setSetting(name: string, value: string): Promise<void> {
  const res = await fetch(`${manager.url}/v1/settings/${name}`, {
    method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ value }),
  });
  assert.equal(res.status, 200, await res.text());
}

before(async () => {
  if (chromiumSkip) return;
  await manager.start();
  token = apiToken(manager.dataDir);
  browser = await launchBrowser();
  page = browser.page;
});

after(async () => {
  await browser?.close();
  await manager.stop();
  dir.remove();
});

test('a lost manager shows a banner; the page reconnects by itself and shows what changed meanwhile', { skip: chromiumSkip }, async () => {
  await login(page, manager.url, token);
  await page.goto(`${manager.url}/#/settings`);
  const row = page.getByTestId('setting-default-replica-count');
  await row.waitFor();
  await page.evaluate(() => ((globalThis as unknown as { __stratumMark: number }).__stratumMark = 1));
  const banner = page.getByTestId('connection-lost');
  assert.equal(await banner.count(), 0);

  await manager.kill9();
  await banner.waitFor({ timeout: 10_000 });
  assert.match(await banner.innerText(), /Connection to the manager lost/);

  await manager.start();
  await setSetting('default-replica-count', '2');
  await banner.waitFor({ state: 'detached', timeout: 15_000 });
  await waitFor('the new value on the page', async () => (await row.getByRole('textbox').inputValue()) === '2', 10_000);
  assert.ok(await page.evaluate(() => (globalThis as unknown as { __stratumMark?: number }).__stratumMark === 1), 'no reload happened');
});

test('a refused token returns to the login screen; the kubeconfig file logs in again', { skip: chromiumSkip }, async () => {
  const probe = await fetch(`${manager.url}/apis/longhorn.io/v1beta2/namespaces/longhorn-system/nodes`, { headers: { authorization: 'Bearer not-a-token' } });
  assert.equal(probe.status, 401, 'the manager refuses a wrong token');
  // The wrong token is put in place on a page of the same origin where the app does not run (its icon), so the app
  // meets it only when it starts: a running app would be refused and return to the login before a reload, and the
  // reload would start a fresh login screen that cannot know why.
  await page.goto(`${manager.url}/ui/favicon.svg`);
  await page.evaluate(() => (globalThis as unknown as { sessionStorage: { setItem(k: string, v: string): void } }).sessionStorage.setItem('stratum.token', 'not-a-token'));
  await page.goto(`${manager.url}/#/volumes`);
  await page.getByLabel('API token').waitFor({ timeout: 10_000 });
  await page.getByText('the token was refused').waitFor();

  const audit = auditApiRequests(page, manager.url);
  await page.locator('input[type="file"]').setInputFiles(kubeconfigOf(manager.dataDir));
  await page.getByRole('navigation', { name: 'main' }).waitFor({ timeout: 10_000 });
  await page.goto(`${manager.url}/#/settings`);
  await page.getByTestId('setting-default-replica-count').waitFor();
  await waitFor('a watch started', async () => audit.watches > 0, 10_000);
  assert.deepEqual(audit.missing, [], 'every API request carries the token');
  assert.deepEqual(audit.refused, [], 'nothing refused after logging in with the kubeconfig');
});
