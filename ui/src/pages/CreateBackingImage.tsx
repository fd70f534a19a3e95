// Create a backing image: download from a URL (with the expected SHA-512), upload a file from this computer
// (resumable), or export a volume (its whole content from a fresh snapshot, as raw or qcow2).

import { Button, FileInput, Group, Modal, NumberInput, SegmentedControl, Select, Stack, Tabs, Text, TextInput } from '@mantine/core';
import { useState } from 'react';
import { useResources, v1, type Volume } from '../api/index.js';
import { ErrorAlert } from '../components/index.js';
import { startUpload } from '../transfer/index.js';

export function CreateBackingImage({ opened, onClose }: { opened: boolean; onClose: () => void }) {
  const [tab, setTab] = useState<string | null>('download');
  const [name, setName] = useState('');
  const [url, setUrl] = useState('');
  const [checksum, setChecksum] = useState('');
  const [minCopies, setMinCopies] = useState<number | string>(1);
  const [file, setFile] = useState<File | null>(null);
  const [volume, setVolume] = useState<string | null>(null);
  const [exportType, setExportType] = useState('raw');
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);

  const close = () => {
    setError(undefined);
    setName('');
    setUrl('');
    setChecksum('');
    setFile(null);
    setVolume(null);
    onClose();
  };
  const submit = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const min = Number(minCopies) || undefined;
      if (tab === 'upload') {
        if (!file) throw new Error('choose a file to upload');
        const started = startUpload({ name, file, checksum: checksum.trim(), create: true, ...(min ? { minNumberOfCopies: min } : {}) });
        // Creation errors (name taken, invalid) belong in this dialog; the transfer itself shows in the uploads panel.
        await Promise.race([started, new Promise((r) => setTimeout(r, 1500))]);
        started.catch(() => undefined);
      } else if (tab === 'export') {
        if (!volume) throw new Error('choose the volume to export');
        await v1('POST', '/backingimages', {
          name, sourceType: 'export-from-volume', parameters: { 'volume-name': volume, 'export-type': exportType },
          ...(min ? { minNumberOfCopies: min } : {}),
        });
      } else {
        await v1('POST', '/backingimages', {
          name, sourceType: 'download', parameters: { url: url.trim() }, expectedChecksum: checksum.trim(),
          ...(min ? { minNumberOfCopies: min } : {}),
        });
      }
      close();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Modal opened={opened} onClose={close} closeButtonProps={{ 'aria-label': 'Close' }} title="Create backing image" size="lg">
      <form onSubmit={(e) => { e.preventDefault(); void submit(); }}>
        <Stack>
          <Tabs value={tab} onChange={setTab}>
            <Tabs.List>
              <Tabs.Tab value="download">From a URL</Tabs.Tab>
              <Tabs.Tab value="upload">Upload a file</Tabs.Tab>
              <Tabs.Tab value="export">Export a volume</Tabs.Tab>
            </Tabs.List>
          </Tabs>
          <TextInput label="Name" required value={name} onChange={(e) => setName(e.currentTarget.value)} description="lower-case letters, digits, '-' and '.'" />
          {tab === 'download' && (
            <TextInput label="URL" required type="url" value={url} onChange={(e) => setUrl(e.currentTarget.value)} placeholder="https://example.com/image.qcow2" />
          )}
          {tab === 'upload' && (
            <FileInput label="File" required value={file} onChange={setFile} placeholder="qcow2 or raw image" clearable />
          )}
          {tab === 'export' && (
            <>
              <VolumePicker value={volume} onChange={setVolume} />
              <Stack gap={4}>
                <Text size="sm" fw={500} id="export-type-label">Format</Text>
                <SegmentedControl aria-labelledby="export-type-label" value={exportType} onChange={setExportType}
                  data={[{ value: 'raw', label: 'raw (sparse)' }, { value: 'qcow2', label: 'qcow2' }]} />
              </Stack>
              <Text size="sm" c="dimmed">The volume's whole content (its backing image and every snapshot, flattened) from a fresh
                snapshot, without stopping its I/O; a detached volume is attached without a frontend for the export.</Text>
            </>
          )}
          {tab !== 'export' && (
            <TextInput label="Expected SHA-512 checksum" value={checksum} onChange={(e) => setChecksum(e.currentTarget.value)}
              description="Recommended: without it the first file's checksum is taken as the right one." />
          )}
          <NumberInput label="Minimum number of copies" min={1} max={20} value={minCopies} onChange={setMinCopies} />
          <ErrorAlert error={error} />
          <Group justify="flex-end">
            <Button variant="default" onClick={close}>Cancel</Button>
            <Button type="submit" loading={busy}>{tab === 'upload' ? 'Create and upload' : tab === 'export' ? 'Export' : 'Create'}</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

/** The cluster's volumes, watched only while this picker is shown (the export tab of an open dialog). */
function VolumePicker({ value, onChange }: { value: string | null; onChange: (v: string | null) => void }) {
  const volumes = useResources<Volume>('volumes');
  return (
    <Select label="Volume" required searchable value={value} onChange={onChange} nothingFoundMessage="no volumes"
      data={(volumes ?? []).map((v) => v.metadata.name ?? '').filter((n) => n !== '').sort()} />
  );
}
