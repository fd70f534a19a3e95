// `stratum manager`: runs the control plane in the foreground until SIGINT/SIGTERM.

import { resolve } from 'node:path';
import { EXIT_RELEASE_CHANGED, startManager } from '../../manager/index.js';

export interface ManagerFlags {
  host: string;
  port: string;
  dataDir: string;
  backingImageManagerImage?: string;
  instanceManagerImage?: string;
  etcd?: string;
  etcdPrefix?: string;
  images?: string[];
  advertiseHost?: string[];
  corsOrigin?: string[];
  eventTtl?: string;
}

export async function runManagerCommand(o: ManagerFlags): Promise<void> {
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be a port number, not "${o.port}"`);
  const ttl = o.eventTtl === undefined ? undefined : Number(o.eventTtl);
  if (ttl !== undefined && (!Number.isFinite(ttl) || ttl <= 0)) throw new Error(`--event-ttl must be a positive number of seconds, not "${o.eventTtl}"`);
  const ac = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort());
  // Started by `stratum up` with an IPC channel: when `up` dies, so does its manager.
  if (process.send) {
    process.on('disconnect', () => ac.abort());
    // The channel must not keep the process alive once everything stopped (`up` would wait for its kill timeout).
    process.channel?.unref();
  }
  const m = await startManager({
    dataDir: resolve(o.dataDir),
    host: o.host,
    port,
    signal: ac.signal,
    images: { backingImageManager: o.backingImageManagerImage, instanceManager: o.instanceManagerImage },
    etcd: o.etcd ? o.etcd.split(',').map((u) => u.trim()).filter(Boolean) : undefined,
    etcdPrefix: o.etcdPrefix,
    imagesFiles: (o.images ?? []).map((f) => resolve(f)),
    // Under `stratum up` an accepted upgrade asks `up` to restart this process on the new release.
    ...(process.send ? { restart: () => process.send?.({ type: 'restart-manager' }) } : {}),
    advertiseHosts: o.advertiseHost ?? [],
    corsOrigins: o.corsOrigin ?? [],
    ...(ttl === undefined ? {} : { eventTtlMs: ttl * 1000 }),
  });
  await m.done;
  if (m.releaseChanged !== undefined) {
    process.stderr.write(`stratum manager: exiting with status ${EXIT_RELEASE_CHANGED}: ${m.releaseChanged}\n`);
    process.exitCode = EXIT_RELEASE_CHANGED;
  }
}
