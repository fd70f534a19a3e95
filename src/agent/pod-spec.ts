// How a Pod becomes a process on this node: the image's command plus the container's args, the environment
// (image env < container env < what the agent decides: ports, names, addresses), and the checks that refuse what
// the agent cannot run. Pure functions.

import type { DeepReadonly } from '../api/meta.js';
import type { Container, Pod } from '../api/pod.js';
import { AgentError } from './errors.js';
import { imageEnv, type ImageCatalog, type ImageEntry } from './images.js';
import { portKey } from './probes.js';
import { podConfinementProblems } from './pod-confinement.js';
import { CLUSTER_SECRET_ENV } from '../auth/index.js';

/** Annotation with the host ports the agent allocated: JSON `{"<port name or containerPort>": hostPort}`. */
export const PORTS_ANNOTATION = 'stratum.io/ports';
/** The agent's finalizer: the pod object stays until its process is gone (see runtime.ts). */
export const POD_FINALIZER = 'stratum.io/pod-runtime';

/** Variables a pod inherits from the agent's own environment; everything else is set explicitly. */
const INHERITED = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'NODE_OPTIONS'];

export interface ResolvedPod {
  container: DeepReadonly<Container>;
  image: ImageEntry;
}

/**
 * The container and image of `pod`, or an AgentError saying why it cannot run here: `ImageNotFound` (shown as
 * ErrImageNeverPull) or `UnsupportedPodSpec`.
 */
export function resolvePod(pod: DeepReadonly<Pod>, catalog: ImageCatalog, nodeName: string): ResolvedPod {
  const containers = pod.spec?.containers ?? [];
  const container = containers[0];
  if (container === undefined) throw new AgentError('UnsupportedPodSpec', 'the pod has no container');
  if (containers.length > 1) {
    throw new AgentError('UnsupportedPodSpec', `the pod has ${containers.length} containers; a Stratum node agent runs one per pod`);
  }
  if (container.command !== undefined && container.command.length > 0) {
    throw new AgentError(
      'UnsupportedPodSpec',
      `container "${container.name}" sets command; on a Stratum node the image catalog defines each image's command (use args)`,
    );
  }
  const image = catalog.get(container.image);
  if (image === undefined) {
    throw new AgentError(
      'ImageNotFound',
      `image "${container.image}" is not in the image catalog of ${nodeName} (known: ${catalog.names().join(', ')}); ` +
        'add it with `stratum node --images FILE` or use a known image',
    );
  }
  const problems = podConfinementProblems(pod, catalog);
  if (problems.length > 0) {
    throw new AgentError('UnsupportedPodSpec', `the pod asks for more than image "${container.image}" allows: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`);
  }
  return { container, image };
}

/** The environment variable for a named port: `PORT_` + the name upper-cased, non-alphanumerics as `_`. */
export function portEnvName(name: string): string {
  return `PORT_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

export interface EnvContext {
  pod: DeepReadonly<Pod>;
  container: DeepReadonly<Container>;
  image: ImageEntry;
  ports: Readonly<Record<string, number>>;
  nodeName: string;
  hostIP: string;
  managerUrl: string;
  /** Where the cluster secret is (a 0600 file of the agent's): handed to the pod as STRATUM_CLUSTER_SECRET_FILE. */
  clusterSecretFile?: string | undefined;
  inherited?: NodeJS.ProcessEnv;
}

export function podEnv(c: EnvContext): Record<string, string> {
  const env: Record<string, string> = {};
  const from = c.inherited ?? process.env;
  for (const k of INHERITED) {
    const v = from[k];
    if (v !== undefined) env[k] = v;
  }
  Object.assign(env, imageEnv(c.image));
  for (const e of c.container.env ?? []) env[e.name] = e.value ?? '';
  const declared = c.container.ports ?? [];
  declared.forEach((p, i) => {
    const port = c.ports[portKey(p)];
    if (port === undefined) return;
    if (i === 0) env['PORT'] = String(port);
    if (p.name) env[portEnvName(p.name)] = String(port);
  });
  Object.assign(env, {
    POD_NAME: c.pod.metadata.name ?? '',
    POD_NAMESPACE: c.pod.metadata.namespace ?? '',
    POD_UID: c.pod.metadata.uid ?? '',
    POD_IP: c.hostIP,
    HOST: c.hostIP,
    NODE_NAME: c.nodeName,
    STRATUM_MANAGER: c.managerUrl,
  });
  if (c.clusterSecretFile !== undefined) env[CLUSTER_SECRET_ENV] = c.clusterSecretFile;
  return env;
}

/**
 * The process argv: the image's command plus the container's args, with `$(VAR)` in args expanded from the pod's
 * environment as Kubernetes does (`$$(VAR)` stays literal; unknown variables are left as written). This is how a
 * pod passes its agent-allocated port: `args: ['--port', '$(PORT)']`.
 */
export function podArgv(image: ImageEntry, container: DeepReadonly<Container>, env: Readonly<Record<string, string>> = {}): string[] {
  const expand = (a: string) => a.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m: string, name: string | undefined) => (name === undefined ? '$' : (env[name] ?? m)));
  return [...image.command, ...(container.args ?? []).map(expand)];
}

/** The pod's published ports, as written in the annotation. */
export function parsePortsAnnotation(pod: DeepReadonly<Pod>): Record<string, number> {
  const text = pod.metadata.annotations?.[PORTS_ANNOTATION];
  if (!text) return {};
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    return Object.fromEntries(Object.entries(v).filter((e): e is [string, number] => typeof e[1] === 'number'));
  } catch {
    return {};
  }
}
