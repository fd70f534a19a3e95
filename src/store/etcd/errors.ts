// etcd client errors → StoreErrors. The client library reports gRPC failures as classes; etcd's own refusals
// ("no leader", "request timed out", "required revision has been compacted") arrive as messages, which is the
// only place this package reads message text — it is etcd's wire contract (etcdserver/api/v3rpc/rpctypes).

import { BrokenCircuitError } from 'cockatiel';
import { GRPCDeadlineExceededError, GRPCUnavailableError } from 'etcd3';
import { StoreError } from '../errors.js';

// "context deadline exceeded" is etcd's own deadline on a linearizable read that found no quorum (gRPC code 2).
const UNAVAILABLE = /no leader|request timed out|leader changed|too many requests|timed out waiting for read index|not capable|connection|context deadline exceeded/i;

export function isCompacted(err: unknown): boolean {
  return err instanceof Error && /required revision has been compacted/.test(err.message);
}

/**
 * etcd 3.4 cancels a watch whose start revision was compacted with an empty cancel_reason (the client then says
 * only "Watcher canceled: "). Any cancel we did not ask for is answered as Gone: re-list and re-watch is always a
 * correct reaction to it.
 */
export function isWatchCanceled(err: unknown): boolean {
  return isCompacted(err) || (err instanceof Error && /^Watcher canceled/.test(err.message));
}

export function fromEtcdError(err: unknown, what: string): StoreError {
  if (err instanceof StoreError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  if (
    err instanceof GRPCUnavailableError ||
    err instanceof GRPCDeadlineExceededError ||
    // Every member was skipped after failing to connect.
    err instanceof BrokenCircuitError ||
    UNAVAILABLE.test(msg)
  ) {
    return new StoreError(
      'Unavailable',
      `${what}: the etcd cluster cannot serve this now (no quorum reachable: ${msg}); retry when members are back`,
      { cause: err },
    );
  }
  return new StoreError('Internal', `${what}: etcd failed: ${msg}`, { cause: err });
}
