// One backing image: source and checksums, every disk's copy (state, progress with rate and ETA, message), the data
// source preparing the first file, events; update min copies, clean up copies, download, delete.

import { Anchor, Badge, Button, Checkbox, Code, Group, Modal, NumberInput, Progress, SimpleGrid, Stack, Table, Text, Title } from '@mantine/core';
import { useQueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { useEvents, useResources, v1, WatchHub, type BackingImage, type BackingImageDataSource, type Replica } from '../api/index.js';
import { Confirm, ErrorAlert, copyEntries, diskLabel, useAction, useDisks, useNow, type DiskRef } from '../components/index.js';
import { age, bytes, copyColor, duration, rate } from '../format.js';
import { href } from '../route.js';
import { downloadImage } from '../transfer/index.js';
import { sourceText } from './BackingImages.js';
import { EventsTable } from './EventsTable.js';

/**
 * Rate and ETA of copies, estimated from how their progress percentage moves between watch events: it follows
 * the watched list in the query cache (a subscription, outside rendering) and keeps the last sample per disk.
 */
function useCopyRates(name: string): Map<string, { rate: number; eta: number }> {
  const qc = useQueryClient();
  const [rates, setRates] = useState(() => new Map<string, { rate: number; eta: number }>());
  useEffect(() => {
    const key = WatchHub.queryKey('backingimages', '');
    const tracker = new Map<string, { t: number; p: number; rate: number }>();
    const observe = () => {
      const bi = qc.getQueryData<BackingImage[]>(key)?.find((b) => b.metadata.name === name);
      if (!bi) return;
      const size = bi.status?.size ?? 0;
      const now = performance.now();
      const out = new Map<string, { rate: number; eta: number }>();
      for (const [disk, f] of copyEntries(bi)) {
        const prev = tracker.get(disk);
        if (f.state !== 'in-progress') {
          tracker.delete(disk);
          continue;
        }
        if (!prev || f.progress < prev.p) tracker.set(disk, { t: now, p: f.progress, rate: 0 });
        else if (f.progress > prev.p && now - prev.t > 500) {
          const r = (((f.progress - prev.p) / 100) * size * 1000) / (now - prev.t);
          tracker.set(disk, { t: now, p: f.progress, rate: prev.rate ? (prev.rate + r) / 2 : r });
        }
        const cur = tracker.get(disk);
        if (cur?.rate) out.set(disk, { rate: cur.rate, eta: (((100 - f.progress) / 100) * size) / cur.rate });
      }
      setRates(out);
    };
    return qc.getQueryCache().subscribe((e) => {
      if (e.type === 'updated' && JSON.stringify(e.query.queryKey) === JSON.stringify(key)) observe();
    });
  }, [qc, name]);
  return rates;
}

function Cleanup({ bi, disks, replicas, opened, onClose }: { bi: BackingImage; disks: Map<string, DiskRef>; replicas: Replica[]; opened: boolean; onClose: () => void }) {
  const [chosen, setChosen] = useState<string[]>([]);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const name = bi.metadata.name ?? '';
  const close = () => {
    setChosen([]);
    setError(undefined);
    onClose();
  };
  const run = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await v1('POST', `/backingimages/${encodeURIComponent(name)}?action=backingImageCleanup`, { disks: chosen });
      close();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal opened={opened} onClose={close} closeButtonProps={{ 'aria-label': 'Close' }} title={`Clean up copies of ${name}`}>
      <Stack>
        <Text size="sm">Choose the disks to remove the copy from. A disk where a replica uses the image is refused.</Text>
        <Checkbox.Group value={chosen} onChange={setChosen} label="Disks">
          <Stack gap="xs" mt="xs">
            {copyEntries(bi).map(([uuid, f]) => {
              const users = replicas.filter((r) => r.spec?.diskID === uuid).map((r) => `${r.spec?.volumeName ?? '?'} (${r.metadata.name ?? ''})`);
              return (
                <Checkbox key={uuid} value={uuid} label={`${diskLabel(disks, uuid)} — ${f.state || 'not started'}`}
                  description={users.length ? `used by ${users.join(', ')}` : undefined} />
              );
            })}
          </Stack>
        </Checkbox.Group>
        <ErrorAlert error={error} />
        <Group justify="flex-end">
          <Button variant="default" onClick={close}>Cancel</Button>
          <Button color="red" disabled={chosen.length === 0} loading={busy} onClick={() => void run()}>Clean up</Button>
        </Group>
      </Stack>
    </Modal>
  );
}

