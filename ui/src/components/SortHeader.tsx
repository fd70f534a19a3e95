// Sortable table headers: a button per column (keyboard reachable) and aria-sort on the header cell.

import { Table, UnstyledButton } from '@mantine/core';
import { useState } from 'react';

export interface SortState<K extends string> {
  key: K;
  desc: boolean;
}

export function useSort<K extends string>(initial: K) {
  const [sort, setSort] = useState<SortState<K>>({ key: initial, desc: false });
  const toggle = (key: K) => setSort((s) => (s.key === key ? { key, desc: !s.desc } : { key, desc: false }));
  return { sort, toggle };
}

export function SortHeader<K extends string>({ label, column, sort, toggle }: { label: string; column: K; sort: SortState<K>; toggle: (k: K) => void }) {
  const active = sort.key === column;
  return (
    <Table.Th aria-sort={active ? (sort.desc ? 'descending' : 'ascending') : 'none'}>
      <UnstyledButton onClick={() => toggle(column)} fw={600} fz="sm">
        {label} {active ? (sort.desc ? '▼' : '▲') : ''}
      </UnstyledButton>
    </Table.Th>
  );
}
