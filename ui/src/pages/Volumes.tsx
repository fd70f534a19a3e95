// Volumes: state, robustness, size, replicas, where attached and served, and creation from a ready backing image.

import { Anchor, Badge, Button, Group, Modal, NumberInput, Select, Stack, Table, Text, TextInput, Title } from '@mantine/core';
import { useState } from 'react';
import { useResources, v1, type BackingImage, type Replica, type Volume } from '../api/index.js';
import { ErrorAlert, copyEntries } from '../components/index.js';
import { bytes, parseSize, robustnessColor, volumeStateColor } from '../format.js';
import { href } from '../route.js';

/** Only images with a ready copy and not being deleted can back a new volume (Longhorn #7293). */
export function readyImages(images: BackingImage[] | undefined): BackingImage[] {
  return (images ?? []).filter((bi) => !bi.metadata.deletionTimestamp && copyEntries(bi).some(([, f]) => f.state === 'ready'));
}

function CreateVolume({ opened, onClose }: { opened: boolean; onClose: () => void }) {
  const images = readyImages(useResources<BackingImage>('backingimages'));
  const [name, setName] = useState('');
  const [image, setImage] = useState<string | null>(null);
  const [size, setSize] = useState('');
  const [replicas, setReplicas] = useState<number | string>(3);
  const [frontend, setFrontend] = useState<string | null>('blockdev');
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const pickImage = (n: string | null) => {
    setImage(n);
    const vs = images.find((b) => b.metadata.name === n)?.status?.virtualSize;
    if (vs) setSize(String(vs));
  };
  const close = () => {
    setError(undefined);
    setName('');
    setImage(null);
    setSize('');
    onClose();
  };
  const submit = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const bytesSize = parseSize(size);
      if (bytesSize === undefined) throw new Error(`"${size}" is not a size: give bytes or a quantity such as 2Gi`);
      await v1('POST', '/volumes', { name, size: String(bytesSize), numberOfReplicas: Number(replicas), backingImage: image ?? '', frontend: frontend ?? 'blockdev' });
      close();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal opened={opened} onClose={close} closeButtonProps={{ 'aria-label': 'Close' }} title="Create volume">
      <form onSubmit={(e) => { e.preventDefault(); void submit(); }}>
        <Stack>
          <TextInput label="Name" required value={name} onChange={(e) => setName(e.currentTarget.value)} />
          <Select label="Backing image" placeholder="none" clearable value={image} onChange={pickImage}
            description="Only images with a ready copy are offered."
            data={images.map((b) => ({ value: b.metadata.name ?? '', label: `${b.metadata.name ?? ''} (${bytes(b.status?.virtualSize)})` }))} />
          <TextInput label="Size" required value={size} onChange={(e) => setSize(e.currentTarget.value)}
            description={size && parseSize(size) ? `${bytes(parseSize(size))}; defaults to the image's virtual size` : "bytes or a quantity (2Gi); defaults to the image's virtual size"} />
          <NumberInput label="Replicas" min={1} max={20} value={replicas} onChange={setReplicas} />
          <Select label="Frontend" value={frontend} onChange={setFrontend} allowDeselect={false}
            data={[{ value: 'blockdev', label: 'block device' }, { value: 'nbd', label: 'NBD export' }]} />
          <ErrorAlert error={error} />
          <Group justify="flex-end">
            <Button variant="default" onClick={close}>Cancel</Button>
            <Button type="submit" loading={busy}>Create</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

export function Volumes() {
  const volumes = useResources<Volume>('volumes');
  const replicas = useResources<Replica>('replicas') ?? [];
  const [creating, setCreating] = useState(false);
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">Volumes</Title>
        <Button onClick={() => setCreating(true)}>Create volume</Button>
      </Group>
      {volumes === undefined ? <Text>Loading…</Text> : (
        <Table striped highlightOnHover aria-label="volumes">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Name</Table.Th><Table.Th>State</Table.Th><Table.Th>Robustness</Table.Th><Table.Th>Size</Table.Th>
              <Table.Th>Replicas</Table.Th><Table.Th>Node</Table.Th><Table.Th>Backing image</Table.Th><Table.Th>Endpoint</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {volumes.length === 0 && <Table.Tr><Table.Td colSpan={8}><Text c="dimmed">No volumes.</Text></Table.Td></Table.Tr>}
            {volumes.map((v) => {
              const name = v.metadata.name ?? '';
              const mine = replicas.filter((r) => r.spec?.volumeName === name);
              const running = mine.filter((r) => r.status?.currentState === 'running').length;
              return (
                <Table.Tr key={name} data-testid={`volume-row-${name}`}>
                  <Table.Td><Anchor href={href.volume(name)}>{name}</Anchor></Table.Td>
                  <Table.Td><Badge color={volumeStateColor(v.status?.state)} data-testid="volume-state">{v.status?.state || 'creating'}</Badge></Table.Td>
                  <Table.Td><Badge color={robustnessColor(v.status?.robustness)} data-testid="volume-robustness">{v.status?.robustness || 'unknown'}</Badge></Table.Td>
                  <Table.Td>{bytes(v.spec?.size)}</Table.Td>
                  <Table.Td>{running}/{v.spec?.numberOfReplicas ?? mine.length} running</Table.Td>
                  <Table.Td>{v.status?.currentNodeID || v.spec?.nodeID || '—'}</Table.Td>
                  <Table.Td>{v.spec?.backingImage ? <Anchor href={href.backingImage(v.spec.backingImage)}>{v.spec.backingImage}</Anchor> : '—'}</Table.Td>
                  <Table.Td><Text size="xs" style={{ wordBreak: 'break-all' }}>{v.status?.endpoint || '—'}</Text></Table.Td>
                </Table.Tr>
              );
            })}
          </Table.Tbody>
        </Table>
      )}
      <CreateVolume opened={creating} onClose={() => setCreating(false)} />
    </Stack>
  );
}
