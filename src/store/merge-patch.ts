// JSON merge patch (RFC 7386): objects merge recursively, null deletes a member, anything else replaces.

export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return structuredClone(patch);
  const out: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [key, value] of Object.entries(patch as Record<string, unknown>)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/**
 * The merge patch that turns `from` into `to` (kubectl's client-side apply uses it between the last applied
 * configuration and the new one, so fields set by the server are left alone). Undefined when nothing changes.
 */
export function createMergePatch(from: unknown, to: unknown): unknown {
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObj(from) || !isObj(to)) return JSON.stringify(from) === JSON.stringify(to) ? undefined : to;
  const patch: Record<string, unknown> = {};
  for (const key of Object.keys(from)) if (!(key in to)) patch[key] = null;
  for (const [key, value] of Object.entries(to)) {
    if (!(key in from)) patch[key] = value;
    else {
      const sub = createMergePatch(from[key], value);
      if (sub !== undefined) patch[key] = sub;
    }
  }
  return Object.keys(patch).length === 0 ? undefined : patch;
}
