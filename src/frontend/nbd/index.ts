// NBD frontend: serves block devices (a volume's engine, a backing image file, a test file) to NBD clients such
// as qemu, nbdcopy, nbdfuse, fio and the kernel's nbd-client, over TCP or a Unix socket. Public entry of the
// folder: the server and its BlockDevice contract, a file-backed device, a small client for tests and tooling,
// and the pure protocol module (encoders, decoders, incremental parsers) for anyone speaking NBD by hand.

export { NbdServer } from './server.js';
export type {
  NbdServerOptions,
  NbdExportOptions,
  NbdListenOptions,
  NbdServerAddress,
  NbdExportStats,
} from './server.js';
export type { BlockDevice } from './device.js';
export { SwappableDevice } from './swappable.js';
export { nbdErrnoFromError } from './device.js';
export { FileBlockDevice } from './file-device.js';
export type { FileBlockDeviceOptions } from './file-device.js';
export { NbdClient } from './client.js';
export type { NbdEndpoint, NbdConnectOptions, NbdRawRequest, NbdRawReply } from './client.js';
export { NbdError, isNbdError, isProtocolError } from './errors.js';
export type { NbdErrorCode } from './errors.js';
export * as nbdProtocol from './protocol.js';
export { NbdCmd, NbdCmdFlag, NbdErrno, NbdFlag, nbdErrnoName } from './constants.js';
