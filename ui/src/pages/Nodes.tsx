// Nodes and their disks: readiness, space, scheduling (toggled here), and the backing-image copies on each disk.

import { Badge, Card, Group, Progress, Stack, Switch, Table, Text, Title } from '@mantine/core';
import { useState } from 'react';
import { useResources, v1, type BackingImage, type Node } from '../api/index.js';
import { ErrorAlert, copyEntries } from '../components/index.js';
import { bytes, conditionWords, copyColor } from '../format.js';

function NodeCard({ node, images }: { node: Node; images: BackingImage[] }) {
  const [error, setError] = useState<unknown>(undefined);
  const name = node.metadata.name ?? '';
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  const call = async (fn: () => Promise<unknown>) => {
    setError(undefined);
    try {
      await fn();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <Card withBorder data-testid={`node-${name}`}>
      <Stack gap="sm">
        <Group justify="space-between">
          <Group>
            <Title order={2} size="h3">{name}</Title>
            <Badge color={ready?.status === 'True' ? 'green' : 'red'} data-testid="node-ready">{ready?.status === 'True' ? 'Ready' : 'Not ready'}</Badge>
          </Group>
          <Switch label={`Allow scheduling on ${name}`} checked={node.spec?.allowScheduling ?? true}
            onChange={(e) => { const on = e.currentTarget.checked; void call(() => v1('PUT', `/nodes/${encodeURIComponent(name)}`, { allowScheduling: on })); }} />
        </Group>
        {ready && ready.status !== 'True' && <Text size="sm" c="red">{conditionWords(ready)}</Text>}
        <ErrorAlert error={error} />
        <Table aria-label={`disks of ${name}`}>
          <Table.Thead>
            <Table.Tr><Table.Th>Disk</Table.Th><Table.Th>Space</Table.Th><Table.Th>Scheduled</Table.Th><Table.Th>Scheduling</Table.Th><Table.Th>Backing-image copies</Table.Th></Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {Object.entries(node.spec?.disks ?? {}).map(([disk, spec]) => {
              const st = node.status?.diskStatus?.[disk];
              const max = st?.storageMaximum ?? 0;
              const used = max - (st?.storageAvailable ?? 0);
              const copies = images.flatMap((bi) => copyEntries(bi).filter(([uuid]) => uuid === st?.diskUUID).map(([, f]) => ({ name: bi.metadata.name ?? '', f })));
              return (
                <Table.Tr key={disk}>
                  <Table.Td><Text size="sm" fw={500}>{disk}</Text><Text size="xs" c="dimmed">{spec.path}</Text></Table.Td>
                  <Table.Td miw={200}>
                    <Progress value={max ? (used / max) * 100 : 0} aria-label={`space used on ${name} ${disk}`} />
                    <Text size="xs">{bytes(st?.storageAvailable)} free of {bytes(max)}</Text>
                  </Table.Td>
                  <Table.Td>{bytes(st?.storageScheduled)}</Table.Td>
                  <Table.Td>
                    <Switch aria-label={`Allow scheduling on disk ${disk} of ${name}`} checked={spec.allowScheduling ?? true}
                      onChange={(e) => { const on = e.currentTarget.checked; void call(() => v1('POST', `/nodes/${encodeURIComponent(name)}?action=diskUpdate`, { disks: { [disk]: { allowScheduling: on } } })); }} />
                  </Table.Td>
                  <Table.Td>
                    <Group gap={4}>
                      {copies.length === 0 ? <Text size="sm" c="dimmed">none</Text> : copies.map((c) => (
                        <Badge key={c.name} color={copyColor(c.f.state)} tt="none">{c.name}: {c.f.state || 'not started'}</Badge>
                      ))}
                    </Group>
                  </Table.Td>
                </Table.Tr>
              );
            })}
          </Table.Tbody>
        </Table>
      </Stack>
    </Card>
  );
}

export function Nodes() {
  const nodes = useResources<Node>('nodes');
  const images = useResources<BackingImage>('backingimages') ?? [];
  return (
    <Stack>
      <Title order={1} size="h2">Nodes and disks</Title>
      {nodes === undefined ? <Text>Loading…</Text> : nodes.map((n) => <NodeCard key={n.metadata.name} node={n} images={images} />)}
    </Stack>
  );
}
