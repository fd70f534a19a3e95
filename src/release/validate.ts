// Checks a release against this cluster before anything changes. A release is refused, with every problem named
// by its entry, when:
//   - an image names a component Stratum does not run (entries of other components come from --images files);
//   - a default image is missing from the catalog, is of another component, or speaks an API outside the range
//     the release's manager speaks for that component (nothing could ever serve it);
//   - the manager's range for the instance manager or the engine excludes every running instance of it: attached
//     volumes live there, and a manager that cannot talk to them cannot move them (backing-image managers are
//     exempt: their files outlive them and an incompatible one is replaced at once, its files taken over);
//   - an image asks for more than the operator's catalog grants (a command, subcommand or environment of its
//     own: trust.ts); nothing of such a release is run;
//   - an image's command does not exist: its program is not on disk, a script it names is missing, or one of its
//     subcommands is unknown to the program (`<command> help <subcommand>` fails: Stratum's images are its CLI).

import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import type { ImageEntry } from '../agent/images.js';
import { ReleaseError } from './errors.js';
import { untrustedProblems } from './trust.js';
import { COMPONENT_NAMES, isComponent, type ApiRange, type Release, type ReleaseComponent } from './release.js';

/** Components a release may carry images of: the data plane plus the catalog's workload and test images. */
export const KNOWN_COMPONENTS: readonly string[] = [...COMPONENT_NAMES, 'static-web', 'test-http', 'test-exit'];

/** A data-plane process running now, with the API range it reported. */
export interface RunningInstance {
  component: ReleaseComponent;
  /** What it is, for messages: `BackingImageManager bim-1a2b` … */
  name: string;
  image: string;
  apiMinVersion: number;
  apiVersion: number;
}

export interface ValidateOptions {
  /** Where the release came from, for messages. */
  source: string;
  /** The operator's catalog (built-in plus --images files): what a release may reuse (trust.ts). */
  trusted: readonly ImageEntry[];
  /** Runs `argv` and says why it failed, or undefined when it exited 0 (injected by unit tests). */
  probe?: (argv: string[], signal: AbortSignal) => Promise<string | undefined>;
  signal?: AbortSignal;
}

export function overlaps(r: ApiRange, min: number, current: number): boolean {
  return !(r.min > current || r.max < min);
}

const rangeText = (min: number, max: number) => (min === max ? String(min) : `${min}..${max}`);

