// Settings: values live (watched), definitions (type, default, bounds, read-only) from /v1/settings. Read-only
// settings are shown as such and cannot be edited.

import { Badge, Button, Group, Stack, Switch, Table, Text, TextInput, Title } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { useResources, v1, type KubeObject, type V1Setting } from '../api/index.js';
import { ErrorAlert } from '../components/index.js';

function Row({ name, value, def }: { name: string; value: string; def: V1Setting['definition'] | undefined }) {
  const [draft, setDraft] = useState<string | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  // Until the definitions (/v1/settings) are known, nothing is editable: a read-only setting is never offered.
  const readOnly = def?.readOnly ?? true;
  const save = async (next: string) => {
    setBusy(true);
    setError(undefined);
    try {
      await v1('PUT', `/settings/${encodeURIComponent(name)}`, { value: next });
      setDraft(undefined);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const shown = draft ?? value;
  return (
    <Table.Tr data-testid={`setting-${name}`}>
      <Table.Td>
        <Text size="sm" fw={500}>{name}</Text>
        <Text size="xs" c="dimmed">{def?.description}</Text>
      </Table.Td>
      <Table.Td miw={260}>
        {def?.type === 'bool' ? (
          <Switch aria-label={name} checked={shown === 'true'} disabled={readOnly || busy} onChange={(e) => void save(String(e.currentTarget.checked))} />
        ) : (
          <Group gap="xs" wrap="nowrap">
            <TextInput aria-label={name} value={shown} readOnly={readOnly} onChange={(e) => setDraft(e.currentTarget.value)} w={200} />
            {!readOnly && <Button size="xs" variant="default" disabled={draft === undefined || draft === value} loading={busy} onClick={() => void save(shown)}>Save</Button>}
          </Group>
        )}
        <ErrorAlert error={error} />
      </Table.Td>
      <Table.Td>{def?.readOnly ? <Badge color="gray">read-only</Badge> : <Text size="xs">default {def?.default || '""'}</Text>}</Table.Td>
    </Table.Tr>
  );
}

export function Settings() {
  const live = useResources<KubeObject>('settings');
  const defs = useQuery({ queryKey: ['v1', 'settings'], queryFn: () => v1<{ data: V1Setting[] }>('GET', '/settings'), staleTime: Infinity });
  const byName = new Map((defs.data?.data ?? []).map((s) => [s.name, s.definition]));
  return (
    <Stack>
      <Title order={1} size="h2">Settings</Title>
      <ErrorAlert error={defs.error} title="Cannot read the settings catalogue" />
      {live === undefined ? <Text>Loading…</Text> : (
        <Table aria-label="settings">
          <Table.Thead><Table.Tr><Table.Th>Setting</Table.Th><Table.Th>Value</Table.Th><Table.Th>Notes</Table.Th></Table.Tr></Table.Thead>
          <Table.Tbody>
            {live.map((s) => {
              const name = s.metadata.name ?? '';
              return <Row key={name} name={name} value={typeof s['value'] === 'string' ? s['value'] : ''} def={byName.get(name)} />;
            })}
          </Table.Tbody>
        </Table>
      )}
    </Stack>
  );
}
