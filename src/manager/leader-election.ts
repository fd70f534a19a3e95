// Leader election among managers that share one etcd: only the leader runs the controllers.
//
// The leader holds an etcd key (`<prefix>leader`) attached to an etcd lease of `leaseMs`. It renews the lease every
// 4 × `retryMs` (`retryMs` after a failed try); if it could not renew for `renewDeadlineMs` (< leaseMs) it stops its
// controllers. Why that is safe (client-go's argument, with etcd's lease in place of a Lease object):
//
//   - A keep-alive that etcd accepted restarts the lease's TTL at the moment etcd handled it, which is after we
//     sent it. We count from the moment we sent it, so our deadline ends earlier than etcd's expiry, by at least
//     leaseMs - renewDeadlineMs, measured on each side's own monotonic clock (no clock synchronisation needed, only
//     similar clock rates). A new etcd leader even extends every lease on election, which only adds margin.
//   - Nobody else can create the key before the lease expired (create is a transaction on create_revision == 0).
//   - On top of time, every write of the controllers carries a fence: it succeeds only while the key still has the
//     create revision we got when we won (src/store/etcd/backend.ts). An in-flight write that reaches etcd after the
//     key was re-created by someone else fails there, whatever the timing was.
//
// A standby polls every `retryMs` and wins within one poll of the old lease's expiry (or at once after a graceful
// stop, which revokes the lease).

import { EtcdLeaseInvalidError, type Etcd3, type Lease } from 'etcd3';
import { fromEtcdError, type Fence } from '../store/index.js';

export interface LeaderElectionOptions {
  client: Etcd3;
  /** Key prefix shared by the managers of one cluster. */
  key: string;
  /** This manager's identity (shown to others as the holder). */
  identity: string;
  leaseMs?: number;
  renewDeadlineMs?: number;
  retryMs?: number;
  log: (line: string) => void;
  now?: () => number;
}

export interface LeaderTerm {
  /** Aborted when leadership is lost or the manager stops: the controllers run on it. */
  signal: AbortSignal;
  fence: Fence;
}

export class LeaderElection {
  readonly #o: Required<LeaderElectionOptions>;
  #term: { fence: Fence; renewedAt: number; lease: Lease } | undefined;

  constructor(opts: LeaderElectionOptions) {
    const leaseMs = opts.leaseMs ?? 6000;
    this.#o = {
      ...opts,
      leaseMs,
      renewDeadlineMs: opts.renewDeadlineMs ?? Math.floor((leaseMs * 2) / 3),
      retryMs: opts.retryMs ?? 250,
      now: opts.now ?? (() => performance.now()),
    };
    if (this.#o.renewDeadlineMs >= this.#o.leaseMs) throw new Error('renewDeadlineMs must be shorter than leaseMs');
  }

  /** The fence to put on writes, while we lead and are inside the renew deadline; otherwise undefined. */
  fence(): Fence | undefined {
    const t = this.#term;
    if (!t || this.#o.now() - t.renewedAt >= this.#o.renewDeadlineMs) return undefined;
    return t.fence;
  }

  get isLeader(): boolean {
    return this.fence() !== undefined;
  }

  /** Who holds the leader key now (any manager's view). */
  async holder(): Promise<string | undefined> {
    return (await this.#o.client.get(this.#o.key).string()) ?? undefined;
  }

  /**
   * Campaigns until `signal` aborts; each time this manager wins, runs `lead(term)` and waits for it to resolve
   * after `term.signal` aborted (leadership lost or stopping). Resolves after the last term ended.
   */
  async run(signal: AbortSignal, lead: (term: LeaderTerm) => Promise<void>): Promise<void> {
    while (!signal.aborted) {
      const won = await this.#tryAcquire().catch((err: unknown) => {
        this.#o.log(`leader election: ${fromEtcdError(err, 'campaign').message}`);
        return undefined;
      });
      if (!won) {
        await sleep(this.#o.retryMs, signal);
        continue;
      }
      this.#term = won;
      this.#o.log(`leader election: ${this.#o.identity} is the leader (fence revision ${won.fence.createRevision})`);
      const ac = new AbortController();
      const stopTerm = () => ac.abort();
      signal.addEventListener('abort', stopTerm, { once: true });
      const renewing = this.#renew(won, ac);
      await lead({ signal: ac.signal, fence: won.fence });
      ac.abort();
      signal.removeEventListener('abort', stopTerm);
      await renewing;
      this.#term = undefined;
      // Hand over at once when stopping on purpose; after a lost lease, there is nothing left to give back.
      await won.lease.revoke().catch(() => undefined);
      this.#o.log(`leader election: ${this.#o.identity} stopped leading`);
    }
  }

  async #tryAcquire(): Promise<{ fence: Fence; renewedAt: number; lease: Lease } | undefined> {
    const { client, key, identity, leaseMs } = this.#o;
    // Cheap check first, so standbys do not grant a lease every poll.
    if ((await client.get(key).exec()).kvs.length > 0) return undefined;
    const sentAt = this.#o.now();
    const lease = client.lease(Math.ceil(leaseMs / 1000), { autoKeepAlive: false });
    const leaseId = await lease.grant();
    const res = await client.if(key, 'Create', '==', 0).then(client.put(key).value(identity).lease(leaseId)).commit();
    if (!res.succeeded) {
      await lease.revoke().catch(() => undefined);
      return undefined;
    }
    return { fence: { key, createRevision: String(res.header.revision) }, renewedAt: sentAt, lease };
  }

  async #renew(term: { renewedAt: number; lease: Lease }, ac: AbortController): Promise<void> {
    const { renewDeadlineMs, retryMs, now } = this.#o;
    while (!ac.signal.aborted) {
      const sentAt = now();
      let failed = false;
      try {
        const res = await Promise.race([
          term.lease.keepaliveOnce(),
          sleep(renewDeadlineMs, ac.signal).then(() => undefined),
        ]);
        if (res && Number(res.TTL) > 0) term.renewedAt = sentAt;
        else if (res) {
          this.#o.log('leader election: our lease has expired in etcd');
          break;
        }
      } catch (err) {
        // The library answers a keep-alive of an expired lease with this error, not with TTL 0: the lease is gone,
        // so stop at once rather than claim the lead until the renew deadline.
        if (err instanceof EtcdLeaseInvalidError) {
          this.#o.log('leader election: our lease has expired in etcd');
          break;
        }
        this.#o.log(`leader election: cannot renew the lease: ${fromEtcdError(err, 'renew').message}`);
        failed = true;
      }
      if (now() - term.renewedAt >= renewDeadlineMs) {
        this.#o.log(`leader election: not renewed for ${renewDeadlineMs} ms; stopping the controllers`);
        break;
      }
      // A failed keep-alive is retried soon: the library sends each one on a stream to a member picked at random
      // and skips a member that failed for one second only (its circuit breaker), so with one member down about a
      // third of the keep-alives a second apart fail. Four in a row (1 in 81) cost the lead: likely in an outage of a
      // minute or two; retried at this pace, the deadline holds about a dozen tries.
      await sleep(failed ? retryMs : retryMs * 4, ac.signal);
    }
    ac.abort();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
