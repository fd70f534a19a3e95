// Counters of what the manager moved, served at GET /v1/stats. Tests use them to prove claims from outside: bytes
// a sender served (a resumed sync re-sends little), bytes hashed (a restart re-adopts files without reading them).

export class BimStats {
  readonly sent = {
    /** Bytes of chunk data served to peers (GET …/data). */
    dataBytes: 0,
    dataRequests: 0,
    /** Bytes served to downloads, before compression. */
    downloadBytes: 0,
    downloadRequests: 0,
    manifestRequests: 0,
    /** Requests refused with 429 because the per-file send limit was reached. */
    busyRejections: 0,
  };
  readonly received = {
    /** Bytes of chunk data received from peers, verified or not. */
    bytes: 0,
    /** Chunks received and written. */
    chunks: 0,
    /** Chunks whose SHA-256 did not match the manifest (fetched again, never from the peer that sent them). */
    chunksRejected: 0,
    /** Chunks skipped because the manifest says they are all zero. */
    zeroChunks: 0,
    /** Chunks of a set-aside copy kept by a sync because they matched the manifest (reuse.ts): not fetched. */
    reusedChunks: 0,
  };
  /** Bytes read to compute checksums and manifests (whole-file SHA-512, chunk SHA-256). */
  hashedBytes = 0;

  toJSON(): object {
    return { sent: { ...this.sent }, received: { ...this.received }, hashedBytes: this.hashedBytes };
  }
}
