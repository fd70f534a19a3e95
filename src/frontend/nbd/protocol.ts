// The pure NBD protocol module: constants plus encode/decode functions and incremental parsers for the
// fixed-newstyle handshake and the transmission phase (simple replies only). Nothing here touches sockets or files,
// so it can be unit- and fuzz-tested byte by byte. The pieces live in constants.ts, handshake.ts, transmission.ts.

export * from './constants.js';
export * from './handshake.js';
export * from './transmission.js';
export { ByteQueue } from '../../util/byte-queue.js';
