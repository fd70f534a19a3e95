// One volume: state, robustness, endpoint, conditions in words, replicas per node and disk, snapshots; attach,
// detach, replica count, expand (offline: while detached), delete.

import { Anchor, Badge, Button, Group, List, NumberInput, Select, SimpleGrid, Stack, Table, Text, TextInput, Title } from '@mantine/core';
import { useState } from 'react';
import { useEvents, useResources, v1, type Engine, type Node, type Replica, type Volume } from '../api/index.js';
import { Confirm, ErrorAlert, useAction, useDisks, useNow } from '../components/index.js';
import { age, bytes, conditionWords, robustnessColor, volumeStateColor } from '../format.js';
import { href } from '../route.js';
import { EventsTable } from './EventsTable.js';
import { VolumeSnapshots } from './VolumeSnapshots.js';

export function VolumeDetail({ name }: { name: string }) {
  const volumes = useResources<Volume>('volumes');
  const nodes = useResources<Node>('nodes') ?? [];
  const replicas = (useResources<Replica>('replicas') ?? []).filter((r) => r.spec?.volumeName === name);
  const engines = (useResources<Engine>('engines') ?? []).filter((e) => e.spec?.volumeName === name);
  const events = useEvents('Volume', name);
  const disks = useDisks();
  const now = useNow();
  const [node, setNode] = useState<string | null>(null);
  const [count, setCount] = useState<number | string>('');
  const [newSize, setNewSize] = useState('');
  const [deleting, setDeleting] = useState(false);
  const attach = useAction();
  const scale = useAction();
  const expand = useAction();
  const v = volumes?.find((x) => x.metadata.name === name);
  if (volumes === undefined) return <Text>Loading…</Text>;
  if (!v) return <Stack><Title order={1} size="h2">{name}</Title><Text>This volume does not exist (any more). <Anchor href={href.volumes}>All volumes</Anchor></Text></Stack>;
  const modes = engines[0]?.status?.replicaModeMap ?? {};
  const attachedTo = v.status?.currentNodeID || v.spec?.nodeID || '';
  const path = `/volumes/${encodeURIComponent(name)}`;

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">Volume {name}</Title>
        <Button color="red" onClick={() => setDeleting(true)}>Delete</Button>
      </Group>
      <Group>
        <Badge size="lg" color={volumeStateColor(v.status?.state)} data-testid="volume-state">{v.status?.state || 'creating'}</Badge>
        <Badge size="lg" color={robustnessColor(v.status?.robustness)} data-testid="volume-robustness">{v.status?.robustness || 'unknown'}</Badge>
      </Group>
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <Table variant="vertical" aria-label="properties">
          <Table.Tbody>
            <Table.Tr><Table.Th>Size</Table.Th><Table.Td>{bytes(v.spec?.size)}</Table.Td></Table.Tr>
            <Table.Tr><Table.Th>Backing image</Table.Th><Table.Td>{v.spec?.backingImage ? <Anchor href={href.backingImage(v.spec.backingImage)}>{v.spec.backingImage}</Anchor> : 'none'}</Table.Td></Table.Tr>
            <Table.Tr><Table.Th>Frontend</Table.Th><Table.Td>{v.spec?.frontend || 'blockdev'}</Table.Td></Table.Tr>
            <Table.Tr><Table.Th>Attached to</Table.Th><Table.Td>{attachedTo || 'not attached'}</Table.Td></Table.Tr>
            <Table.Tr><Table.Th>Endpoint</Table.Th><Table.Td><Text size="sm" style={{ wordBreak: 'break-all' }} data-testid="volume-endpoint">{v.status?.endpoint || '—'}</Text></Table.Td></Table.Tr>
            <Table.Tr><Table.Th>Created</Table.Th><Table.Td>{age(v.metadata.creationTimestamp, now)} ago</Table.Td></Table.Tr>
          </Table.Tbody>
        </Table>
        <Stack>
          {attachedTo ? (
            <Group align="flex-end">
              <Text>Attached to {attachedTo}</Text>
              <Button variant="default" loading={attach.busy} onClick={() => void attach.run(() => v1('POST', `${path}?action=detach`, {}))}>Detach</Button>
            </Group>
          ) : (
            <Group align="flex-end">
              <Select label="Node" placeholder="choose a node" value={node} onChange={setNode} data={nodes.map((n) => n.metadata.name ?? '')} w={200} />
              <Button disabled={!node} loading={attach.busy} onClick={() => void attach.run(() => v1('POST', `${path}?action=attach`, { hostId: node }))}>Attach</Button>
            </Group>
          )}
          <ErrorAlert error={attach.error} />
          <Group align="flex-end">
            <NumberInput label="Number of replicas" min={1} max={20} value={count === '' ? (v.spec?.numberOfReplicas ?? 3) : count} onChange={setCount} w={200} />
            <Button variant="default" loading={scale.busy} onClick={() => void scale.run(() => v1('POST', `${path}?action=updateReplicaCount`, { replicaCount: Number(count === '' ? v.spec?.numberOfReplicas : count) }))}>Apply</Button>
          </Group>
          <ErrorAlert error={scale.error} />
          <Group align="flex-end">
            <TextInput label="New size" placeholder="e.g. 4Gi" value={newSize} onChange={(e) => setNewSize(e.currentTarget.value)} w={200}
              description={attachedTo ? 'detach the volume to expand it' : 'bytes, or a quantity such as 4Gi'} />
            <Button variant="default" disabled={!!attachedTo || newSize.trim() === ''} loading={expand.busy}
              onClick={() => void expand.run(async () => { await v1('POST', `${path}?action=expand`, { size: newSize.trim() }); setNewSize(''); })}>Expand</Button>
          </Group>
          <ErrorAlert error={expand.error} />
        </Stack>
      </SimpleGrid>
      <Title order={2} size="h3">Conditions</Title>
      <List aria-label="conditions">
        {(v.status?.conditions ?? []).map((c) => <List.Item key={c.type} data-condition={c.type}>{conditionWords(c)}</List.Item>)}
        {replicas.flatMap((r) => (r.status?.conditions ?? []).filter((c) => c.type === 'WaitForBackingImage' && c.status === 'True').map((c) => (
          <List.Item key={`${r.metadata.name ?? ''}-${c.type}`} data-condition={c.type}>Replica {r.metadata.name}: {conditionWords(c)}</List.Item>
        )))}
      </List>
      <Title order={2} size="h3">Replicas</Title>
      <Table aria-label="replicas">
        <Table.Thead>
          <Table.Tr><Table.Th>Name</Table.Th><Table.Th>Node</Table.Th><Table.Th>Disk</Table.Th><Table.Th>Mode</Table.Th><Table.Th>Process</Table.Th><Table.Th>Failed</Table.Th></Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {replicas.map((r) => {
            const rn = r.metadata.name ?? '';
            const d = disks.get(r.spec?.diskID ?? '');
            const mode = modes[rn] ?? '';
            return (
              <Table.Tr key={rn}>
                <Table.Td>{rn}</Table.Td>
                <Table.Td>{r.spec?.nodeID}</Table.Td>
                <Table.Td>{d ? `${d.name} ${d.path}` : r.spec?.diskPath}</Table.Td>
                <Table.Td><Badge color={mode === 'RW' ? 'green' : mode === 'WO' ? 'blue' : mode === 'ERR' ? 'red' : 'gray'}>{mode || '—'}</Badge></Table.Td>
                <Table.Td>{r.status?.currentState || 'stopped'}</Table.Td>
                <Table.Td>{r.spec?.failedAt ? `${age(r.spec.failedAt, now)} ago` : '—'}</Table.Td>
              </Table.Tr>
            );
          })}
        </Table.Tbody>
      </Table>
      <VolumeSnapshots volume={name} engine={engines[0]} now={now} />
      <Title order={2} size="h3">Events</Title>
      <EventsTable events={events} now={now} />
      <Confirm opened={deleting} title={`Delete volume ${name}?`} confirmLabel="Delete" onClose={() => setDeleting(false)}
        onConfirm={async () => {
          await v1('DELETE', path);
          window.location.hash = href.volumes;
        }}>
        Its replicas and their data are removed.
      </Confirm>
    </Stack>
  );
}
