// The login screen: a token (the kubeconfig's user token). It is checked with one request before it is kept.

import { Button, Center, Paper, PasswordInput, Stack, Text, Title } from '@mantine/core';
import { useState } from 'react';
import { KINDS, setToken } from '../api/index.js';
import { ErrorAlert } from '../components/index.js';

export function Login({ expired }: { expired: boolean }) {
  const [token, setDraft] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const res = await fetch(`${KINDS.nodes}?limit=1`, { headers: { authorization: `Bearer ${token.trim()}` } });
      if (res.status === 401 || res.status === 403) throw new Error('The manager did not accept this token.');
      if (!res.ok) throw new Error(`The manager answered HTTP ${res.status}: ${await res.text()}`);
      setToken(token);
    } catch (err) {
      setError(err instanceof TypeError ? new Error(`Cannot reach the manager: ${err.message}`) : err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Center mih="100vh" component="main">
      <Paper withBorder p="xl" w={440}>
        <form onSubmit={(e) => { e.preventDefault(); void submit(); }}>
          <Stack>
            <Title order={1} size="h2">Stratum</Title>
            {expired && <Text c="red" role="status">Your session ended or the token was refused. Log in again.</Text>}
            <Text size="sm">Paste the API token: the <code>token</code> of the user in the cluster&apos;s kubeconfig.</Text>
            <PasswordInput label="API token" required value={token} onChange={(e) => setDraft(e.currentTarget.value)} autoFocus />
            <ErrorAlert error={error} title="Login failed" />
            <Button type="submit" loading={busy}>Log in</Button>
          </Stack>
        </form>
      </Paper>
    </Center>
  );
}
