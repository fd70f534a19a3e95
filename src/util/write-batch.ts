// Batches a socket's writes per event-loop iteration: the first write of an iteration corks the socket and a
// setImmediate uncorks it, so every request or reply started by that iteration's I/O callbacks (and the promise
// continuations they run) leaves in one writev.
//
// Why setImmediate and not process.nextTick: a request usually goes out a few promise continuations after the
// callback that started it (a range lock, an await on the device), and Node runs the nextTick queue before those
// continuations, so a nextTick uncork sent each request with its own system call. Profiles of 4 KiB random writes
// on three replicas showed those writev calls as the largest single cost of the engine.

import type { Socket } from 'node:net';

export class WriteBatch {
  readonly #socket: Socket;
  #corked = false;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  /** Call before writing: the writes of this iteration are held until its check phase. */
  hold(): void {
    if (this.#corked) return;
    this.#corked = true;
    this.#socket.cork();
    setImmediate(() => {
      this.#corked = false;
      this.#socket.uncork();
    });
  }
}