/** Throws ReleaseError (InvalidRelease or IncompatibleRelease) listing every problem; resolves when the release may be applied. */
export async function validateRelease(rel: Release, catalog: readonly ImageEntry[], running: readonly RunningInstance[], o: ValidateOptions): Promise<void> {
  const invalid: string[] = [];
  const incompatible: string[] = [];
  const byName = new Map(catalog.map((e) => [e.name, e]));
  rel.images.forEach((raw, i) => {
    const e = byName.get(raw.name);
    if (e && !KNOWN_COMPONENTS.includes(e.component)) {
      invalid.push(`images[${i}] (${raw.name}): unknown component "${e.component}" (known: ${KNOWN_COMPONENTS.join(', ')})`);
    }
  });
  for (const c of COMPONENT_NAMES) {
    const image = rel.defaults[c];
    const e = byName.get(image);
    const range = rel.apis[c];
    if (!e) {
      invalid.push(`defaults.${c}: image "${image}" is neither in the release's images nor in the catalog`);
      continue;
    }
    if (e.component !== c) {
      invalid.push(`defaults.${c}: image "${image}" is a ${e.component} image, not a ${c} image`);
      continue;
    }
    if (!overlaps(range, e.apiMinVersion, e.apiVersion)) {
      incompatible.push(`defaults.${c}: image "${image}" speaks API ${rangeText(e.apiMinVersion, e.apiVersion)}, outside manager.apis.${c} ${rangeText(range.min, range.max)}: nothing could serve it`);
    }
  }
  for (const c of ['instance-manager', 'engine'] as const) {
    const mine = running.filter((r) => r.component === c && r.apiVersion > 0);
    const range = rel.apis[c];
    if (mine.length === 0 || mine.some((r) => overlaps(range, r.apiMinVersion, r.apiVersion))) continue;
    const seen = mine.map((r) => `${r.name} (${r.image}, API ${rangeText(r.apiMinVersion, r.apiVersion)})`).join(', ');
    incompatible.push(`manager.apis.${c}: range ${rangeText(range.min, range.max)} excludes every running ${c}: ${seen}; the volumes they hold could not be moved`);
  }
  // Before anything of the release runs, even a `help` probe: its commands exist and ask for nothing the
  // operator's catalog does not grant (trust.ts).
  const untrusted: string[] = [];
  const probes: { where: string; e: ImageEntry }[] = [];
  for (const [i, raw] of rel.images.entries()) {
    const e = byName.get(raw.name);
    if (!e || !isComponentOrKnown(e.component)) continue;
    const where = `images[${i}] (${raw.name})`;
    const missing = missingProgram(e.command);
    if (missing) {
      invalid.push(`${where}: command ${JSON.stringify(e.command.join(' '))} does not exist: ${missing}`);
      continue;
    }
    const why = untrustedProblems(e, o.trusted);
    if (why.length > 0) untrusted.push(...why.map((w) => `${where}: ${w}`));
    else probes.push({ where, e });
  }
  if (untrusted.length > 0) {
    throw new ReleaseError('UntrustedRelease', `release ${o.source} refused, nothing was changed or run: ${[...untrusted, ...invalid, ...incompatible].join('; ')}`);
  }
  const probe = o.probe ?? runProbe;
  const signal = o.signal ?? AbortSignal.timeout(60_000);
  for (const { where, e } of probes) {
    for (const sub of e.subcommands) {
      const why = await probe([...e.command, 'help', sub], signal);
      if (why) invalid.push(`${where}: command ${JSON.stringify([...e.command, sub].join(' '))} does not exist: ${why}`);
    }
  }
  if (invalid.length > 0) throw new ReleaseError('InvalidRelease', `release ${o.source} refused, nothing was changed: ${[...invalid, ...incompatible].join('; ')}`);
  if (incompatible.length > 0) throw new ReleaseError('IncompatibleRelease', `release ${o.source} refused, nothing was changed: ${incompatible.join('; ')}`);
}

function isComponentOrKnown(c: string): boolean {
  return isComponent(c) || KNOWN_COMPONENTS.includes(c);
}

/** Why argv[0] (or a script argv names) is not there, or undefined. */
export function missingProgram(argv: readonly string[]): string | undefined {
  const [program, ...args] = argv;
  if (!program) return 'the command is empty';
  const found = isAbsolute(program) ? (existsSync(program) ? program : undefined) : (process.env['PATH'] ?? '').split(delimiter).map((d) => join(d, program)).find((p) => existsSync(p));
  if (!found) return `${program} is not on this machine`;
  try {
    accessSync(found, constants.X_OK);
  } catch {
    return `${found} is not executable`;
  }
  for (const a of args) {
    if (isAbsolute(a) && /\.(c|m)?js$/.test(a) && !existsSync(a)) return `${a} does not exist`;
  }
  return undefined;
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n').filter((l) => l.trim() !== '');
  const l = lines[lines.length - 1];
  return l && !l.startsWith(' ') ? ` (${l.trim()})` : '';
}

/** Runs argv (a `help`) with a timeout; undefined when it exits 0, else the first line of its stderr. */
function runProbe(argv: string[], signal: AbortSignal): Promise<string | undefined> {
  return new Promise((resolve) => {
    const [cmd = '', ...args] = argv;
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], signal: AbortSignal.any([signal, AbortSignal.timeout(20_000)]) });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', (e) => resolve(e.message));
    // Commander prints the whole usage on an unknown command: its last line is the one that says what was wrong.
    p.on('close', (code) => resolve(code === 0 ? undefined : `\`${args.slice(-2).join(' ')}\` exited with code ${code}${lastLine(err)}`));
  });
}
