// A cluster for backing-image lifecycle tests, built from separately controllable processes: one `stratum manager`
// and N `stratum node` agents (each with one disk), plus a static HTTP server for image downloads and helpers to
// read backing images through the Longhorn /v1 API.

import { authFor, nodeCredentialsFile } from './credentials.js';
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { killRecordedPods, Proc } from './cluster.js';
import { CLI, ManagerProcess, tempDir, waitFor } from './processes.js';

export interface V1File {
  state: string;
  progress: number;
  message: string;
  lastStateTransitionTime?: string;
}

export interface V1Image {
  name: string;
  uuid: string;
  currentChecksum: string;
  size: number;
  minNumberOfCopies: number;
  diskFileStatusMap: Record<string, V1File>;
}

/** Serves files of one directory, with Range support (what a real object store does). */
export async function staticServer(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = join(dir, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, ''));
    if (!path.startsWith(dir) || !existsSync(path)) {
      res.writeHead(404).end('not found');
      return;
    }
    const size = statSync(path).size;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Number(range[2]) : size - 1;
      res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}`, 'accept-ranges': 'bytes' });
      createReadStream(path, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes' });
    createReadStream(path).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

export class LifecycleCluster {
  readonly dir = tempDir('lifecycle');
  readonly manager = new ManagerProcess(join(this.dir.path, 'manager'));
  readonly agents = new Map<string, Proc>();
  readonly nodes: string[];

  constructor(nodes = 3) {
    this.nodes = Array.from({ length: nodes }, (_, i) => `node-${i + 1}`);
  }

  get url(): string {
    return this.manager.url;
  }

  diskDir(node: string): string {
    return join(this.dir.path, node, 'disk-1');
  }

  async start(settings: Record<string, string>): Promise<void> {
    await this.manager.start();
    for (const [name, value] of Object.entries(settings)) await this.setSetting(name, value);
    for (const n of this.nodes) await this.startAgent(n);
    await waitFor('every node Ready', async () => {
      const nodes = await this.k8s<{ items: { status?: { conditions?: { type: string; status: string }[] } }[] }>('/apis/longhorn.io/v1beta2/namespaces/longhorn-system/nodes');
      return nodes.items.length === this.nodes.length && nodes.items.every((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    }, 30_000);
  }

  async startAgent(node: string): Promise<void> {
    await mkdir(this.diskDir(node), { recursive: true });
    const agentDir = join(this.dir.path, node, 'agent');
    await mkdir(agentDir, { recursive: true });
    const creds = existsSync(join(agentDir, 'node-credentials.json')) ? join(agentDir, 'node-credentials.json') : nodeCredentialsFile(this.manager.dataDir, node, join(agentDir, 'node-credentials.json'));
    const agent = new Proc([process.execPath, CLI, 'node', '--name', node, '--manager', this.manager.urls, '--disk', this.diskDir(node), '--credentials', creds,
      '--data-dir', agentDir, '--port-dir', join(this.dir.path, 'ports'), '--restart-backoff-ms', '500', '--heartbeat-interval-ms', '1000']);
    this.agents.set(node, agent);
  }

  async stopAgent(node: string): Promise<void> {
    await this.agents.get(node)?.stop('SIGTERM');
  }

  async setSetting(name: string, value: string): Promise<void> {
    const res = await fetch(`${this.url}/v1/settings/${name}`, { method: 'PUT', headers: { ...authFor(this.url), 'content-type': 'application/json' }, body: JSON.stringify({ value }) });
    if (!res.ok) throw new Error(`setting ${name}: ${await res.text()}`);
  }

  async k8s<T>(path: string): Promise<T> {
    const res = await fetch(`${this.url}${path}`, { headers: authFor(this.url) });
    if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  async v1(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: { ...authFor(this.url), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  async image(name: string): Promise<V1Image> {
    const r = await this.v1('GET', `/v1/backingimages/${name}`);
    if (r.status !== 200) throw new Error(`image ${name}: ${JSON.stringify(r.json)}`);
    return r.json as unknown as V1Image;
  }

  /** Waits until the image's copies satisfy `pred`; the message shows the last states seen. */
  async waitCopies(name: string, what: string, pred: (files: Record<string, V1File>) => boolean, timeoutMs = 60_000): Promise<V1Image> {
    let last: V1Image | undefined;
    try {
      return await waitFor(what, async () => {
        last = await this.image(name);
        return pred(last.diskFileStatusMap) ? last : undefined;
      }, timeoutMs);
    } catch (err) {
      throw new Error(`${(err as Error).message}; last copies of ${name}: ${JSON.stringify(last?.diskFileStatusMap)}`);
    }
  }

  /** Disk UUID → node, from the Node resources. */
  async diskNodes(): Promise<Map<string, string>> {
    const nodes = await this.k8s<{ items: { metadata: { name: string }; status?: { diskStatus?: Record<string, { diskUUID?: string }> } }[] }>('/apis/longhorn.io/v1beta2/namespaces/longhorn-system/nodes');
    const out = new Map<string, string>();
    for (const n of nodes.items) for (const d of Object.values(n.status?.diskStatus ?? {})) if (d.diskUUID) out.set(d.diskUUID, n.metadata.name);
    return out;
  }

  /** Directories of this image (any uuid) under a node's disk: backing-images/ and tmp/. */
  imageDirs(node: string, name: string): string[] {
    const out: string[] = [];
    for (const sub of ['backing-images', 'tmp']) {
      const d = join(this.diskDir(node), sub);
      if (!existsSync(d)) continue;
      for (const e of readdirSync(d)) if (e.startsWith(`${name}-`)) out.push(join(d, e));
    }
    return out;
  }

  /** Stops agents with SIGUSR2 (which stops their pods too), the manager, then kills any pod process left. */
  async stop(): Promise<void> {
    try {
      for (const a of this.agents.values()) await a.stop('SIGUSR2', 30_000);
      await this.manager.stop();
    } finally {
      killRecordedPods(this.dir.path);
      this.dir.remove();
    }
  }
}

export const allReady = (n: number) => (files: Record<string, V1File>) =>
  Object.values(files).filter((f) => f.state === 'ready').length === n && Object.keys(files).length === n;
