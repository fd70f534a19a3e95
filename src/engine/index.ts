// engine: a volume's controller over its replicas. `Engine` is the BlockDevice the NBD frontend serves: writes to
// every healthy replica, reads from one, failed replicas marked ERR, rebuild of a new replica by copying written
// extents only. `runEngine` is the `stratum engine` process body (engine + NBD frontend + control API).

export { ENGINE_ERROR_CODES, EngineError, isEngineError } from './errors.js';
export type { EngineErrorCode } from './errors.js';
export { Engine } from './engine.js';
export type { EngineOptions, EngineReplicaSpec } from './engine.js';
export type { CloneProgress } from './clone.js';
export type { EngineStatus, RebuildStatus, ReplicaBackend, ReplicaMode, ReplicaStatus } from './types.js';
export { ControlServer, EngineControl, parseEndpoint, statusFor } from './control.js';
export type { ControlListenOptions, ControlServerOptions } from './control.js';
export { runEngine } from './run.js';
export type { RunEngineOptions } from './run.js';
