// util: small pieces shared by several packages, none of which knows about resources or controllers (layers point
// down: anything may import util, util imports nothing of Stratum's but itself).
//
//   buffer-pool, byte-queue, socket-reads, write-batch   the data path's memory and socket handling
//   sparse-write                                         sequential writes that keep all-zero blocks as holes
//   file-lock                                            OS locks that die with their holder (replica directories)
//   address-policy, download-url                         which download URLs may be fetched
//   connection-limit, graceful-close                     HTTP servers: per-client caps, closing without waiting on idle peers
//   coalescing-stream                                    watch responses written in bursts
//   bytes                                                byte counts as people read them (1.5 KiB)
//   table, prng                                          kubectl-style tables; the tests' seeded PRNG

export * from './abandon.js';
export * from './address-policy.js';
export * from './buffer-pool.js';
export * from './bytes.js';
export * from './byte-queue.js';
export * from './coalescing-stream.js';
export * from './connection-limit.js';
export * from './download-url.js';
export * from './file-lock.js';
export * from './graceful-close.js';
export * from './prng.js';
export * from './socket-reads.js';
export * from './sparse-write.js';
export * from './table.js';
export * from './write-batch.js';
