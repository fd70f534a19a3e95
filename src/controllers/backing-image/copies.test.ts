// Unit tests of the copy decisions (which disks hold a backing image) and of the status computation.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BackingImage, BackingImageDiskFileStatus } from '../../api/backing-image.js';
import type { BackingImageDataSource } from '../../api/backing-image-data-source.js';
import type { DiskCandidate } from '../scheduling.js';
import { decideCopies, type CopyInputs } from './copies.js';
import { computeStatus } from './status.js';

const NOW = new Date('2026-01-01T12:00:00Z');
const minutesAgo = (m: number) => new Date(NOW.getTime() - m * 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z');

function bi(disks: string[], extra: Partial<BackingImage['spec']> = {}, lastRef: Record<string, string> = {}): BackingImage {
  return {
    apiVersion: 'longhorn.io/v1beta2',
    kind: 'BackingImage',
    metadata: { name: 'bi', namespace: 'ns' },
    spec: { diskFileSpecMap: Object.fromEntries(disks.map((d) => [d, {}])), minNumberOfCopies: 1, ...extra },
    status: { uuid: 'u1', size: 10, diskLastRefAtMap: lastRef },
  };
}

const transferred: BackingImageDataSource = { apiVersion: 'longhorn.io/v1beta2', kind: 'BackingImageDataSource', metadata: { name: 'bi' }, spec: { diskUUID: 'd1', fileTransferred: true } };

function cand(node: string, disk: string, free: number, tags: string[] = []): DiskCandidate {
  return { nodeName: node, diskName: disk, diskUUID: disk, diskPath: `/${disk}`, free, maximum: free, reserved: 0, diskTags: tags, nodeTags: [] };
}

function inputs(over: Partial<CopyInputs>): CopyInputs {
  return {
    bi: bi(['d1']),
    bids: transferred,
    fileStatus: { d1: { state: 'ready' } },
    usedDisks: new Set(),
    candidates: [cand('n1', 'd1', 100), cand('n2', 'd2', 50), cand('n3', 'd3', 500), cand('n1', 'd4', 1000)],
    nodeOfDisk: new Map([['d1', 'n1'], ['d2', 'n2'], ['d3', 'n3'], ['d4', 'n1']]),
    minCopies: 1,
    replenishEnabled: true,
    cleanupWaitMs: 60 * 60_000,
    now: NOW,
    ...over,
  };
}

test('replenishing adds one disk per pass, on a node without a copy, with the most free space', () => {
  const d = decideCopies(inputs({ minCopies: 3 }));
  assert.deepEqual(d.added.map((a) => a.disk), ['d3']);
  const d2 = decideCopies(inputs({ minCopies: 3, bi: bi(['d1', 'd3']), fileStatus: { d1: { state: 'ready' }, d3: { state: 'in-progress' } } }));
  assert.deepEqual(d2.added.map((a) => a.disk), ['d2']);
});

test('a new copy must leave more than storage-minimal-available-percentage of its disk free', () => {
  // Size 10. d3 (free 500 of 1000) would keep 490 free, below 50 %: refused. d2 (free 50 of 50) would keep 40 of
  // 50, above 50 %: chosen though it has less free space. At 0 % the disk with most free space wins again.
  const full = (c: DiskCandidate, maximum: number): DiskCandidate => ({ ...c, maximum });
  const candidates = [cand('n1', 'd1', 100), cand('n2', 'd2', 50), full(cand('n3', 'd3', 500), 1000)];
  assert.deepEqual(decideCopies(inputs({ minCopies: 2, candidates, minimalAvailablePercent: 50 })).added.map((a) => a.disk), ['d2']);
  assert.deepEqual(decideCopies(inputs({ minCopies: 2, candidates, minimalAvailablePercent: 0 })).added.map((a) => a.disk), ['d3']);
  // No disk keeps enough free: no copy is added (the image stays short of copies rather than fill a disk).
  assert.deepEqual(decideCopies(inputs({ minCopies: 2, candidates, minimalAvailablePercent: 90 })).added, []);
});

test('no replenishing before the first file is handed over, or when every copy is unhealthy', () => {
  const pending = { ...transferred, spec: { ...transferred.spec, fileTransferred: false } };
  assert.deepEqual(decideCopies(inputs({ minCopies: 3, bids: pending })).added, []);
  assert.deepEqual(decideCopies(inputs({ minCopies: 3, fileStatus: { d1: { state: 'failed' } } })).added, []);
});

test('selectors restrict the disks replenishing may choose', () => {
  const d = decideCopies(inputs({
    minCopies: 2,
    bi: bi(['d1'], { diskSelector: ['ssd'] }),
    candidates: [cand('n2', 'd2', 50, ['ssd']), cand('n3', 'd3', 500)],
  }));
  assert.deepEqual(d.added.map((a) => a.disk), ['d2']);
});

test('disks where replicas use the image are added and never cleaned up', () => {
  const d = decideCopies(inputs({ usedDisks: new Set(['d2']), bi: bi(['d1'], {}, { d1: minutesAgo(120) }), cleanupWaitMs: 60 * 60_000 }));
  assert.deepEqual(d.added.map((a) => a.disk), ['d2']);
  assert.equal(d.diskLastRefAtMap['d2'], undefined);
});

test('unused copies are removed after the wait, never below minNumberOfCopies', () => {
  const status: Record<string, BackingImageDiskFileStatus> = { d1: { state: 'ready' }, d2: { state: 'ready' }, d3: { state: 'ready' } };
  const old = { d1: minutesAgo(90), d2: minutesAgo(90), d3: minutesAgo(10) };
  const d = decideCopies(inputs({ bi: bi(['d1', 'd2', 'd3'], {}, old), fileStatus: status, minCopies: 1 }));
  assert.equal(d.removed.length, 2, 'both old copies may go while one ready copy stays');
  assert.equal(Object.keys(d.diskFileSpecMap).length, 1);
  assert.ok(d.diskFileSpecMap['d3'], 'the recently used copy stays');
  const keep2 = decideCopies(inputs({ bi: bi(['d1', 'd2', 'd3'], {}, { d1: minutesAgo(90), d2: minutesAgo(90), d3: minutesAgo(90) }), fileStatus: status, minCopies: 2 }));
  assert.equal(Object.keys(keep2.diskFileSpecMap).length, 2);
  assert.ok(d.requeueAfterMs !== undefined && d.requeueAfterMs <= 50 * 60_000);
});

test('failed copies are cleaned up before ready ones', () => {
  const status: Record<string, BackingImageDiskFileStatus> = { d1: { state: 'ready' }, d2: { state: 'failed' } };
  const d = decideCopies(inputs({ bi: bi(['d1', 'd2'], {}, { d1: minutesAgo(90), d2: minutesAgo(90) }), fileStatus: status, minCopies: 1 }));
  assert.deepEqual(d.removed.map((r) => r.disk), ['d2']);
});

test('status: the first checksum wins and a copy with another checksum is failed, naming both', () => {
  const a = 'a'.repeat(128);
  const b = 'b'.repeat(128);
  const img = bi(['d1', 'd2']);
  img.status = { ...img.status, checksum: a };
  const st = computeStatus({
    bi: img,
    bids: transferred,
    files: new Map([
      ['d1', { name: 'bi', uuid: 'u1', state: 'ready', currentChecksum: a, size: 1024 }],
      ['d2', { name: 'bi', uuid: 'u1', state: 'ready', currentChecksum: b, size: 1024 }],
    ]),
    now: NOW,
  });
  assert.equal(st.checksum, a);
  assert.equal(st.diskFileStatusMap?.['d1']?.state, 'ready');
  assert.equal(st.diskFileStatusMap?.['d2']?.state, 'failed');
  assert.match(st.diskFileStatusMap?.['d2']?.message ?? '', new RegExp(`${a}.*${b}`));
});

test('status: the data source speaks for its disk until the manager has the file', () => {
  const pending: BackingImageDataSource = { ...transferred, spec: { diskUUID: 'd1', fileTransferred: false }, status: { currentState: 'in-progress', progress: 40, message: '40%' } };
  const st = computeStatus({ bi: bi(['d1']), bids: pending, files: new Map(), now: NOW });
  assert.equal(st.diskFileStatusMap?.['d1']?.state, 'in-progress');
  assert.equal(st.diskFileStatusMap?.['d1']?.progress, 40);
  const ready = computeStatus({ bi: bi(['d1']), bids: pending, files: new Map([['d1', { name: 'bi', uuid: 'u1', state: 'ready', currentChecksum: 'c' }]]), now: NOW });
  assert.equal(ready.diskFileStatusMap?.['d1']?.state, 'ready');
  // A stale file of an older image with the same name (another uuid) is ignored.
  const stale = computeStatus({ bi: bi(['d2']), bids: transferred, files: new Map([['d2', { name: 'bi', uuid: 'old', state: 'ready' }]]), now: NOW });
  assert.equal(stale.diskFileStatusMap?.['d2'], undefined);
});

test('status: the chunk-manifest anchor comes from the data source that made the checksum, never from a copy', () => {
  const sum = 'a'.repeat(128);
  const anchor = `4194304:${'b'.repeat(64)}`;
  const ready: BackingImageDataSource = { ...transferred, spec: { diskUUID: 'd1', fileTransferred: false }, status: { currentState: 'ready-for-transfer', checksum: sum, runningParameters: { chunkManifestDigest: anchor } } };
  assert.equal(computeStatus({ bi: bi(['d1']), bids: ready, files: new Map(), now: NOW }).chunkManifestDigest, anchor);
  // Another checksum (the image expects other bytes), a malformed anchor, a data source not done: nothing.
  const other = bi(['d1'], { checksum: 'c'.repeat(128) });
  assert.equal(computeStatus({ bi: other, bids: ready, files: new Map(), now: NOW }).chunkManifestDigest, undefined);
  const malformed = { ...ready, status: { ...ready.status, runningParameters: { chunkManifestDigest: '../x' } } };
  assert.equal(computeStatus({ bi: bi(['d1']), bids: malformed, files: new Map(), now: NOW }).chunkManifestDigest, undefined);
  const busy = { ...ready, status: { ...ready.status, currentState: 'in-progress' as const } };
  assert.equal(computeStatus({ bi: bi(['d1']), bids: busy, files: new Map(), now: NOW }).chunkManifestDigest, undefined);
  // Only copies, even ready ones with the checksum: nothing (their manifest may have come from a peer).
  const copies = computeStatus({ bi: bi(['d1']), bids: transferred, files: new Map([['d1', { name: 'bi', uuid: 'u1', state: 'ready', currentChecksum: sum }]]), now: NOW });
  assert.equal(copies.checksum, sum);
  assert.equal(copies.chunkManifestDigest, undefined);
});

test('eviction: an evicted copy is not healthy, a copy is made elsewhere from it, and it goes once others are ready', () => {
  // The only copy is on d1, whose disk asks for eviction: d3 (most free, another node) gets one, d1 stays meanwhile.
  const first = decideCopies(inputs({ evictingDisks: new Set(['d1']), candidates: [cand('n2', 'd2', 50), cand('n3', 'd3', 500)] }));
  assert.deepEqual(Object.keys(first.diskFileSpecMap).sort(), ['d1', 'd3']);
  assert.deepEqual(first.removed, []);
  // d3 is syncing: d1 still stays (it is the source).
  const syncing = decideCopies(inputs({ bi: bi(['d1', 'd3']), fileStatus: { d1: { state: 'ready' }, d3: { state: 'in-progress' } }, evictingDisks: new Set(['d1']) }));
  assert.deepEqual(Object.keys(syncing.diskFileSpecMap).sort(), ['d1', 'd3']);
  // d3 is ready: d1 goes, without waiting for the cleanup interval.
  const done = decideCopies(inputs({ bi: bi(['d1', 'd3']), fileStatus: { d1: { state: 'ready' }, d3: { state: 'ready' } }, evictingDisks: new Set(['d1']) }));
  assert.deepEqual(Object.keys(done.diskFileSpecMap), ['d3']);
  assert.deepEqual(done.removed, [{ disk: 'd1', why: 'evicted: 1 ready copy is on other disks' }]);
});

test('eviction: a copy a replica still uses stays; a per-copy evictionRequested counts the same', () => {
  const used = decideCopies(inputs({ bi: bi(['d1', 'd3']), fileStatus: { d1: { state: 'ready' }, d3: { state: 'ready' } }, evictingDisks: new Set(['d1']), usedDisks: new Set(['d1']) }));
  assert.deepEqual(Object.keys(used.diskFileSpecMap).sort(), ['d1', 'd3']);
  const perCopy = bi(['d1', 'd3']);
  perCopy.spec!.diskFileSpecMap = { d1: { evictionRequested: true }, d3: {} };
  const gone = decideCopies(inputs({ bi: perCopy, fileStatus: { d1: { state: 'ready' }, d3: { state: 'ready' } } }));
  assert.deepEqual(Object.keys(gone.diskFileSpecMap), ['d3']);
});

test('a copy on a disk no node has any more goes once enough copies are ready elsewhere', () => {
  const gone = decideCopies(inputs({ bi: bi(['d1', 'd9']), fileStatus: { d1: { state: 'ready' }, d9: { state: 'ready' } } }));
  assert.deepEqual(Object.keys(gone.diskFileSpecMap), ['d1']);
  assert.deepEqual(gone.removed, [{ disk: 'd9', why: 'no node has this disk: 1 ready copy is on other disks' }]);
});
