// The CONTROL op's requests and answers (docs/replica-protocol.md, "CONTROL"): snapshot operations on a replica, and
// the layer-by-layer copy a rebuild and an export use. One home for these shapes: the replica (layered.ts), the
// server and client, the engine and the instance manager all import them from here.
//
// Wire form of a CONTROL request: `length` = bytes of the JSON request, `paylen` = length + bytes of binary data
// after it (layerWrite: a READ_EXTENT-encoded extent). The answer's payload: u32 JSON length, the JSON answer, then
// binary data (layerRead: a READ_EXTENT-encoded extent; readSnapshot: the bytes).

import { protocolError } from './errors.js';
import type { ChainLayer } from './chain.js';

export interface SnapshotInfo {
  name: string;
  /** The snapshot below, '' at the bottom (the backing image is never one). */
  parent: string;
  /** Snapshots above it, and 'volume-head' when the head sits on it. */
  children: string[];
  created: string;
  removed: boolean;
  userCreated: boolean;
  labels: Record<string, string>;
  /** Bytes of data blocks the layer holds (what it costs on disk). */
  size: number;
  revision: number;
}

/** The chain as a rebuild copies it: the source's layers, by id. */
export interface ChainView {
  head: number;
  headParent: number | null;
  layers: ChainLayer[];
}

export type ControlRequest =
  | { op: 'snapshot'; name: string; createdAt?: string; userCreated?: boolean; labels?: Record<string, string> }
  | { op: 'listSnapshots' }
  | { op: 'deleteSnapshot'; name: string }
  | { op: 'revertSnapshot'; name: string }
  /** `intoHead: false` merges only into child snapshots, never into the live head (the engine's tidy-up). */
  | { op: 'purgeSnapshots'; intoHead?: boolean }
  | { op: 'chain' }
  | { op: 'layerExtents'; layer: number; offset: number; maxExtents: number }
  | { op: 'layerRead'; layer: number; offset: number; length: number }
  | { op: 'installChain'; chain: ChainView }
  | { op: 'layerWrite'; layer: number; offset: number }
  | { op: 'finishChain' }
  /**
   * Ranges that may hold data. With `written`, only those some layer of the snapshot wrote (data or zeros): what a
   * clone on the same backing image must copy (the rest reads from the backing image on both sides).
   */
  | { op: 'snapshotAllocated'; name: string; offset: number; length: number; written?: boolean }
  | { op: 'readSnapshot'; name: string; offset: number; length: number };

export type ControlOp = ControlRequest['op'];

export interface ControlAnswer {
  result: unknown;
  data?: Uint8Array;
}

export const CONTROL_OPS: readonly ControlOp[] = [
  'snapshot', 'listSnapshots', 'deleteSnapshot', 'revertSnapshot', 'purgeSnapshots', 'chain', 'layerExtents',
  'layerRead', 'installChain', 'layerWrite', 'finishChain', 'snapshotAllocated', 'readSnapshot',
];

/** Largest JSON part of a CONTROL request or answer. */
export const MAX_CONTROL_JSON = 1024 * 1024;

export function encodeControlRequest(req: ControlRequest, data?: Uint8Array): { length: number; payload: Uint8Array } {
  const json = Buffer.from(JSON.stringify(req), 'utf8');
  return { length: json.byteLength, payload: data && data.byteLength > 0 ? Buffer.concat([json, data]) : json };
}

export function decodeControlRequest(payload: Uint8Array, jsonLength: number, at = 0): { req: ControlRequest; data: Uint8Array } {
  let req: unknown;
  try {
    req = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, jsonLength).toString('utf8'));
  } catch (err) {
    throw protocolError(at, `CONTROL request is not JSON: ${(err as Error).message}`);
  }
  const op = (req as { op?: unknown } | null)?.op;
  if (typeof op !== 'string' || !CONTROL_OPS.includes(op as ControlOp)) throw protocolError(at, `CONTROL op ${JSON.stringify(op)} is unknown`);
  return { req: req as ControlRequest, data: payload.subarray(jsonLength) };
}

export function encodeControlAnswer(a: ControlAnswer): Uint8Array[] {
  const json = Buffer.from(JSON.stringify(a.result ?? null), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.byteLength, 0);
  return a.data && a.data.byteLength > 0 ? [len, json, a.data] : [len, json];
}

export function decodeControlAnswer(bytes: Uint8Array, at = 0): ControlAnswer {
  if (bytes.length < 4) throw protocolError(at, 'CONTROL answer cut short');
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = b.readUInt32LE(0);
  if (4 + n > b.length) throw protocolError(at, `CONTROL answer's JSON of ${n} bytes runs past the payload`);
  let result: unknown;
  try {
    result = JSON.parse(b.subarray(4, 4 + n).toString('utf8'));
  } catch (err) {
    throw protocolError(at + 4, `CONTROL answer is not JSON: ${(err as Error).message}`);
  }
  return { result, data: b.subarray(4 + n) };
}
