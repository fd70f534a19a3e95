// Readiness probes as the kubelet runs them: httpGet (2xx/3xx is success), tcpSocket (a connection is success)
// or exec (exit 0 is success), each bounded by timeoutSeconds. Ports named or numbered as in the pod spec are
// mapped to the host ports the agent allocated, since pods run on the host network.

import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import type { ContainerPort, Probe } from '../api/pod.js';
import { describeFetchError } from '../client/http-store.js';
import { sleep } from './sleep.js';

export interface ProbeResult {
  ok: boolean;
  /** What was tried and what happened, for the pod's Ready condition. */
  message: string;
}

export interface ProbeTarget {
  host: string;
  declared: readonly ContainerPort[];
  /** Port key (name, or containerPort as a string) → host port. */
  allocated: Readonly<Record<string, number>>;
  env: Record<string, string>;
  cwd: string;
  /** Sent with httpGet probes: the cluster credential, since data-plane pods answer nothing but /healthz without it. */
  headers?: Record<string, string>;
}

/** The port key of a declared container port: its name, or its number when it has none. */
export function portKey(p: Pick<ContainerPort, 'name' | 'containerPort'>): string {
  return p.name ? p.name : String(p.containerPort);
}

/** The host port a probe's `port` (a name or a containerPort number) means; an undeclared number is used as is. */
export function resolvePort(port: number | string, t: Pick<ProbeTarget, 'declared' | 'allocated'>): number | undefined {
  const declared = t.declared.find((p) => (typeof port === 'string' && !/^\d+$/.test(port) ? p.name === port : p.containerPort === Number(port)));
  if (declared) return t.allocated[portKey(declared)];
  return typeof port === 'number' || /^\d+$/.test(port) ? Number(port) : undefined;
}

export async function runProbe(probe: Probe, t: ProbeTarget, signal: AbortSignal): Promise<ProbeResult> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  const bounded = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);
  if (probe.httpGet) {
    const port = resolvePort(probe.httpGet.port, t);
    if (port === undefined) return { ok: false, message: `readiness probe names port "${probe.httpGet.port}", which the container does not declare` };
    const host = probe.httpGet.host || t.host;
    const url = `${(probe.httpGet.scheme ?? 'HTTP').toLowerCase()}://${host}:${port}${probe.httpGet.path ?? '/'}`;
    try {
      const res = await fetch(url, { signal: bounded, redirect: 'manual', headers: t.headers ?? {} });
      await res.body?.cancel();
      return res.status >= 200 && res.status < 400
        ? { ok: true, message: '' }
        : { ok: false, message: `readiness probe failed: HTTP GET ${url}: status ${res.status}` };
    } catch (err) {
      const why = bounded.aborted && !signal.aborted ? `no answer within ${timeoutMs / 1000} s` : describeFetchError(err);
      return { ok: false, message: `readiness probe failed: HTTP GET ${url}: ${why}` };
    }
  }
  if (probe.tcpSocket) {
    const port = resolvePort(probe.tcpSocket.port, t);
    if (port === undefined) return { ok: false, message: `readiness probe names port "${probe.tcpSocket.port}", which the container does not declare` };
    const host = probe.tcpSocket.host || t.host;
    return tcpProbe(host, port, bounded, timeoutMs);
  }
  if (probe.exec?.command?.length) return execProbe(probe.exec.command, t, bounded, timeoutMs);
  return { ok: false, message: 'readiness probe has no httpGet, tcpSocket or exec' };
}

function tcpProbe(host: string, port: number, signal: AbortSignal, timeoutMs: number): Promise<ProbeResult> {
  if (signal.aborted) return Promise.resolve({ ok: false, message: `readiness probe failed: TCP ${host}:${port}: cancelled` });
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const done = (r: ProbeResult): void => {
      signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve(r);
    };
    const onAbort = (): void => done({ ok: false, message: `readiness probe failed: TCP ${host}:${port}: no connection within ${timeoutMs / 1000} s` });
    signal.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => done({ ok: true, message: '' }));
    sock.once('error', (err: NodeJS.ErrnoException) => done({ ok: false, message: `readiness probe failed: TCP ${host}:${port}: ${err.code ?? err.message}` }));
  });
}

function execProbe(argv: readonly string[], t: ProbeTarget, signal: AbortSignal, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const [cmd, ...args] = argv;
    const child = spawn(cmd ?? '', args, { cwd: t.cwd, env: t.env, stdio: 'ignore', signal });
    child.once('error', (err) =>
      resolve({ ok: false, message: `readiness probe failed: ${argv.join(' ')}: ${signal.aborted ? `no result within ${timeoutMs / 1000} s` : err.message}` }),
    );
    child.once('exit', (code) =>
      resolve(code === 0 ? { ok: true, message: '' } : { ok: false, message: `readiness probe failed: ${argv.join(' ')} exited with ${code ?? 'a signal'}` }),
    );
  });
}

/**
 * Probes every `periodSeconds` after `initialDelaySeconds` until `signal` aborts, applying the success and
 * failure thresholds, and calls `onChange` whenever readiness or its message changes. `ready` is the starting
 * state (true for a process that was ready before the agent restarted).
 */
export async function readinessLoop(
  probe: Probe,
  target: ProbeTarget,
  ready: boolean,
  onChange: (ready: boolean, message: string) => void,
  signal: AbortSignal,
): Promise<void> {
  let ok = 0;
  let bad = 0;
  let message = ready ? '' : 'waiting for the readiness probe';
  try {
    await sleep((probe.initialDelaySeconds ?? 0) * 1000, signal);
    while (!signal.aborted) {
      const r = await runProbe(probe, target, signal);
      if (signal.aborted) return;
      const before = `${ready} ${message}`;
      if (r.ok) {
        ok++;
        bad = 0;
        if (ok >= (probe.successThreshold ?? 1)) {
          ready = true;
          message = '';
        }
      } else {
        bad++;
        ok = 0;
        // A ready container turns unready only after failureThreshold failures; an unready one shows why at once.
        if (!ready || bad >= (probe.failureThreshold ?? 3)) {
          ready = false;
          message = r.message;
        }
      }
      if (`${ready} ${message}` !== before) onChange(ready, message);
      await sleep((probe.periodSeconds ?? 10) * 1000, signal);
    }
  } catch {
    // aborted: the instance ended or the agent stops
  }
}
