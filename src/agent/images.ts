// The image catalog: what an image name in a Pod means on this node. An entry names the component it runs, the
// command (argv) that starts it, its version, the API version range it speaks, and extra environment. Stratum
// has no container images: an "image" is a command in this repository (compiled JS) or on the machine.
//
// Built-in entries are below; `--images FILE` adds or replaces entries from YAML or JSON:
//
//   images:
//     - name: stratum-bim:v2-test      # required, unique
//       from: stratum-bim:v1           # optional: start from another entry, then override what is given here
//       component: backing-image-manager
//       version: 2.0.0
//       apiVersion: 2                  # the API version this image speaks (integers)
//       apiMinVersion: 1               # the oldest API version it still accepts
//       command: ["{node}", "{repo}/dist/src/cli/main.js", "bim"]
//       env: { STRATUM_API_VERSION: "2" }   # merged over the base entry's env
//       subcommands: [bim]             # the first pod arg must be one of these (default: any)
//       allowedEnv: [EXIT_CODE]        # variables a pod may set (default: none; see pod-confinement.ts)
//
// Placeholders in `command`: {node} (this Node.js binary), {repo} (the repository root), {cli} (the compiled
// `stratum` CLI), {dir} (the directory of the catalog file). Adding an image for a new component (the
// backing-image manager, the instance manager) is one entry in BUILTIN_IMAGES.

import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { formatTable } from '../util/table.js';
import { AgentError } from './errors.js';

export interface ImageEntry {
  name: string;
  component: string;
  version: string;
  /** The API version this image speaks. */
  apiVersion: number;
  /** The oldest API version it still accepts. */
  apiMinVersion: number;
  /** argv, placeholders expanded. */
  command: string[];
  env: Record<string, string>;
  /** The first pod arg must be one of these (the CLI subcommand); any when empty. */
  subcommands: string[];
  /** Environment variables a pod of this image may set; everything else is refused (confinement). */
  allowedEnv: string[];
  description: string;
  /** Where the entry came from: `built-in` or the catalog file. */
  source: string;
}

/** An entry as written in a catalog (file or built-in), before `from` and placeholders are resolved. */
export interface RawImageEntry {
  name: string;
  from?: string;
  component?: string;
  version?: string;
  apiVersion?: number;
  apiMinVersion?: number;
  command?: string[];
  env?: Record<string, string>;
  subcommands?: string[];
  allowedEnv?: string[];
  description?: string;
}

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root: this file runs from dist/src/agent. */
export const REPO_ROOT = resolve(here, '..', '..', '..');

export const BUILTIN_IMAGES: readonly RawImageEntry[] = [
  {
    name: 'stratum-bim:v1',
    component: 'backing-image-manager',
    version: '1.0.0',
    apiVersion: 1,
    apiMinVersion: 1,
    // The manager reports the entry's API range (STRATUM_API_VERSION, STRATUM_API_MIN_VERSION, see imageEnv): an
    // entry derived with `from` and a new apiVersion speaks it without repeating it in env.
    command: ['{node}', '{cli}'],
    subcommands: ['bim', 'data-source'],
    description: 'backing-image manager (args: bim …) and data source (args: data-source …) of one disk',
  },
  {
    // Pod args: instance-manager --node $(NODE_NAME) --host $(POD_IP) --port $(PORT) [--data-root DIR …]
    name: 'stratum-im:v1',
    component: 'instance-manager',
    version: '1.0.0',
    // What the instance manager reports on /v1/version (2: instances in-process, engine control under /v1/engines).
    apiVersion: 2,
    apiMinVersion: 2,
    command: ['{node}', '{cli}'],
    subcommands: ['instance-manager'],
    description: 'instance manager of a node (args: instance-manager --node … --port …): hosts replicas and engines',
  },
  {
    // Engines run inside the instance manager (one process per node, see src/instance-manager): this entry names
    // the engine code a release ships, its version and the engine API range, as Longhorn's engine image does.
    name: 'stratum-engine:v1',
    component: 'engine',
    version: '1.0.0',
    apiVersion: 1,
    apiMinVersion: 1,
    command: ['{node}', '{cli}'],
    subcommands: ['instance-manager'],
    description: 'engine image: the engine and replica code hosted by instance managers',
  },
  {
    // The seed's StatefulSet image: serves the pod's mount of /usr/share/nginx/html on $PORT (its port `web`).
    name: 'registry.k8s.io/nginx-slim:0.8',
    component: 'static-web',
    version: '0.8.0',
    apiVersion: 1,
    apiMinVersion: 1,
    command: ['{node}', '{repo}/dist/src/agent/builtin/static-web.js'],
    description: 'static file server of the mounted /usr/share/nginx/html (stands in for nginx-slim; also accepts PUT)',
  },
  {
    name: 'stratum-test-http:v1',
    component: 'test-http',
    version: '1.0.0',
    apiVersion: 1,
    apiMinVersion: 1,
    command: ['{node}', '{repo}/dist/src/agent/test-images/http.js'],
    description: 'test image: HTTP server on $PORT that logs a start line and every request',
  },
  {
    name: 'stratum-test-exit:v1',
    component: 'test-exit',
    version: '1.0.0',
    apiVersion: 1,
    apiMinVersion: 1,
    command: ['{node}', '{repo}/dist/src/agent/test-images/exit.js'],
    allowedEnv: ['EXIT_CODE', 'SLEEP_MS'],
    description: 'test image: prints a line, sleeps $SLEEP_MS, exits with $EXIT_CODE',
  },
];

