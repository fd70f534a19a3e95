// Executes one NBD transmission request against a BlockDevice, apart from sockets: the checks that decide the error
// value before the device is touched (flags, range, read-only, payload limit), the device call itself, and the
// per-export counters. Also the transmission flags an export advertises.

import type { BlockDevice } from './device.js';
import { NbdCmd, NbdCmdFlag, NbdErrno, NbdFlag } from './constants.js';
import type { NbdRequest } from './transmission.js';

/** Live counters of one export; `NbdServer.stats` hands out copies. */
export interface NbdExportStats {
  connections: number;
  reads: number;
  writes: number;
  flushes: number;
  trims: number;
  writeZeroes: number;
  caches: number;
  bytesRead: number;
  bytesWritten: number;
  /** Requests answered with a non-zero error. */
  errors: number;
  /** Requests handed to the device and not yet answered. */
  inFlight: number;
  /** Highest `inFlight` seen since the export was added. */
  peakInFlight: number;
}

/** Transmission flags for a device: everything we implement, minus the write side on read-only devices. */
export function transmissionFlags(device: BlockDevice): number {
  let flags = NbdFlag.HAS_FLAGS | NbdFlag.SEND_FLUSH | NbdFlag.SEND_CACHE;
  flags |= device.readOnly ? NbdFlag.READ_ONLY : NbdFlag.SEND_FUA | NbdFlag.SEND_TRIM | NbdFlag.SEND_WRITE_ZEROES;
  if (device.multiConn) flags |= NbdFlag.CAN_MULTI_CONN;
  return flags;
}

/** Memory a request pins while in flight: its payload or its read buffer. */
export function costOf(r: NbdRequest): number {
  if (r.type === NbdCmd.READ) return r.length;
  return r.data?.byteLength ?? 0;
}

/** The error value to answer without calling the device, or 0 when the request may run. */
export function validateRequest(r: NbdRequest, device: BlockDevice, maxPayload: number): number {
  const allowed = r.type === NbdCmd.WRITE_ZEROES ? NbdCmdFlag.FUA | NbdCmdFlag.NO_HOLE : NbdCmdFlag.FUA;
  if ((r.flags & ~allowed) !== 0) return NbdErrno.EINVAL;
  const outside = r.offset > device.size || r.length > device.size - r.offset;
  switch (r.type) {
    case NbdCmd.READ:
      return r.length > maxPayload || outside ? NbdErrno.EINVAL : NbdErrno.OK;
    case NbdCmd.CACHE:
      return outside ? NbdErrno.EINVAL : NbdErrno.OK;
    case NbdCmd.FLUSH:
      return r.offset !== 0 || r.length !== 0 ? NbdErrno.EINVAL : NbdErrno.OK;
    case NbdCmd.TRIM:
      if (device.readOnly) return NbdErrno.EPERM;
      return outside ? NbdErrno.EINVAL : NbdErrno.OK;
    case NbdCmd.WRITE:
    case NbdCmd.WRITE_ZEROES:
      if (device.readOnly) return NbdErrno.EPERM;
      if (r.oversized) return NbdErrno.EINVAL;
      // Writes past the end are ENOSPC per the spec (and qemu-nbd and nbdkit), other commands EINVAL.
      return outside ? NbdErrno.ENOSPC : NbdErrno.OK;
    default:
      // Unknown commands, and BLOCK_STATUS / RESIZE which need negotiation we never offer.
      return NbdErrno.EINVAL;
  }
}

/** Runs a validated request on the device; resolves with the data of a READ. */
export async function dispatchRequest(
  r: NbdRequest,
  device: BlockDevice,
  signal: AbortSignal,
): Promise<Uint8Array | undefined> {
  const fua = (r.flags & NbdCmdFlag.FUA) !== 0;
  switch (r.type) {
    case NbdCmd.READ: {
      if (r.length === 0) return new Uint8Array(0);
      const data = await device.read(r.offset, r.length, { signal });
      if (data.byteLength !== r.length) {
        throw new Error(`device returned ${data.byteLength} bytes for a read of ${r.length}`);
      }
      return data;
    }
    case NbdCmd.WRITE:
      if (r.length > 0) await device.write(r.offset, r.data!, { fua, signal });
      return undefined;
    case NbdCmd.FLUSH:
      if (!device.readOnly) await device.flush({ signal });
      return undefined;
    case NbdCmd.TRIM:
      if (r.length > 0) await device.trim(r.offset, r.length, { fua, signal });
      return undefined;
    case NbdCmd.WRITE_ZEROES: {
      const noHole = (r.flags & NbdCmdFlag.NO_HOLE) !== 0;
      if (r.length > 0) await device.writeZeroes(r.offset, r.length, { fua, noHole, signal });
      return undefined;
    }
    default:
      return undefined; // NBD_CMD_CACHE: a hint we accept and ignore
  }
}

/** Adds a finished request to its export's counters. */
export function countRequest(s: NbdExportStats, r: NbdRequest, errno: number): void {
  const ok = errno === NbdErrno.OK;
  if (!ok) s.errors++;
  switch (r.type) {
    case NbdCmd.READ:
      s.reads++;
      if (ok) s.bytesRead += r.length;
      break;
    case NbdCmd.WRITE:
      s.writes++;
      if (ok) s.bytesWritten += r.length;
      break;
    case NbdCmd.FLUSH:
      s.flushes++;
      break;
    case NbdCmd.TRIM:
      s.trims++;
      break;
    case NbdCmd.WRITE_ZEROES:
      s.writeZeroes++;
      break;
    case NbdCmd.CACHE:
      s.caches++;
      break;
  }
}
