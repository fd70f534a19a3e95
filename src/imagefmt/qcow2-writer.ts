// A qcow2 (version 3) image written front to back in one pass, as an export streams it: given the virtual size and
// the guest clusters that hold data, `planQcow2` lays out every metadata structure up front and returns it as one
// buffer (the file's first bytes); the data clusters follow it, in guest order, one cluster each. Clusters not in
// the list are unallocated: they read as zeros (no backing file) and cost nothing in the file.
//
//  cluster 0           header (104 bytes, refcount_order 4, no extensions) + end-of-extensions marker
//  L1 table            l1Size × u64 (offset | COPIED), whole clusters
//  refcount table      u64 offsets of the refcount blocks, whole clusters
//  refcount blocks     u16 refcount per host cluster (1 for every cluster of the file)
//  L2 tables           one per 512 MiB of guest space that holds data; entries (offset | COPIED)
//  data clusters       in guest order
//
// All integers big-endian, as qcow2 has them (the reader in qcow2-header.ts checks the same fields).

export const EXPORT_CLUSTER_BITS = 16;
const COPIED = 1n << 63n;
const HEADER_LENGTH = 104;
const REFCOUNT_ORDER = 4;

export interface Qcow2Plan {
  clusterSize: number;
  /** Header, L1, refcount table and blocks, L2 tables: the file's first `prefix.length` bytes. */
  prefix: Buffer;
  /** File offset of the data cluster of the i-th listed guest cluster. */
  dataOffset(i: number): number;
  /** The file's final size. */
  fileSize: number;
}

/** `clusters`: indexes of the guest clusters that hold data, strictly increasing. */
export function planQcow2(virtualSize: number, clusters: readonly number[], clusterBits = EXPORT_CLUSTER_BITS): Qcow2Plan {
  const cs = 2 ** clusterBits;
  const l2Entries = cs / 8;
  const guestClusters = Math.ceil(virtualSize / cs);
  const l1Size = Math.max(1, Math.ceil(guestClusters / l2Entries));
  const l1Clusters = Math.ceil((l1Size * 8) / cs);
  const l2Tables = [...new Set(clusters.map((c) => Math.floor(c / l2Entries)))];
  const perRefBlock = cs / 2; // 16-bit refcounts
  // The refcount structures count themselves: grow them until they cover the whole file.
  let rbClusters = 1;
  let rtClusters = 1;
  for (;;) {
    const total = 1 + l1Clusters + rtClusters + rbClusters + l2Tables.length + clusters.length;
    const needRb = Math.ceil(total / perRefBlock);
    const needRt = Math.ceil((needRb * 8) / cs);
    if (needRb <= rbClusters && needRt <= rtClusters) break;
    rbClusters = Math.max(rbClusters, needRb);
    rtClusters = Math.max(rtClusters, needRt);
  }
  const l1At = 1;
  const rtAt = l1At + l1Clusters;
  const rbAt = rtAt + rtClusters;
  const l2At = rbAt + rbClusters;
  const dataAt = l2At + l2Tables.length;
  const totalClusters = dataAt + clusters.length;
  const prefix = Buffer.alloc(dataAt * cs);

  // Header.
  prefix.write('QFI\xfb', 0, 'latin1');
  prefix.writeUInt32BE(3, 4);
  prefix.writeUInt32BE(clusterBits, 20);
  prefix.writeBigUInt64BE(BigInt(virtualSize), 24);
  prefix.writeUInt32BE(l1Size, 36);
  prefix.writeBigUInt64BE(BigInt(l1At * cs), 40);
  prefix.writeBigUInt64BE(BigInt(rtAt * cs), 48);
  prefix.writeUInt32BE(rtClusters, 56);
  prefix.writeUInt32BE(REFCOUNT_ORDER, 96);
  prefix.writeUInt32BE(HEADER_LENGTH, 100);
  // Bytes 104..111: the end-of-extensions marker (type 0, length 0), zeros already.

  // L1 → L2 tables.
  const l2Index = new Map(l2Tables.map((t, i) => [t, i]));
  for (const [t, i] of l2Index) prefix.writeBigUInt64BE(BigInt((l2At + i) * cs) | COPIED, l1At * cs + t * 8);
  clusters.forEach((c, i) => {
    const table = l2Index.get(Math.floor(c / l2Entries))!;
    prefix.writeBigUInt64BE(BigInt((dataAt + i) * cs) | COPIED, (l2At + table) * cs + (c % l2Entries) * 8);
  });

  // Refcount table → blocks; refcount 1 for every cluster of the file.
  for (let b = 0; b < rbClusters; b++) prefix.writeBigUInt64BE(BigInt((rbAt + b) * cs), rtAt * cs + b * 8);
  for (let h = 0; h < totalClusters; h++) prefix.writeUInt16BE(1, rbAt * cs + h * 2);

  return { clusterSize: cs, prefix, dataOffset: (i) => (dataAt + i) * cs, fileSize: totalClusters * cs };
}