export class ImageCatalog {
  #entries: Map<string, ImageEntry>;

  constructor(entries: Iterable<ImageEntry>) {
    this.#entries = new Map([...entries].map((e) => [e.name, e]));
  }

  /** Swaps every entry at once (an upgrade hands the agents a new release); pods already running keep theirs. */
  replace(other: ImageCatalog): void {
    this.#entries = new Map(other.#entries);
  }

  get(name: string): ImageEntry | undefined {
    return this.#entries.get(name);
  }

  /** Entries sorted by name. */
  list(): ImageEntry[] {
    return [...this.#entries.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  names(): string[] {
    return this.list().map((e) => e.name);
  }
}

export interface CatalogContext {
  nodeBinary: string;
  repo: string;
  /** Directory of the catalog file, for `{dir}`. */
  dir: string;
}

/** Placeholders of this process: its Node.js binary, this repository, the working directory for `{dir}`. */
export const defaultContext = (): CatalogContext => ({ nodeBinary: process.execPath, repo: REPO_ROOT, dir: process.cwd() });

/**
 * The built-in catalog plus, when given, the entries of each file in order (later ones win by name; a release file
 * comes last). A file's `from` may name an entry of any earlier file; `{dir}` is the directory of its own file.
 */
export function loadCatalog(file?: string | readonly string[]): ImageCatalog {
  const files = file === undefined ? [] : typeof file === 'string' ? [file] : file;
  let entries: ImageEntry[] = resolveEntries([...BUILTIN_IMAGES], [], 'built-in', defaultContext());
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (err) {
      throw new AgentError('InvalidCatalog', `Cannot read image catalog ${f}: ${(err as Error).message}`, { cause: err });
    }
    entries = addEntries(entries, parseCatalog(text, f), f, { ...defaultContext(), dir: dirname(resolve(f)) });
  }
  return new ImageCatalog(entries);
}

/** Resolved `base` entries plus raw `extra` ones (which win by name and may derive from `base` with `from`). */
export function addEntries(base: readonly ImageEntry[], extra: RawImageEntry[], source: string, ctx: CatalogContext): ImageEntry[] {
  const byName = new Map(base.map((e) => [e.name, e]));
  // Resolved entries carry no `from` and expanded commands: resolving them again changes nothing.
  const asRaw: RawImageEntry[] = base.map(({ source: _s, ...e }) => e);
  const resolved = resolveEntries(asRaw, extra, source, ctx);
  const fresh = new Set(extra.map((e) => e.name));
  return resolved.map((e) => (fresh.has(e.name) ? e : (byName.get(e.name) ?? e)));
}

