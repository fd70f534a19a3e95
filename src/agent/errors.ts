// The node agent's one error class. Callers classify by `code` (through `isAgentError(err, code)`), never by
// message text; messages say what was attempted, why it failed, and what a person can do about it.

export type AgentErrorCode =
  /** A flag or option of `stratum node` / `stratum up` is malformed. */
  | 'InvalidArgument'
  /** The image catalog file cannot be read or does not describe images. */
  | 'InvalidCatalog'
  /** A pod names an image that is not in the catalog. */
  | 'ImageNotFound'
  /** Every port of the configured range is reserved or in use. */
  | 'PortsExhausted'
  /** Another agent heartbeats for this node name (from another machine, or another data directory). */
  | 'NodeNameInUse'
  /** Another live process holds the data directory. */
  | 'DataDirLocked'
  /** A pod's process could not be started. */
  | 'StartFailed'
  /** The agent runs no pod of that name (log requests). */
  | 'PodNotFound'
  /** A pod's process did not end even after SIGKILL (stuck in the kernel); deletion is retried. */
  | 'StopFailed'
  /** A pod spec asks for something the agent does not do. */
  | 'UnsupportedPodSpec'
  /** The node agent that serves a pod's log cannot be found or reached. */
  | 'AgentUnreachable'
  /** A pod's volume could not be formatted, mounted or unmounted (the tool's stderr is quoted). */
  | 'VolumeMountFailed';

export class AgentError extends Error {
  override readonly name = 'AgentError';
  readonly code: AgentErrorCode;

  constructor(code: AgentErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
  }
}

export function isAgentError(err: unknown, code?: AgentErrorCode): err is AgentError {
  return err instanceof AgentError && (code === undefined || err.code === code);
}
