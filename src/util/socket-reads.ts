// Socket reads into one reusable buffer per connection, for the data path's sockets (NBD, the replica protocol).
//
// Why: a net.Socket that emits 'data' allocates a fresh 64 KiB buffer per read. At several hundred MiB/s that is
// external memory V8 answers with a full mark-compact every few tens of milliseconds: profiles of a sequential write
// showed half of the instance manager's CPU in the collector for an 11 MiB heap. Node's `onread` option reads into a
// buffer the caller owns instead; the callback's chunk is a view of it, valid only until the callback returns
// (ByteQueue's transient chunks, src/util/byte-queue.ts, are made for that).
//
// `onread` is a documented option of `net.connect`, but `net.createServer` has none. `adoptWithReadBuffer` moves an
// accepted socket's handle into a new socket built with `onread`, in the same tick as the 'connection' event, before
// any read has completed (so no byte is lost). The one private field it touches, `_handle`, has been stable in Node
// for a decade; without it (another runtime) the socket is returned unchanged and reads arrive as 'data' chunks, so
// only speed depends on it. The adopted socket is not counted by its net.Server: servers count their connections
// themselves.
//
// A reader may also name where the next read goes (`ReadTarget`): while a large payload is still arriving, its
// parser offers the unfilled part of the payload's buffer (ByteQueue.fillSpace), and the kernel copies the bytes
// straight into it instead of into the shared buffer and from there, a second time, into the payload.

import net from 'node:net';

const KiB = 1024;

/** Large enough that a 1 MiB request arrives in a handful of reads; small enough to stay in the CPU's cache. */
export const READ_BUFFER_BYTES = 256 * KiB;

/** Gets every read as a view valid only during the call: of the shared buffer, or of a `ReadTarget`'s space. */
export type ChunkHandler = (chunk: Buffer) => void;

/** Where the next read should land instead of the shared buffer (asked after every read), or undefined. */
export type ReadTarget = () => Uint8Array | undefined;

/**
 * The `onread` option for `net.connect`: every read lands in one buffer of this socket, or where `target` says.
 * Node asks `buffer` for the next read's buffer after each callback and hands the callback the buffer it read into.
 */
export function readBufferOption(onChunk: ChunkHandler, bytes = READ_BUFFER_BYTES, target?: ReadTarget): net.OnReadOpts {
  const shared = Buffer.allocUnsafeSlow(bytes);
  return {
    buffer: target ? () => target() ?? shared : shared,
    callback: (n: number, buf: Uint8Array): boolean => {
      onChunk(Buffer.from(buf.buffer, buf.byteOffset, n));
      return true;
    },
  };
}

interface HandleHolder {
  _handle?: unknown;
}

/**
 * Re-homes a socket just accepted by a net.Server onto one reusable read buffer and returns the socket to use from
 * now on; `onChunk` gets every read, as a view valid only during the call. Call it synchronously in the
 * 'connection' listener, before anything else touches the socket.
 */
export function adoptWithReadBuffer(socket: net.Socket, onChunk: ChunkHandler, { bytes = READ_BUFFER_BYTES, target }: { bytes?: number; target?: ReadTarget } = {}): { socket: net.Socket; transient: boolean } {
  const holder = socket as unknown as HandleHolder;
  const handle = holder._handle;
  if (!handle || typeof handle !== 'object' || !('readStart' in handle)) {
    socket.on('data', onChunk);
    return { socket, transient: false };
  }
  holder._handle = null;
  const adopted = new net.Socket({
    handle: handle as never,
    allowHalfOpen: socket.allowHalfOpen,
    readable: true,
    writable: true,
    onread: readBufferOption(onChunk, bytes, target),
  } as net.SocketConstructorOpts);
  // The old socket has no handle now: destroying it only settles its own state (and the server's count).
  socket.destroy();
  return { socket: adopted, transient: true };
}

/**
 * `net.connect` with every read into one reusable buffer. Reads that complete before `attach` (none in practice:
 * the caller attaches when 'connect' fires) are copied and handed over first.
 */
export function connectWithReadBuffer(options: net.NetConnectOpts): { socket: net.Socket; attach(onChunk: ChunkHandler, target?: ReadTarget): void } {
  const early: Buffer[] = [];
  let sink: ChunkHandler = (chunk) => early.push(Buffer.from(chunk));
  let where: ReadTarget | undefined;
  const socket = net.connect({ ...options, onread: readBufferOption((chunk) => sink(chunk), READ_BUFFER_BYTES, () => where?.()) });
  return {
    socket,
    attach(onChunk: ChunkHandler, target?: ReadTarget): void {
      sink = onChunk;
      where = target;
      for (const chunk of early.splice(0)) onChunk(chunk);
    },
  };
}
