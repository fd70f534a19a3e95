// Test doubles for the backing-image-manager controller: a fake manager pod (an HTTP server answering version, the
// file list, the change stream and scrub requests, recording what it was asked), the objects that place it (a Ready
// node, a Running pod whose endpoint is the fake's), and the controller running over a store. Not for production.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BackingImageManager } from '../../api/backing-image-manager.js';
import { bimPodName, LONGHORN_FINALIZER } from '../../api/labels.js';
import type { Node } from '../../api/node.js';
import type { Pod } from '../../api/pod.js';
import { HTTP_PORT_NAME, PORTS_ANNOTATION } from '../../api/pods.js';
import type { FileInfo } from '../../bim/table.js';
import { Registry } from 'prom-client';
import { EventRecorder } from '../../controller-kit/events.js';
import { InformerFactory } from '../../controller-kit/informer-factory.js';
import { silentLogger } from '../../controller-kit/log.js';
import { runControllers, type MemoryStore } from '../../controller-kit/testing.js';
import { backingImageManagerController } from './index.js';

export interface FakeBimPod {
  server: Server;
  url: string;
  /** The files the pod reports (edit to change what the next list says). */
  files: Partial<FileInfo>[];
  /** Requests other than version, list and watch: method, path and JSON body. */
  requests: { method: string; path: string; body: unknown }[];
  close(): Promise<void>;
}

export async function fakeBimPod(files: Partial<FileInfo>[] = []): Promise<FakeBimPod> {
  const pod: Omit<FakeBimPod, 'server' | 'url' | 'close'> = { files, requests: [] };
  const server = createServer((req, res) => {
    if (req.url === '/v1/version') return void res.end(JSON.stringify({ apiVersion: 1, apiMinVersion: 1 }));
    if (req.url === '/v1/files') return void res.end(JSON.stringify({ files: pod.files }));
    if (req.url === '/v1/watch') {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      const beat = setInterval(() => res.write('{"type":"HEARTBEAT"}\n'), 200);
      res.on('close', () => clearInterval(beat));
      return;
    }
    let text = '';
    req.on('data', (d: Buffer) => (text += d.toString()));
    req.on('end', () => {
      pod.requests.push({ method: req.method ?? '', path: req.url ?? '', body: text ? (JSON.parse(text) as unknown) : undefined });
      res.statusCode = req.method === 'POST' ? 202 : 404;
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = async (): Promise<void> => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  return Object.assign(pod, { server, url, close });
}

const ready = (type: string) => ({ type, status: 'True', reason: '', message: '', lastProbeTime: '', lastTransitionTime: '' });

/** A Ready Longhorn node. */
export async function readyNode(store: MemoryStore, namespace: string, name: string): Promise<void> {
  const { object } = await store.create<Node>({ apiVersion: 'longhorn.io/v1beta2', kind: 'Node', metadata: { name, namespace }, spec: { allowScheduling: true, tags: [], disks: {} } } as Node);
  await store.update({ ...object, status: { conditions: [ready('Ready')] } } as Node, { subresource: 'status' });
}

/** A Running, Ready pod named `name` whose http port is `url`'s. */
export async function runningPod(store: MemoryStore, namespace: string, name: string, node: string, url: string): Promise<void> {
  const port = Number(new URL(url).port);
  const { object } = await store.create<Pod>({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, annotations: { [PORTS_ANNOTATION]: JSON.stringify({ [HTTP_PORT_NAME]: port }) } },
    spec: { nodeName: node, containers: [] },
  } as unknown as Pod);
  await store.update({ ...object, status: { phase: 'Running', podIP: '127.0.0.1', conditions: [ready('Ready')] } } as Pod, { subresource: 'status' });
}

/** A BackingImageManager on `node` (a Ready node, a Running pod) whose fake pod reports `files`; `images` its spec. */
export async function bimOnNode(store: MemoryStore, namespace: string, name: string, node: string, files: Partial<FileInfo>[], images: Record<string, string>): Promise<FakeBimPod> {
  const pod = await fakeBimPod(files);
  await readyNode(store, namespace, node);
  await runningPod(store, namespace, bimPodName(name), node, pod.url);
  await store.create<BackingImageManager>({
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'BackingImageManager',
    metadata: { name, namespace, finalizers: [LONGHORN_FINALIZER] },
    spec: { image: 'stratum-bim:v1', nodeID: node, diskUUID: `disk-${node}`, diskPath: '/d', backingImages: images },
  } as BackingImageManager);
  return pod;
}

/** Runs the controller over `store` (its informers and events too); resolves with what stops it all. */
export async function runBimController(store: MemoryStore, namespace: string): Promise<() => Promise<void>> {
  const informers = new InformerFactory({ store, logger: silentLogger });
  const events = new EventRecorder({ store, component: 'bim-controller', logger: silentLogger, registry: new Registry() });
  const bim = backingImageManagerController({ store, informers, events, namespace });
  const halt = await runControllers(informers, bim.controller);
  return async () => {
    await bim.stop();
    await halt();
  };
}