function MinCopies({ bi }: { bi: BackingImage }) {
  const [value, setValue] = useState<number | string>(bi.spec?.minNumberOfCopies ?? 1);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const save = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await v1('POST', `/backingimages/${encodeURIComponent(bi.metadata.name ?? '')}?action=updateMinNumberOfCopies`, { minNumberOfCopies: Number(value) });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Stack gap={4}>
      <Group align="flex-end">
        <NumberInput label="Minimum number of copies" min={1} max={20} value={value} onChange={setValue} w={220} />
        <Button variant="default" loading={busy} onClick={() => void save()}>Update</Button>
      </Group>
      <ErrorAlert error={error} />
    </Stack>
  );
}

export function BackingImageDetail({ name }: { name: string }) {
  const images = useResources<BackingImage>('backingimages');
  const sources = useResources<BackingImageDataSource>('backingimagedatasources');
  const replicas = (useResources<Replica>('replicas') ?? []).filter((r) => r.spec?.backingImage === name);
  const events = useEvents('BackingImage', name);
  const disks = useDisks();
  const now = useNow();
  const bi = images?.find((b) => b.metadata.name === name);
  const rates = useCopyRates(name);
  const [cleanup, setCleanup] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [downloadError, setDownloadError] = useState<unknown>(undefined);
  const [downloading, setDownloading] = useState(false);
  const scrubbing = useAction();

  if (images === undefined) return <Text>Loading…</Text>;
  if (!bi) return <Stack><Title order={1} size="h2">{name}</Title><Text>This backing image does not exist (any more). <Anchor href={href.backingImages}>All backing images</Anchor></Text></Stack>;
  const ds = sources?.find((s) => s.metadata.name === name);
  const users = [...new Set(replicas.map((r) => r.spec?.volumeName ?? ''))].filter(Boolean);
  const download = async () => {
    setDownloading(true);
    setDownloadError(undefined);
    try {
      await downloadImage(name);
    } catch (err) {
      setDownloadError(err);
    } finally {
      setDownloading(false);
    }
  };

  // Every ready copy is read again now and checked against the checksum; the copies table shows when it is done.
  const scrub = () => scrubbing.run(() => v1('POST', `/backingimages/${encodeURIComponent(name)}?action=scrub`, {}));

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">Backing image {name}</Title>
        <Group>
          <Button variant="default" loading={downloading} onClick={() => void download()}>Download</Button>
          <Button variant="default" loading={scrubbing.busy} onClick={() => void scrub()} title="Read every ready copy again and check it against the checksum; changed chunks are repaired from another copy">Scrub now</Button>
          <Button variant="default" onClick={() => setCleanup(true)}>Clean up copies</Button>
          <Button color="red" onClick={() => setDeleting(true)}>Delete</Button>
        </Group>
      </Group>
      <ErrorAlert error={downloadError} title="Download failed" />
      <ErrorAlert error={scrubbing.error} title="Scrub not started" />
      {bi.metadata.deletionTimestamp && <Badge color="red">being deleted</Badge>}
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        <Table variant="vertical" aria-label="properties">
          <Table.Tbody>
            <Table.Tr><Table.Th>Source</Table.Th><Table.Td>{bi.spec?.sourceType} <Text span size="sm" style={{ wordBreak: 'break-all' }}>{sourceText(bi)}</Text></Table.Td></Table.Tr>
            <Table.Tr><Table.Th>Size</Table.Th><Table.Td>{bytes(bi.status?.size)}</Table.Td></Table.Tr>
            <Table.Tr><Table.Th>Virtual size</Table.Th><Table.Td>{bytes(bi.status?.virtualSize)}</Table.Td></Table.Tr>
            <Table.Tr><Table.Th>Expected checksum</Table.Th><Table.Td><Code style={{ wordBreak: 'break-all' }}>{bi.spec?.checksum || 'none given'}</Code></Table.Td></Table.Tr>
            <Table.Tr><Table.Th>Current checksum</Table.Th><Table.Td><Code style={{ wordBreak: 'break-all' }}>{bi.status?.checksum || 'not computed yet'}</Code></Table.Td></Table.Tr>
            <Table.Tr><Table.Th>Used by volumes</Table.Th><Table.Td>{users.length ? users.map((v) => <Anchor key={v} href={href.volume(v)} mr="xs">{v}</Anchor>) : 'none'}</Table.Td></Table.Tr>
            <Table.Tr><Table.Th>Created</Table.Th><Table.Td>{age(bi.metadata.creationTimestamp, now)} ago</Table.Td></Table.Tr>
          </Table.Tbody>
        </Table>
        <Stack>
          <MinCopies key={bi.spec?.minNumberOfCopies ?? 1} bi={bi} />
          {ds && (
            <Stack gap={4} aria-label="data source">
              <Text fw={600}>First file ({ds.spec?.sourceType ?? bi.spec?.sourceType}) on {diskLabel(disks, ds.spec?.diskUUID ?? '')}</Text>
              <Group gap="xs"><Badge color={copyColor(ds.status?.currentState)}>{ds.status?.currentState || 'pending'}</Badge><Text size="sm">{ds.status?.message}</Text></Group>
              <Progress value={ds.status?.progress ?? 0} aria-label="first file progress" />
            </Stack>
          )}
        </Stack>
      </SimpleGrid>
      <Title order={2} size="h3">Copies</Title>
      <Table aria-label="copies per disk">
        <Table.Thead>
          <Table.Tr><Table.Th>Node</Table.Th><Table.Th>Disk</Table.Th><Table.Th>State</Table.Th><Table.Th>Progress</Table.Th><Table.Th>Message</Table.Th><Table.Th>Since</Table.Th><Table.Th>Verified</Table.Th></Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {copyEntries(bi).map(([uuid, f]) => {
            const d = disks.get(uuid);
            const r = rates.get(uuid);
            const since = bi.status?.diskFileStatusMap?.[uuid]?.lastStateTransitionTime;
            return (
              <Table.Tr key={uuid} data-testid="copy-row" data-disk={uuid} data-state={f.state}>
                <Table.Td>{d?.node ?? '?'}</Table.Td>
                <Table.Td><Text size="sm">{d ? `${d.name} ${d.path}` : uuid}</Text></Table.Td>
                <Table.Td><Badge color={copyColor(f.state)}>{f.state || 'not started'}</Badge></Table.Td>
                <Table.Td miw={180}>
                  <Progress value={f.progress} color={copyColor(f.state)} aria-label={`progress on ${d?.node ?? uuid}`} />
                  <Text size="xs">{f.progress}%{r ? ` · ${rate(r.rate)} · ETA ${duration(r.eta)}` : ''}</Text>
                </Table.Td>
                <Table.Td><Text size="sm">{f.message}</Text></Table.Td>
                <Table.Td>{since ? `${age(since, now)} ago` : '—'}</Table.Td>
                <Table.Td data-testid="verified">{f.verifiedAt ? `${age(f.verifiedAt, now)} ago` : '—'}</Table.Td>
              </Table.Tr>
            );
          })}
        </Table.Tbody>
      </Table>
      <Title order={2} size="h3">Events</Title>
      <EventsTable events={events} now={now} />
      <Cleanup bi={bi} disks={disks} replicas={replicas} opened={cleanup} onClose={() => setCleanup(false)} />
      <Confirm opened={deleting} title={`Delete backing image ${name}?`} confirmLabel="Delete" onClose={() => setDeleting(false)}
        onConfirm={async () => {
          await v1('DELETE', `/backingimages/${encodeURIComponent(name)}`);
          window.location.hash = href.backingImages;
        }}>
        Every copy on every disk is removed. Deleting is refused while volumes use the image.
      </Confirm>
    </Stack>
  );
}
