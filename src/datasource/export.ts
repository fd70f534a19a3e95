// Export from a volume (sourceType export-from-volume): the volume's full content as of a fresh snapshot (the
// backing image and every layer, flattened) written as a raw or qcow2 image, without stopping I/O on the volume.
//
//   1. The volume's engine takes a crash-consistent snapshot (its control API on the instance manager hosting it).
//   2. One replica of the volume serves that snapshot over the replica protocol (CONTROL snapshotAllocated and
//      readSnapshot, through replica/snapshot-read.ts, the reader a volume clone uses too): which ranges may hold data (written in a layer, or allocated in the backing image), and the
//      bytes, read through the snapshot's layers and the backing image. The head keeps taking writes meanwhile.
//   3. raw: the file is the volume's bytes, in order, with unallocated and all-zero ranges left as holes (hashed as
//      zeros, never written). qcow2: the allocated clusters only, after metadata laid out up front
//      (imagefmt/qcow2-writer.ts); unallocated clusters cost nothing.
//   4. The snapshot is deleted (marked removed: the head sits on it; a purge merges it later).
// The SHA-512 is computed as the bytes (and holes) are appended, like every other source; verify.ts seals the file.

import { ExportParam } from '../api/backing-image-data-source.js';
import { clusterAuthHeaders } from '../auth/cluster-credential.js';
import { planQcow2 } from '../imagefmt/qcow2-writer.js';
import { ReplicaClient, readPieces, readSnapshotPieces, snapshotRanges, SNAPSHOT_MAP_WINDOW, SNAPSHOT_READ_CHUNK, type SnapshotRange as Range } from '../replica/index.js';
import { DataSourceError, messageOf } from './errors.js';
import type { ProgressMeter } from './progress.js';
import { IO_CHUNK, type WorkFile } from './workfile.js';


/** Bytes asked for per allocation query and per read: the shared reader's. */
const MAP_WINDOW = SNAPSHOT_MAP_WINDOW;
const READ_CHUNK = SNAPSHOT_READ_CHUNK;

export interface ExportOptions {
  file: WorkFile;
  meter: ProgressMeter;
  parameters: Readonly<Record<string, string>>;
  /** The backing image's name and uuid: the snapshot's name is derived from them. */
  name: string;
  uuid: string;
  clusterSecret: string | undefined;
  onBytes: () => void;
  log: (line: string) => void;
}

function param(p: Readonly<Record<string, string>>, key: string): string {
  const v = p[key];
  if (!v) throw new DataSourceError('InvalidArgument', `an export-from-volume data source needs the parameter ${key}`);
  return v;
}

