// The login screen: an API token pasted, or the kubeconfig file chosen (its current user's token). The token is
// checked with one request before it is kept.

import { Button, Center, Divider, FileInput, Paper, PasswordInput, Stack, Text, Title } from '@mantine/core';
import { useState } from 'react';
import { KINDS, setToken, tokenFromKubeconfig } from '../api/index.js';
import { ErrorAlert } from '../components/index.js';

export function Login({ expired }: { expired: boolean }) {
  const [token, setDraft] = useState('');
  const [file, setFile] = useState<File | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const login = async (get: () => Promise<string>) => {
    setBusy(true);
    setError(undefined);
    try {
      const t = (await get()).trim();
      const res = await fetch(`${KINDS.nodes}?limit=1`, { headers: { authorization: `Bearer ${t}` } });
      if (res.status === 401 || res.status === 403) throw new Error('The manager did not accept this token.');
      if (!res.ok) throw new Error(`The manager answered HTTP ${res.status}: ${await res.text()}`);
      setToken(t);
    } catch (err) {
      setError(err instanceof TypeError ? new Error(`Cannot reach the manager: ${err.message}`) : err);
    } finally {
      setBusy(false);
    }
  };
  const chooseKubeconfig = (f: File | null) => {
    setFile(f);
    if (f) void login(async () => tokenFromKubeconfig(await f.text()));
  };
  return (
    <Center mih="100vh" component="main">
      <Paper withBorder p="xl" w={440}>
        <form onSubmit={(e) => { e.preventDefault(); void login(async () => token); }}>
          <Stack>
            <Title order={1} size="h2">Stratum</Title>
            {expired && <Text c="red" role="status">Your session ended or the token was refused. Log in again.</Text>}
            <Text size="sm">Paste an API token (the <code>token</code> of a user in a kubeconfig), or choose the kubeconfig file.</Text>
            <PasswordInput label="API token" value={token} onChange={(e) => setDraft(e.currentTarget.value)} autoFocus />
            <Button type="submit" loading={busy} disabled={token.trim() === ''}>Log in</Button>
            <Divider label="or" labelPosition="center" />
            <FileInput label="Kubeconfig file" value={file} onChange={chooseKubeconfig} clearable />
            <ErrorAlert error={error} title="Login failed" />
          </Stack>
        </form>
      </Paper>
    </Center>
  );
}
