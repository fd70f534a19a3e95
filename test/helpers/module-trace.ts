// A module loader hook for tests that check what a command loads: it appends the URL of every module the process
// loads (ESM, and CommonJS packages entered from ESM, such as better-sqlite3) to the file named by
// STRATUM_MODULE_TRACE. Registered with `--import` by moduleTraceArgs(); the hook runs on the loader thread.

import { appendFileSync } from 'node:fs';
import type { LoadHook } from 'node:module';

export const load: LoadHook = (url, context, next) => {
  const file = process.env['STRATUM_MODULE_TRACE'];
  if (file) appendFileSync(file, `${url}\n`);
  return next(url, context);
};

/** Node flags that register this hook before the entry module loads. */
export function moduleTraceArgs(): string[] {
  const code = `import { register } from 'node:module'; register(${JSON.stringify(import.meta.url)});`;
  return ['--import', `data:text/javascript,${encodeURIComponent(code)}`];
}
