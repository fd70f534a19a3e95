// The token of a kubeconfig chosen on the login screen (the file `stratum up` writes, or one from
// `stratum token create --out`): the user of the current context, as kubectl picks it. The YAML parser is loaded
// only when a file is chosen, so it costs the first render nothing.

export async function tokenFromKubeconfig(text: string): Promise<string> {
  const { parse } = await import('yaml');
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new Error(`This file is not a kubeconfig (YAML): ${(err as Error).message}`);
  }
  const d = (doc ?? {}) as {
    'current-context'?: string;
    contexts?: { name?: string; context?: { user?: string } }[];
    users?: { name?: string; user?: { token?: string } }[];
  };
  if (typeof d !== 'object' || !Array.isArray(d.users)) throw new Error('This file is not a kubeconfig: it has no users.');
  const ctx = d.contexts?.find((c) => c.name === d['current-context']) ?? d.contexts?.[0];
  const user = d.users.find((u) => u.name === ctx?.context?.user) ?? d.users[0];
  const token = user?.user?.token;
  if (typeof token !== 'string' || token === '') {
    throw new Error(`The kubeconfig's user ${user?.name ?? ''} has no token (a client certificate or exec plugin cannot be used here).`);
  }
  return token;
}
