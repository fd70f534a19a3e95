// The manager's side of `kubectl logs`: the API server's `podLogs` hook. It finds the pod's node, reads the
// node agent's URL from the Node's `stratum.io/agent-url` annotation and streams the agent's
// `/pods/{ns}/{name}/log` through. Errors come back as StoreErrors, so the API server answers with a Status.

import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Node } from '../api/node.js';
import type { Pod } from '../api/pod.js';
import { describeFetchError } from '../client/http-store.js';
import { AGENT_URL_ANNOTATION, LEASE_NAMESPACE } from '../api/node-contract.js';
import { StoreError, isNotFound, type StoreErrorCode } from '../store/errors.js';
import type { Store } from '../store/types.js';

export interface PodLogRequest {
  container?: string | undefined;
  follow: boolean;
  tailLines?: number | undefined;
  previous: boolean;
  signal: AbortSignal;
}

/** `startApiServer({ podLogs: agentPodLogs(store) })`. */
export function agentPodLogs(store: Store, opts: { connectTimeoutMs?: number; headers?: () => Record<string, string> } = {}) {
  return async (namespace: string, name: string, req: PodLogRequest): Promise<Readable> => {
    const pod = await store.get<Pod>('Pod', namespace, name);
    const nodeName = pod.spec?.nodeName;
    if (!nodeName) throw new StoreError('BadRequest', `pod "${name}" has no logs: it is not assigned to a node (spec.nodeName is empty)`);
    let node: Node;
    try {
      node = await store.get<Node>('Node', LEASE_NAMESPACE, nodeName);
    } catch (err) {
      if (isNotFound(err)) {
        throw new StoreError('NotFound', `logs of pod "${name}" are not available: node ${nodeName} is not registered; is \`stratum node --name ${nodeName}\` running?`);
      }
      throw err;
    }
    const base = node.metadata.annotations?.[AGENT_URL_ANNOTATION];
    if (!base) {
      throw new StoreError('NotFound', `logs of pod "${name}" are not available: node ${nodeName} does not publish its agent URL (annotation ${AGENT_URL_ANNOTATION})`);
    }
    const url = new URL(`${base.replace(/\/+$/, '')}/pods/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/log`);
    if (req.follow) url.searchParams.set('follow', 'true');
    if (req.previous) url.searchParams.set('previous', 'true');
    if (req.tailLines !== undefined) url.searchParams.set('tailLines', String(req.tailLines));
    if (req.container) url.searchParams.set('container', req.container);
    let res: Response;
    try {
      // The timeout bounds getting the response headers only: a followed log may then stream for hours.
      const connect = AbortSignal.timeout(opts.connectTimeoutMs ?? 10_000);
      const ac = new AbortController();
      const onAbort = (): void => ac.abort();
      if (req.signal.aborted) ac.abort();
      req.signal.addEventListener('abort', onAbort, { once: true });
      connect.addEventListener('abort', onAbort, { once: true });
      res = await fetch(url, { signal: ac.signal, headers: opts.headers?.() ?? {} });
      connect.removeEventListener('abort', onAbort);
    } catch (err) {
      throw new StoreError('Internal', `cannot reach the node agent of ${nodeName} at ${base} for the logs of pod "${name}": ` +
        `${describeFetchError(err)}; is \`stratum node --name ${nodeName}\` running?`, { cause: err });
    }
    if (!res.ok || !res.body) {
      const text = await res.text().catch(() => '');
      let message = text;
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {
        // not JSON: keep the text
      }
      const code: StoreErrorCode = res.status === 404 ? 'NotFound' : res.status === 400 ? 'BadRequest' : 'Internal';
      throw new StoreError(code, message || `node agent of ${nodeName} answered HTTP ${res.status}`);
    }
    return Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>);
  };
}
