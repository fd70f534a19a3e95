// Backing images: the list (source, sizes, checksum, per-disk copies, min copies, age), filter and sort, bulk
// download, create, and the uploads this browser has in flight or left unfinished.

import { Anchor, Button, Checkbox, Code, Group, Select, Stack, Table, Text, TextInput, Title } from '@mantine/core';
import { useMemo, useState } from 'react';
import { useResources, type BackingImage } from '../api/index.js';
import { DiskMap, ErrorAlert, SortHeader, copyEntries, useDisks, useNow, useSort } from '../components/index.js';
import { age, bytes } from '../format.js';
import { href } from '../route.js';
import { downloadImages } from '../transfer/index.js';
import { CreateBackingImage } from './CreateBackingImage.js';
import { Uploads } from './Uploads.js';

type Col = 'name' | 'source' | 'size' | 'virtualSize' | 'copies' | 'age';

export function sourceText(bi: BackingImage): string {
  const p = bi.spec?.sourceParameters ?? {};
  switch (bi.spec?.sourceType) {
    case 'download':
      return p['url'] ?? '';
    case 'export-from-volume':
      return `volume ${p['volume-name'] ?? ''}`;
    case 'upload':
      return 'uploaded file';
    default:
      return Object.entries(p).map(([k, v]) => `${k}=${v}`).join(' ');
  }
}

/** The worst state among the copies, for the state filter: an image is "ready" when every copy is. */
function overall(bi: BackingImage): string {
  const states = copyEntries(bi).map(([, f]) => f.state || 'pending');
  if (states.length === 0) return 'pending';
  for (const s of ['failed', 'unknown', 'in-progress', 'ready-for-transfer', 'starting', 'pending']) if (states.includes(s)) return s;
  return 'ready';
}

export function BackingImages() {
  const images = useResources<BackingImage>('backingimages');
  const disks = useDisks();
  const now = useNow();
  const [query, setQuery] = useState('');
  const [state, setState] = useState<string | null>('all');
  const { sort, toggle } = useSort<Col>('name');
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [creating, setCreating] = useState(false);
  const [downloadError, setDownloadError] = useState<unknown>(undefined);
  const [downloading, setDownloading] = useState(false);

  const rows = useMemo(() => {
    const q = query.trim().toLowerCase();
    const list = (images ?? []).filter((bi) => {
      if (state && state !== 'all' && overall(bi) !== state) return false;
      if (!q) return true;
      return [bi.metadata.name ?? '', bi.spec?.sourceType ?? '', sourceText(bi), bi.status?.checksum ?? ''].some((s) => s.toLowerCase().includes(q));
    });
    const key = (bi: BackingImage): string | number => {
      switch (sort.key) {
        case 'source': return `${bi.spec?.sourceType ?? ''} ${sourceText(bi)}`;
        case 'size': return bi.status?.size ?? 0;
        case 'virtualSize': return bi.status?.virtualSize ?? 0;
        case 'copies': return copyEntries(bi).filter(([, f]) => f.state === 'ready').length;
        case 'age': return -Date.parse(bi.metadata.creationTimestamp ?? '0');
        default: return bi.metadata.name ?? '';
      }
    };
    list.sort((a, b) => {
      const ka = key(a);
      const kb = key(b);
      const c = typeof ka === 'number' && typeof kb === 'number' ? ka - kb : String(ka).localeCompare(String(kb));
      return sort.desc ? -c : c;
    });
    return list;
  }, [images, query, state, sort]);

  const toggleRow = (name: string) => setSelected((s) => {
    const n = new Set(s);
    if (n.has(name)) n.delete(name);
    else n.add(name);
    return n;
  });
  const download = async () => {
    setDownloading(true);
    setDownloadError(undefined);
    const failed = await downloadImages([...selected]);
    setDownloading(false);
    if (failed.size > 0) setDownloadError(new Error([...failed].map(([n, m]) => `${n}: ${m}`).join('; ')));
  };

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">Backing images</Title>
        <Group>
          <Button variant="default" disabled={selected.size === 0} loading={downloading} onClick={() => void download()}>
            Download selected ({selected.size})
          </Button>
          <Button onClick={() => setCreating(true)}>Create backing image</Button>
        </Group>
      </Group>
      <Uploads />
      <Group>
        <TextInput label="Filter" placeholder="name, source, URL or checksum" value={query} onChange={(e) => setQuery(e.currentTarget.value)} w={320} />
        <Select
          label="State"
          value={state}
          onChange={setState}
          data={['all', 'ready', 'in-progress', 'ready-for-transfer', 'pending', 'starting', 'failed', 'unknown']}
          w={200}
          allowDeselect={false}
        />
      </Group>
      <ErrorAlert error={downloadError} title="Download failed" />
      {images === undefined ? <Text>Loading…</Text> : (
        <Table striped highlightOnHover aria-label="backing images">
          <Table.Thead>
            <Table.Tr>
              <Table.Th><span className="visually-hidden">Select</span></Table.Th>
              <SortHeader label="Name" column="name" sort={sort} toggle={toggle} />
              <SortHeader label="Source" column="source" sort={sort} toggle={toggle} />
              <SortHeader label="Size" column="size" sort={sort} toggle={toggle} />
              <SortHeader label="Virtual size" column="virtualSize" sort={sort} toggle={toggle} />
              <Table.Th>Checksum</Table.Th>
              <SortHeader label="Copies" column="copies" sort={sort} toggle={toggle} />
              <Table.Th>Min copies</Table.Th>
              <SortHeader label="Age" column="age" sort={sort} toggle={toggle} />
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {rows.length === 0 && (
              <Table.Tr><Table.Td colSpan={9}><Text c="dimmed">No backing images{query || state !== 'all' ? ' match the filter' : ''}.</Text></Table.Td></Table.Tr>
            )}
            {rows.map((bi) => {
              const name = bi.metadata.name ?? '';
              return (
                <Table.Tr key={name} data-testid={`bi-row-${name}`}>
                  <Table.Td><Checkbox aria-label={`Select ${name}`} checked={selected.has(name)} onChange={() => toggleRow(name)} /></Table.Td>
                  <Table.Td>
                    <Anchor href={href.backingImage(name)}>{name}</Anchor>
                    {bi.metadata.deletionTimestamp && <Text size="xs" c="red">deleting</Text>}
                  </Table.Td>
                  <Table.Td>
                    <Text size="sm" fw={500}>{bi.spec?.sourceType}</Text>
                    <Text size="xs" c="dimmed" style={{ wordBreak: 'break-all' }}>{sourceText(bi)}</Text>
                  </Table.Td>
                  <Table.Td>{bytes(bi.status?.size)}</Table.Td>
                  <Table.Td>{bytes(bi.status?.virtualSize)}</Table.Td>
                  <Table.Td>
                    {bi.status?.checksum ? <Code title={bi.status.checksum}>{bi.status.checksum.slice(0, 12)}…</Code> : <Text size="sm" c="dimmed">not yet</Text>}
                  </Table.Td>
                  <Table.Td><DiskMap bi={bi} disks={disks} /></Table.Td>
                  <Table.Td>{bi.spec?.minNumberOfCopies ?? 1}</Table.Td>
                  <Table.Td>{age(bi.metadata.creationTimestamp, now)}</Table.Td>
                </Table.Tr>
              );
            })}
          </Table.Tbody>
        </Table>
      )}
      <CreateBackingImage opened={creating} onClose={() => setCreating(false)} />
    </Stack>
  );
}
