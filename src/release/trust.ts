// What a release may ask of the machines it runs on. A release reaches the manager over the network (POST
// /v1/upgrade with an admin token), and an admin may not run processes other than the operator's catalog images
// (docs/security.md). So a release entry may rename, version and re-range what the operator installed, and tune it,
// but never widen it:
//   - its command (expanded) is the command of an operator entry (built-in or --images files) of the same component;
//   - its subcommands and pod environment (`allowedEnv`) are among those entries' own;
//   - its env sets only what those entries already set to the same value, or the tuning knobs below: nothing that
//     names a program, a file, a peer or a credential (NODE_OPTIONS, PATH, STRATUM_SERVER … are refused).
// It is checked before any command of the release is started, even as a `help` probe.

import type { ImageEntry } from '../agent/images.js';

/** Environment a release may set on an image: API ranges and the backing-image manager's tuning knobs. */
export const RELEASE_TUNABLE_ENV: readonly string[] = [
  'STRATUM_API_VERSION',
  'STRATUM_API_MIN_VERSION',
  'STRATUM_BIM_BANDWIDTH_LIMIT',
  'STRATUM_BIM_PENDING_TIMEOUT_MS',
  'STRATUM_BIM_STARTING_TIMEOUT_MS',
  'STRATUM_BIM_STALL_TIMEOUT_MS',
];

const sameArgv = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Why `e` (a resolved entry the release declares) asks for more than the operator's catalog grants, one problem
 * per line, each naming the field; empty when it asks for nothing new.
 */
export function untrustedProblems(e: ImageEntry, trusted: readonly ImageEntry[]): string[] {
  const sameCommand = trusted.filter((t) => sameArgv(t.command, e.command));
  if (sameCommand.length === 0) {
    return [`command ${JSON.stringify(e.command.join(' '))} is not the command of any image of the operator's catalog (built-in or --images files): a release may only reuse those`];
  }
  const grants = sameCommand.filter((t) => t.component === e.component);
  if (grants.length === 0) {
    return [`component "${e.component}" with command ${JSON.stringify(e.command.join(' '))}: the operator's catalog runs that command only as ${[...new Set(sameCommand.map((t) => t.component))].join(', ')}`];
  }
  const out: string[] = [];
  // An operator entry without subcommands lets pods pass any first argument: so may the release's.
  if (!grants.some((t) => t.subcommands.length === 0)) {
    const allowed = new Set(grants.flatMap((t) => t.subcommands));
    const extra = e.subcommands.length === 0 ? ['(any)'] : e.subcommands.filter((s) => !allowed.has(s));
    if (extra.length > 0) out.push(`subcommands ${extra.join(', ')}: not allowed by the operator's catalog for this command (allowed: ${[...allowed].join(', ')})`);
  }
  const allowedEnv = new Set(grants.flatMap((t) => t.allowedEnv));
  const extraPodEnv = e.allowedEnv.filter((v) => !allowedEnv.has(v));
  if (extraPodEnv.length > 0) out.push(`allowedEnv ${extraPodEnv.join(', ')}: pods of this command may not set them in the operator's catalog`);
  const badEnv = Object.entries(e.env)
    .filter(([k, v]) => !RELEASE_TUNABLE_ENV.includes(k) && !grants.some((t) => t.env[k] === v))
    .map(([k]) => k);
  if (badEnv.length > 0) out.push(`env ${badEnv.join(', ')}: a release may set only ${RELEASE_TUNABLE_ENV.join(', ')} (or what the operator's entry already sets)`);
  return out;
}
