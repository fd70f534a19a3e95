// The per-disk status map of a backing image: one coloured badge per disk that has (or is getting) a copy.
// The colour follows the state (components of format.ts); the text says the state too, so colour is never the
// only signal.

import { Badge, Group } from '@mantine/core';
import type { BackingImage } from '../api/index.js';
import { copyColor } from '../format.js';
import { diskLabel, type DiskRef } from './disks.js';

interface CopyEntry {
  state: string;
  progress: number;
  message: string;
  /** When every byte was last checked against the checksum (ready copies). */
  verifiedAt?: string;
}

export function copyEntries(bi: BackingImage): [string, CopyEntry][] {
  const files = { ...(bi.status?.diskFileStatusMap ?? {}) };
  const out = new Map<string, CopyEntry>();
  for (const disk of Object.keys(bi.spec?.diskFileSpecMap ?? {})) out.set(disk, { state: '', progress: 0, message: 'File processing is not started' });
  for (const [disk, f] of Object.entries(files)) {
    out.set(disk, { state: f.state ?? '', progress: f.progress ?? 0, message: f.message ?? '', ...(f.verifiedAt ? { verifiedAt: f.verifiedAt } : {}) });
  }
  return [...out.entries()];
}

export function DiskMap({ bi, disks }: { bi: BackingImage; disks: Map<string, DiskRef> }) {
  const entries = copyEntries(bi);
  if (entries.length === 0) return <span>no copies</span>;
  return (
    <Group gap={4} wrap="wrap" role="list" aria-label={`copies of ${bi.metadata.name ?? ''}`}>
      {entries.map(([uuid, f]) => {
        const label = diskLabel(disks, uuid);
        const state = f.state || 'not started';
        const text = f.state === 'in-progress' ? `${label} ${state} ${f.progress}%` : `${label} ${state}`;
        const verified = f.verifiedAt ? `verified ${new Date(f.verifiedAt).toLocaleString()}` : '';
        const title = [f.message, verified].filter(Boolean).join('; ') || state;
        return (
          // A title rather than a Tooltip: a list of hundreds of images renders one badge per copy.
          <Badge key={uuid} role="listitem" title={title} color={copyColor(f.state)} variant="filled" radius="sm" tt="none"
            data-disk={uuid} data-state={f.state} data-testid="copy">
            {text}
          </Badge>
        );
      })}
    </Group>
  );
}