async function engineCall<T>(url: string, method: string, secret: string | undefined, body: unknown, signal: AbortSignal): Promise<T> {
  const res = await fetch(url, {
    method,
    headers: { ...(secret ? clusterAuthHeaders(secret) : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.any([signal, AbortSignal.timeout(180_000)]),
  });
  const text = await res.text();
  if (!res.ok) throw new DataSourceError('SourceRefused', `${method} ${url}: HTTP ${res.status}: ${text.trim()}`);
  return JSON.parse(text) as T;
}

function endpointOf(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  if (!m) throw new DataSourceError('InvalidArgument', `replica-address "${address}" is not host:port`);
  return { host: (m[1] ?? m[2])!, port: Number(m[3]) };
}

export async function exportVolume(o: ExportOptions, { signal }: { signal: AbortSignal }): Promise<void> {
  const p = o.parameters;
  const exportType = p['export-type'] || 'raw';
  if (exportType !== 'raw' && exportType !== 'qcow2') throw new DataSourceError('InvalidArgument', `export-type must be raw or qcow2, not "${exportType}"`);
  const engineUrl = param(p, ExportParam.engineUrl);
  const replicaName = param(p, ExportParam.replicaName);
  const endpoint = endpointOf(param(p, ExportParam.replicaAddress));
  const volume = param(p, 'volume-name');
  const snapshot = `export-${o.name}-${o.uuid.slice(0, 8)}`.slice(0, 253);

  // Restarted: whatever was written before is discarded with the snapshot's name reused.
  await o.file.reset({ signal });
  const engine = await engineCall<{ size: number }>(engineUrl, 'GET', o.clusterSecret, undefined, signal);
  const listed = await engineCall<{ snapshots: { name: string }[] }>(`${engineUrl}/snapshots`, 'GET', o.clusterSecret, undefined, signal);
  if (!listed.snapshots.some((s) => s.name === snapshot)) {
    await engineCall(`${engineUrl}/snapshots`, 'POST', o.clusterSecret, { name: snapshot, labels: { 'longhorn.io/backing-image': o.name } }, signal);
  }
  o.log(`exporting volume ${volume} (${engine.size} bytes) as ${exportType} from snapshot ${snapshot}, read from replica ${replicaName}`);
  const client = await ReplicaClient.connect(endpoint, { name: replicaName, clusterSecret: o.clusterSecret, timeoutMs: 60_000, signal });
  try {
    const size = engine.size;
    o.meter.setSize(size);
    const allocated = (offset: number, length: number): Promise<Range[]> => snapshotRanges(client, snapshot, offset, length, false, { signal });
    const read = (pieces: Range[]) => readSnapshotPieces(client, snapshot, pieces, { signal });
    let done = 0;
    const progress = (n: number) => {
      done += n;
      o.meter.update(done);
      o.onBytes();
    };
    if (exportType === 'raw') await writeRaw(o.file, size, allocated, read, progress, signal);
    else await writeQcow2(o.file, size, allocated, read, progress, signal);
  } finally {
    client.destroy();
  }
  await o.file.sync({ signal });
  // The head sits on the snapshot, so it is only marked removed; a purge merges it into the head later.
  await engineCall(`${engineUrl}/snapshots/${encodeURIComponent(snapshot)}`, 'DELETE', o.clusterSecret, undefined, signal).catch((err: unknown) => o.log(`deleting the export snapshot ${snapshot}: ${messageOf(err)}`));
}

type Allocated = (offset: number, length: number) => Promise<Range[]>;
/** The bytes of `pieces`, in order, read ahead (replica/snapshot-read.ts). */
type Read = (pieces: Range[]) => AsyncGenerator<{ piece: Range; data: Buffer }>;

async function writeRaw(file: WorkFile, size: number, allocated: Allocated, read: Read, progress: (n: number) => void, signal: AbortSignal): Promise<void> {
  for (let w = 0; w < size; w += MAP_WINDOW) {
    const end = Math.min(size, w + MAP_WINDOW);
    const ranges = await allocated(w, end - w);
    for await (const { piece, data } of read(readPieces(ranges))) {
      signal.throwIfAborted();
      const hole = piece.offset - file.offset;
      if (hole > 0) {
        await appendZeros(file, hole);
        progress(hole);
      }
      await file.write(data);
      progress(piece.length);
    }
    const tail = end - file.offset;
    if (tail > 0) {
      await appendZeros(file, tail);
      progress(tail);
    }
  }
}

/** Never written to: appended for the ranges no layer and no backing image allocates. */
const ZEROS = Buffer.alloc(IO_CHUNK);

/**
 * Appends `length` zero bytes. WorkFile writes sparsely (util/sparse-write.ts: all-zero blocks past the file's end
 * are left as holes, hashed all the same), so these cost hashing only; the same goes for all-zero blocks of data.
 */
async function appendZeros(file: WorkFile, length: number): Promise<void> {
  for (let done = 0; done < length; done += ZEROS.length) await file.write(ZEROS.subarray(0, Math.min(ZEROS.length, length - done)));
}

async function writeQcow2(file: WorkFile, size: number, allocated: Allocated, read: Read, progress: (n: number) => void, signal: AbortSignal): Promise<void> {
  const probe = planQcow2(size, []);
  const cs = probe.clusterSize;
  const clusters: number[] = [];
  for (let w = 0; w < size; w += MAP_WINDOW) {
    for (const r of await allocated(w, Math.min(size, w + MAP_WINDOW) - w)) {
      const first = Math.floor(r.offset / cs);
      const last = Math.floor((r.offset + r.length - 1) / cs);
      for (let c = first; c <= last; c++) if (clusters[clusters.length - 1] !== c) clusters.push(c);
    }
  }
  const plan = planQcow2(size, clusters);
  await file.write(plan.prefix);
  // Runs of consecutive clusters are read together.
  const pieces: Range[] = [];
  for (let i = 0; i < clusters.length; ) {
    let j = i + 1;
    while (j < clusters.length && clusters[j] === clusters[j - 1]! + 1 && (j - i) * cs < READ_CHUNK) j++;
    const from = clusters[i]! * cs;
    pieces.push({ offset: from, length: Math.min(size, clusters[j - 1]! * cs + cs) - from });
    i = j;
  }
  for await (const { piece, data } of read(pieces)) {
    signal.throwIfAborted();
    // The last cluster of an odd-sized volume is padded to a whole cluster.
    const whole = Math.ceil(piece.length / cs) * cs;
    await file.write(data.length === whole ? data : Buffer.concat([data, Buffer.alloc(whole - data.length)]));
    progress(piece.length);
  }
  progress(Math.max(0, size - clusters.length * cs));
}
