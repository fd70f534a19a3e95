// Running the system tools of the blockdev frontend (losetup, fusermount3) as child processes: output collected,
// a non-zero exit turned into a BlockdevError that names the command line and quotes its stderr.

import { spawn } from 'node:child_process';
import { BlockdevError } from './errors.js';

export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** Runs `cmd args…` to completion; rejects with BlockdevCommandFailed (or BlockdevUnavailable when missing). */
export function exec(cmd: string, args: string[], { signal }: { signal?: AbortSignal } = {}): Promise<ExecResult> {
  const line = [cmd, ...args].join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(signal ? { signal } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') reject(new BlockdevError('BlockdevUnavailable', `Cannot run ${cmd}: it is not installed (not on PATH)`, { cause: err }));
      else reject(new BlockdevError('BlockdevCommandFailed', `${line}: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, sig) => {
      if (code === 0) return resolve({ stdout, stderr });
      const how = sig ? `was killed by ${sig}` : `exited with code ${code}`;
      reject(new BlockdevError('BlockdevCommandFailed', `${line} ${how}${stderr.trim() ? `: ${stderr.trim()}` : ''}`));
    });
  });
}
