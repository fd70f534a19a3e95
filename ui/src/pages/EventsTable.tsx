// Events about one object (newest first).

import { Table, Text } from '@mantine/core';
import type { CoreEvent } from '../api/index.js';
import { age } from '../format.js';

export function EventsTable({ events, now }: { events: CoreEvent[] | undefined; now: number }) {
  if (!events?.length) return <Text size="sm" c="dimmed">No events.</Text>;
  return (
    <Table aria-label="events">
      <Table.Thead>
        <Table.Tr><Table.Th>Type</Table.Th><Table.Th>Reason</Table.Th><Table.Th>Message</Table.Th><Table.Th>Count</Table.Th><Table.Th>Last seen</Table.Th></Table.Tr>
      </Table.Thead>
      <Table.Tbody>
        {events.slice(0, 50).map((e) => (
          <Table.Tr key={e.metadata.name}>
            <Table.Td><Text size="sm" fw={e.type === 'Warning' ? 700 : 400} c={e.type === 'Warning' ? 'red.9' : 'black'}>{e.type ?? 'Normal'}</Text></Table.Td>
            <Table.Td>{e.reason}</Table.Td>
            <Table.Td><Text size="sm">{e.message}</Text></Table.Td>
            <Table.Td>{e.count ?? 1}</Table.Td>
            <Table.Td>{age(e.lastTimestamp ?? e.metadata.creationTimestamp, now)} ago</Table.Td>
          </Table.Tr>
        ))}
      </Table.Tbody>
    </Table>
  );
}
