// `stratum logs POD`: a pod's output, as `kubectl logs` gets it: from the API server, which proxies to the node
// agent that runs the pod. `-f` follows until the process ends or Ctrl-C.

import { authHeaders } from '../api.js';
import type { Command } from 'commander';
import { DEFAULT_NAMESPACE } from '../../api/meta.js';
import { fail } from '../output.js';

interface LogFlags {
  namespace: string;
  follow: boolean;
  previous: boolean;
  tail?: string;
  container?: string;
}

export function addLogsCommand(program: Command): void {
  program
    .command('logs')
    .description("print a pod's output (stdout and stderr)")
    .argument('<pod>')
    .option('-n, --namespace <ns>', 'namespace', DEFAULT_NAMESPACE)
    .option('-f, --follow', 'keep printing new output until the process ends', false)
    .option('-p, --previous', 'the output of the previous (ended) instance', false)
    .option('--tail <lines>', 'only the last lines')
    .option('-c, --container <name>', 'container name')
    .action(async (pod: string, o: LogFlags) => {
      const server = (program.opts<{ server?: string }>().server ?? 'http://127.0.0.1:9500').replace(/\/+$/, '');
      try {
        await printLogs(server, pod, o);
      } catch (err) {
        fail(err instanceof Error ? err.message : String(err));
      }
    });
}

async function printLogs(server: string, pod: string, o: LogFlags): Promise<void> {
  if (o.tail !== undefined && !/^\d+$/.test(o.tail)) throw new Error(`--tail must be a number of lines, not "${o.tail}"`);
  const { describeFetchError, errorFromResponse } = await import('../../client/http-store.js');
  const url = new URL(`${server}/api/v1/namespaces/${encodeURIComponent(o.namespace)}/pods/${encodeURIComponent(pod)}/log`);
  if (o.follow) url.searchParams.set('follow', 'true');
  if (o.previous) url.searchParams.set('previous', 'true');
  if (o.tail !== undefined) url.searchParams.set('tailLines', o.tail);
  if (o.container) url.searchParams.set('container', o.container);
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  let res: Response;
  try {
    res = await fetch(url, { signal: ac.signal, headers: authHeaders() });
  } catch (err) {
    throw new Error(`cannot reach the API server (${server}): ${describeFetchError(err)}`);
  }
  if (!res.ok || !res.body) throw await errorFromResponse(res, `logs of ${pod}`);
  try {
    for await (const chunk of res.body) {
      if (!process.stdout.write(chunk as Uint8Array)) await new Promise((r) => process.stdout.once('drain', r));
    }
  } catch (err) {
    if (!ac.signal.aborted) throw err;
  }
}