/** Parses a catalog document (YAML or JSON; `{images: [...]}` or a bare list) and checks every field. */
export function parseCatalog(text: string, source: string): RawImageEntry[] {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new AgentError('InvalidCatalog', `Image catalog ${source} is not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return [];
  const list = Array.isArray(doc) ? doc : isRecord(doc) ? doc['images'] : undefined;
  if (!Array.isArray(list)) {
    throw new AgentError('InvalidCatalog', `Image catalog ${source} must be a list of images or an object with an "images" list`);
  }
  const seen = new Set<string>();
  return list.map((item, i) => {
    const entry = checkEntry(item, `${source}: images[${i}]`);
    if (seen.has(entry.name)) throw new AgentError('InvalidCatalog', `${source}: image "${entry.name}" is listed twice`);
    seen.add(entry.name);
    return entry;
  });
}

function checkEntry(item: unknown, where: string): RawImageEntry {
  const bad = (field: string, why: string) => new AgentError('InvalidCatalog', `${where}.${field}: ${why}`);
  if (!isRecord(item)) throw new AgentError('InvalidCatalog', `${where}: must be an object`);
  const known = ['name', 'from', 'component', 'version', 'apiVersion', 'apiMinVersion', 'command', 'env', 'subcommands', 'allowedEnv', 'description'];
  for (const k of Object.keys(item)) if (!known.includes(k)) throw bad(k, `unknown field (known: ${known.join(', ')})`);
  const name = item['name'];
  if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?$/.test(name)) {
    throw bad('name', 'required: an image name such as "stratum-bim:v2"');
  }
  const out: RawImageEntry = { name };
  for (const k of ['from', 'component', 'version', 'description'] as const) {
    const v = item[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' && typeof v !== 'number') throw bad(k, 'must be a string');
    out[k] = String(v);
  }
  for (const k of ['apiVersion', 'apiMinVersion'] as const) {
    const v = item[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw bad(k, 'must be a non-negative integer');
    out[k] = v;
  }
  for (const k of ['subcommands', 'allowedEnv'] as const) {
    const v = item[k];
    if (v === undefined) continue;
    if (!Array.isArray(v) || !v.every((c) => typeof c === 'string')) throw bad(k, 'must be a list of strings');
    out[k] = v as string[];
  }
  const command = item['command'];
  if (command !== undefined) {
    if (!Array.isArray(command) || command.length === 0 || !command.every((c) => typeof c === 'string')) {
      throw bad('command', 'must be a non-empty list of strings (argv)');
    }
    out.command = command as string[];
  }
  const env = item['env'];
  if (env !== undefined) {
    if (!isRecord(env)) throw bad('env', 'must be a map of NAME: value');
    const e: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw bad(`env.${k}`, 'not a valid environment variable name');
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw bad(`env.${k}`, 'must be a string');
      e[k] = String(v);
    }
    out.env = e;
  }
  return out;
}

/**
 * Resolves `from` chains and placeholders. `extra` entries replace `base` entries of the same name; `from` may
 * refer to any entry of either list (cycles and unknown bases are errors).
 */
export function resolveEntries(base: RawImageEntry[], extra: RawImageEntry[], source: string, ctx: CatalogContext): ImageEntry[] {
  const raw = new Map<string, { entry: RawImageEntry; source: string }>();
  for (const e of base) raw.set(e.name, { entry: e, source: 'built-in' });
  for (const e of extra) raw.set(e.name, { entry: e, source });
  const done = new Map<string, ImageEntry>();
  const resolving = new Set<string>();
  const resolveOne = (name: string): ImageEntry => {
    const hit = done.get(name);
    if (hit) return hit;
    const r = raw.get(name);
    if (!r) throw new AgentError('InvalidCatalog', `image "${name}" is not in the catalog`);
    if (resolving.has(name)) throw new AgentError('InvalidCatalog', `${r.source}: image "${name}" inherits from itself (via "from")`);
    resolving.add(name);
    const e = r.entry;
    let parent: ImageEntry | undefined;
    if (e.from !== undefined) {
      if (!raw.has(e.from)) {
        throw new AgentError('InvalidCatalog', `${r.source}: image "${name}" is "from" unknown image "${e.from}"`);
      }
      parent = resolveOne(e.from);
    }
    const command = e.command ? e.command.map((c) => expand(c, ctx)) : parent?.command;
    const component = e.component ?? parent?.component;
    if (!command || !component) {
      throw new AgentError('InvalidCatalog', `${r.source}: image "${name}" needs a command and a component (or "from" an image that has them)`);
    }
    const apiVersion = e.apiVersion ?? parent?.apiVersion ?? 1;
    const apiMinVersion = e.apiMinVersion ?? parent?.apiMinVersion ?? apiVersion;
    if (apiMinVersion > apiVersion) {
      throw new AgentError('InvalidCatalog', `${r.source}: image "${name}" has apiMinVersion ${apiMinVersion} above apiVersion ${apiVersion}`);
    }
    const out: ImageEntry = {
      name,
      component,
      // An entry without a version is known by its tag, even when it inherits the rest: v2 is not its base's 1.0.0.
      version: e.version ?? name.split(':')[1] ?? parent?.version ?? 'latest',
      apiVersion,
      apiMinVersion,
      command,
      env: { ...parent?.env, ...e.env },
      subcommands: e.subcommands ?? parent?.subcommands ?? [],
      allowedEnv: e.allowedEnv ?? parent?.allowedEnv ?? [],
      description: e.description ?? parent?.description ?? '',
      source: r.source,
    };
    resolving.delete(name);
    done.set(name, out);
    return out;
  };
  return [...raw.keys()].map(resolveOne);
}

function expand(arg: string, ctx: CatalogContext): string {
  return arg
    .replaceAll('{node}', ctx.nodeBinary)
    .replaceAll('{repo}', ctx.repo)
    .replaceAll('{cli}', join(ctx.repo, 'dist', 'src', 'cli', 'main.js'))
    .replaceAll('{dir}', ctx.dir);
}

/** The environment every process of `image` gets before the entry's own env (which may override these). */
export function imageEnv(image: ImageEntry): Record<string, string> {
  return {
    STRATUM_IMAGE: image.name,
    STRATUM_COMPONENT: image.component,
    STRATUM_IMAGE_VERSION: image.version,
    STRATUM_API_VERSION: String(image.apiVersion),
    STRATUM_API_MIN_VERSION: String(image.apiMinVersion),
    ...image.env,
  };
}

/** `stratum images`: one row per image. */
export function formatCatalog(catalog: ImageCatalog, opts: { wide?: boolean } = {}): string {
  const rows = catalog.list().map((e) => {
    const api = e.apiMinVersion === e.apiVersion ? String(e.apiVersion) : `${e.apiMinVersion}-${e.apiVersion}`;
    const base = [e.name, e.component, e.version, api, e.source];
    return opts.wide ? [...base, e.command.join(' '), Object.entries(e.env).map(([k, v]) => `${k}=${v}`).join(',')] : base;
  });
  const header = ['IMAGE', 'COMPONENT', 'VERSION', 'API', 'SOURCE', ...(opts.wide ? ['COMMAND', 'ENV'] : [])];
  return `${formatTable(header, rows)}\n`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
