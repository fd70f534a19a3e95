// Uploads from this browser: running ones with progress, rate and ETA, and unfinished ones (left by a reload or a
// closed tab) that resume from the server's durable offset once the same file is chosen again.

import { Alert, Button, FileInput, Group, Progress, Stack, Text } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { apiJson } from '../api/index.js';
import { ErrorAlert } from '../components/index.js';
import { bytes, duration, rate } from '../format.js';
import { forgetUpload, startUpload, useUploadRecords, useUploads, type UploadJob, type UploadRecord } from '../transfer/index.js';

function Running({ job }: { job: UploadJob }) {
  const pct = job.size > 0 ? (job.offset / job.size) * 100 : 0;
  const words: Record<UploadJob['phase'], string> = {
    creating: 'creating the image',
    waiting: 'waiting for the data source',
    uploading: 'uploading',
    verifying: 'sending the last part; the server verifies the file',
    done: 'uploaded and verified',
    failed: 'failed',
  };
  return (
    <Stack gap={4} data-testid={`upload-${job.name}`} data-phase={job.phase} data-offset={job.offset} data-resumed-at={job.resumedAt}>
      <Group justify="space-between">
        <Text size="sm" fw={500}>{job.name} ← {job.fileName}: {words[job.phase]}</Text>
        <Text size="sm" aria-live="polite">
          {bytes(job.offset)} of {bytes(job.size)} ({pct.toFixed(0)}%)
          {job.phase === 'uploading' ? ` · ${rate(job.bytesPerSecond)} · ETA ${duration(job.etaSeconds)}` : ''}
          {job.resumedAt > 0 ? ` · resumed at ${bytes(job.resumedAt)}` : ''}
        </Text>
      </Group>
      <Progress value={pct} aria-label={`upload of ${job.name}`} color={job.phase === 'failed' ? 'red' : job.phase === 'done' ? 'green' : 'blue'} />
      {job.error && <ErrorAlert error={new Error(job.error)} title="Upload failed" />}
    </Stack>
  );
}

function Unfinished({ record }: { record: UploadRecord }) {
  const [error, setError] = useState<unknown>(undefined);
  const offset = useQuery({
    queryKey: ['upload-offset', record.name],
    queryFn: () => apiJson<{ offset: number; size: number }>(`/v1/backingimages/${encodeURIComponent(record.name)}/upload`),
    retry: false,
  });
  const resume = (file: File | null) => {
    if (!file) return;
    if (file.size !== record.size || file.name !== record.fileName) {
      setError(new Error(`that is ${file.name} (${bytes(file.size)}); the upload of ${record.name} needs ${record.fileName} (${bytes(record.size)})`));
      return;
    }
    setError(undefined);
    startUpload({ name: record.name, file, create: false }).catch(() => undefined);
  };
  const at = offset.data ? ` at ${bytes(offset.data.offset)} of ${bytes(record.size)} (${((offset.data.offset / record.size) * 100).toFixed(0)}%)` : '';
  return (
    <Alert color="yellow" title={`Upload of ${record.name} stopped${at}`} data-testid={`unfinished-${record.name}`}>
      <Stack gap="xs">
        <Text size="sm">Choose {record.fileName} again to continue from where the server stopped.</Text>
        {offset.error && <Text size="sm">The server cannot resume it: {offset.error.message}</Text>}
        <Group align="flex-end">
          <FileInput label={`File to resume ${record.name}`} placeholder={record.fileName} onChange={resume} w={320} />
          <Button variant="default" onClick={() => forgetUpload(record.name)}>Forget</Button>
        </Group>
        <ErrorAlert error={error} title="Not the same file" />
      </Stack>
    </Alert>
  );
}

export function Uploads() {
  const jobs = useUploads();
  const records = useUploadRecords();
  const running = new Set(jobs.filter((j) => j.phase !== 'failed').map((j) => j.name));
  const unfinished = records.filter((r) => !running.has(r.name));
  if (jobs.length === 0 && unfinished.length === 0) return null;
  return (
    <Stack gap="sm" aria-label="uploads">
      {jobs.map((j) => <Running key={j.name} job={j} />)}
      {unfinished.map((r) => <Unfinished key={r.name} record={r} />)}
    </Stack>
  );
}
