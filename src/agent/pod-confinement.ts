// What a Pod may ask of a node: only catalog images, with the catalog's command (a pod gives args only, whose
// first one must be a subcommand the image declares), only the environment variables the image declares, probes
// that are HTTP or TCP (an exec probe is a command of the pod's choosing), disk paths that are the node's own
// disks, and volume mounts of the pod's claims that stay inside their volume. The manager refuses anything else at admission with a 422 naming the field; the agent checks again
// before it starts a process (the manager may be older, or the pod written straight into the store).

import { isAbsolute, relative, resolve } from 'node:path';
import type { DeepReadonly } from '../api/meta.js';
import type { Pod } from '../api/pod.js';
import type { ImageCatalog } from './images.js';

export interface ConfinementProblem {
  field: string;
  message: string;
}

/** Args whose value is a path on the node: it must be one of the node's disks. */
const DISK_ARGS = new Set(['--disk', '--data-root', '--data-dir']);

export interface ConfinementOptions {
  /** The node's disk paths; when given, `--disk`/`--data-root`/`--data-dir` args must name one of them. */
  disks?: readonly string[];
}

export function podConfinementProblems(pod: DeepReadonly<Pod>, catalog: ImageCatalog, o: ConfinementOptions = {}): ConfinementProblem[] {
  const out: ConfinementProblem[] = [];
  (pod.spec?.containers ?? []).forEach((c, i) => {
    const at = `spec.containers[${i}]`;
    const image = catalog.get(c.image);
    if (!image) {
      out.push({ field: `${at}.image`, message: `image "${c.image}" is not in the image catalog (known: ${catalog.names().join(', ')})` });
      return;
    }
    if (c.command !== undefined && c.command.length > 0) out.push({ field: `${at}.command`, message: 'the image catalog defines the command; a pod gives args only' });
    const args = c.args ?? [];
    if (image.subcommands.length > 0 && !image.subcommands.includes(args[0] ?? '')) {
      out.push({ field: `${at}.args[0]`, message: `image "${c.image}" runs only ${image.subcommands.map((s) => `"${s}"`).join(' or ')}, not ${JSON.stringify(args[0] ?? '')}` });
    }
    if (o.disks) {
      args.forEach((a, j) => {
        const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
        if (!DISK_ARGS.has(flag)) return;
        const value = inline ?? args[j + 1];
        if (value === undefined || !isAbsolute(value) || !o.disks?.some((d) => isInside(d, value))) {
          out.push({ field: `${at}.args[${inline === undefined ? j + 1 : j}]`, message: `${flag} ${JSON.stringify(value ?? '')} is not a disk of this node (${o.disks?.join(', ') || 'none'})` });
        }
      });
    }
    (c.env ?? []).forEach((e, j) => {
      if (!image.allowedEnv.includes(e.name)) {
        out.push({ field: `${at}.env[${j}].name`, message: `image "${c.image}" does not take ${e.name}${image.allowedEnv.length ? ` (it takes ${image.allowedEnv.join(', ')})` : ' (it takes no environment variables)'}` });
      }
    });
    for (const p of ['readinessProbe', 'livenessProbe', 'startupProbe'] as const) {
      const probe = (c as Record<string, unknown>)[p] as { exec?: unknown; httpGet?: { host?: unknown }; tcpSocket?: { host?: unknown } } | undefined;
      if (probe?.exec !== undefined) out.push({ field: `${at}.${p}.exec`, message: 'exec probes run a command of the pod\'s choosing; use httpGet or tcpSocket' });
      // A probe goes to the pod's own address; another host would make the agent a proxy into its network.
      if (probe?.httpGet?.host !== undefined) out.push({ field: `${at}.${p}.httpGet.host`, message: 'probes go to the pod itself; host is not supported' });
      if (probe?.tcpSocket?.host !== undefined) out.push({ field: `${at}.${p}.tcpSocket.host`, message: 'probes go to the pod itself; host is not supported' });
    }
    for (const k of ['lifecycle', 'envFrom', 'securityContext', 'workingDir'] as const) {
      if ((c as Record<string, unknown>)[k] !== undefined) out.push({ field: `${at}.${k}`, message: 'not supported on a Stratum node' });
    }
    // Mounts are of the pod's claims only (the schema knows no other volume type); a subPath stays inside its volume.
    (c.volumeMounts ?? []).forEach((m, j) => {
      const sub = m.subPath;
      if (sub !== undefined && sub !== '' && (isAbsolute(sub) || sub.split('/').includes('..'))) {
        out.push({ field: `${at}.volumeMounts[${j}].subPath`, message: `${JSON.stringify(sub)} leaves the volume: a subPath is relative and has no ".."` });
      }
    });
  });
  return out;
}

/** `child` is `parent` or below it (lexically: both are normalised, symlinks are not followed). */
function isInside(parent: string, child: string): boolean {
  const rel = relative(resolve(parent), resolve(child));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}
