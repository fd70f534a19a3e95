// A volume's snapshots, from its Engine's status (live through the engines watch the page already holds, and kept
// there while the volume is detached): take one, delete one, revert to one, purge removed ones. Every action is a /v1
// volume action; the API attaches a detached volume without a frontend for it. A refusal (a revert while a frontend
// is attached, a name in use) shows the API's message.

import { Badge, Button, Group, Stack, Table, Text, TextInput, Title } from '@mantine/core';
import { useState } from 'react';
import { v1, type Engine, type EngineSnapshotStatus } from '../api/index.js';
import { Confirm, ErrorAlert, useAction } from '../components/index.js';
import { age, bytes } from '../format.js';

/** The live head's entry in the engine's list (src/replica/chain.ts VOLUME_HEAD; the UI imports only types from the server). */
const VOLUME_HEAD = 'volume-head';

/** Oldest first, as `snapshotList` answers; the live head is not a snapshot. */
function snapshotsOf(engine: Engine | undefined): EngineSnapshotStatus[] {
  return Object.values(engine?.status?.snapshots ?? {})
    .filter((s) => s.name !== VOLUME_HEAD)
    .sort((a, b) => (a.created || '').localeCompare(b.created || '') || a.name.localeCompare(b.name));
}

type Pending = { kind: 'delete' | 'revert'; name: string } | undefined;

export function VolumeSnapshots({ volume, engine, now }: { volume: string; engine: Engine | undefined; now: number }) {
  const path = `/volumes/${encodeURIComponent(volume)}`;
  const [name, setName] = useState('');
  const create = useAction();
  const purge = useAction();
  const [pending, setPending] = useState<Pending>(undefined);
  const snapshots = snapshotsOf(engine);
  const head = engine?.status?.snapshots?.[VOLUME_HEAD];

  return (
    <Stack>
      <Title order={2} size="h3">Snapshots</Title>
      <Group align="flex-end">
        <TextInput label="Snapshot name" description="optional: a name is generated" value={name} onChange={(e) => setName(e.currentTarget.value)} w={260} />
        <Button loading={create.busy} onClick={() => void create.run(async () => {
          await v1('POST', `${path}?action=snapshotCreate`, name.trim() ? { name: name.trim() } : {});
          setName('');
        })}>Take snapshot</Button>
        {snapshots.some((s) => s.removed) && (
          <Button variant="default" loading={purge.busy} onClick={() => void purge.run(() => v1('POST', `${path}?action=snapshotPurge`, {}))}>Purge removed</Button>
        )}
      </Group>
      <ErrorAlert error={create.error} title="Snapshot not taken" />
      <ErrorAlert error={purge.error} title="Purge failed" />
      {snapshots.length === 0 ? (
        <Text size="sm" c="dimmed">No snapshots.</Text>
      ) : (
        <Table aria-label="snapshots">
          <Table.Thead>
            <Table.Tr><Table.Th>Name</Table.Th><Table.Th>Parent</Table.Th><Table.Th>Taken</Table.Th><Table.Th>Data</Table.Th><Table.Th>Kind</Table.Th><Table.Th>Actions</Table.Th></Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {snapshots.map((s) => (
              <Table.Tr key={s.name} data-testid={`snapshot-row-${s.name}`}>
                <Table.Td>
                  <Group gap="xs">
                    <Text size="sm">{s.name}</Text>
                    {head?.parent === s.name && <Badge color="blue" variant="light">latest</Badge>}
                    {s.removed && <Badge color="gray">removed</Badge>}
                  </Group>
                </Table.Td>
                <Table.Td>{s.parent || '—'}</Table.Td>
                <Table.Td>{s.created ? `${age(s.created, now)} ago` : '—'}</Table.Td>
                <Table.Td>{bytes(s.size)}</Table.Td>
                <Table.Td>{s.usercreated ? 'user' : 'system'}</Table.Td>
                <Table.Td>
                  {!s.removed && (
                    <Group gap="xs">
                      <Button size="xs" variant="default" aria-label={`Revert to ${s.name}`} onClick={() => setPending({ kind: 'revert', name: s.name })}>Revert</Button>
                      <Button size="xs" variant="default" color="red" aria-label={`Delete snapshot ${s.name}`} onClick={() => setPending({ kind: 'delete', name: s.name })}>Delete</Button>
                    </Group>
                  )}
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      )}
      <Confirm opened={pending?.kind === 'delete'} title={`Delete snapshot ${pending?.name ?? ''}?`} confirmLabel="Delete" onClose={() => setPending(undefined)}
        onConfirm={() => v1('POST', `${path}?action=snapshotDelete`, { name: pending?.name })}>
        A snapshot with children is marked removed and its space is freed by a purge.
      </Confirm>
      <Confirm opened={pending?.kind === 'revert'} title={`Revert ${volume} to ${pending?.name ?? ''}?`} confirmLabel="Revert" onClose={() => setPending(undefined)}
        onConfirm={() => v1('POST', `${path}?action=snapshotRevert`, { name: pending?.name })}>
        Everything written since that snapshot is discarded; the snapshots are kept. Detach the volume first (or attach
        it without a frontend): a revert under a mounted file system is refused.
      </Confirm>
    </Stack>
  );
}
