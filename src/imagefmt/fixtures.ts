// Test helpers for imagefmt (used only by the *.test.ts files beside it): running qemu-img and qemu-io, temp
// directories, a seeded PRNG, scattered random raw images and a builder for synthetic qcow2 headers.

import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mulberry32 } from '../util/prng.js';

const execFileAsync = promisify(execFile);

function missing(tool: string, pkg: string): string | false {
  const probe = spawnSync(tool, ['--version'], { stdio: 'ignore' });
  return probe.status === 0 ? false : `${tool} is not installed (Debian/Ubuntu package ${pkg}); test skipped`;
}

/** `false` when qemu-img runs, else the skip message for node:test's `skip` option. */
export const QEMU_IMG_MISSING = missing('qemu-img', 'qemu-utils');
export const QEMU_IO_MISSING = missing('qemu-io', 'qemu-utils');

export async function qemuImg(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('qemu-img', args, { maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

export async function qemuIo(path: string, format: string, ...commands: string[]): Promise<void> {
  await execFileAsync('qemu-io', ['-f', format, ...commands.flatMap((c) => ['-c', c]), path]);
}

export interface QemuInfo {
  format: string;
  'virtual-size': number;
  'cluster-size'?: number;
  'format-specific'?: { type: string; data: { compat?: string; 'compression-type'?: string; 'extended-l2'?: boolean } };
}

export async function qemuInfo(path: string): Promise<QemuInfo> {
  return JSON.parse(await qemuImg('info', '--output=json', path)) as QemuInfo;
}

/** A fresh temp dir and its removal. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'stratum-imagefmt-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** The fuzz seed: IMAGEFMT_FUZZ_SEED when set (to replay a failure), else random. Tests print it on failure. */
export function fuzzSeed(): number {
  const env = process.env['IMAGEFMT_FUZZ_SEED'];
  return env !== undefined && env !== '' ? Number(env) >>> 0 : Math.floor(Math.random() * 2 ** 32);
}

/** mulberry32: small, fast, good enough to pick fuzz cases, and reproducible from one 32-bit seed. */
export class Rng {
  readonly #next: () => number;

  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }

  u32(): number {
    return Math.floor(this.#next() * 2 ** 32);
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 2 ** 32) * n);
  }

  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new RangeError('pick from an empty list');
    return item;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

/**
 * Write a sparse raw image of `size` bytes with `blocks` blocks (512 B to 192 KiB) at random 512-aligned offsets:
 * random data, compressible data and a few explicit all-zero blocks; and random data in the last sector.
 */
export async function writeScatteredRaw(path: string, size: number, rng: Rng, blocks: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.truncate(size);
    for (let i = 0; i < blocks; i++) {
      const length = Math.min(size, 512 * (1 + rng.int(384)));
      const offset = 512 * rng.int((size - length) / 512 + 1);
      const data = i % 8 === 7 ? new Uint8Array(length) : i % 4 === 1 ? compressible(rng, length) : rng.bytes(length);
      await fh.write(data, 0, length, offset);
    }
    await fh.write(rng.bytes(512), 0, 512, size - 512);
  } finally {
    await fh.close();
  }
}

/** Data that deflates well (a short random pattern repeated), so that qemu-img -c really compresses it. */
function compressible(rng: Rng, length: number): Uint8Array {
  const pattern = rng.bytes(1 + rng.int(64));
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (pattern[i % pattern.length] ?? 0) + (i >> 12);
  return out;
}

export interface HeaderSpec {
  version?: number;
  clusterBits?: number;
  size?: number;
  l1Size?: number;
  l1Offset?: number;
  refcountOffset?: number;
  backing?: { offset: number; name: string };
  cryptMethod?: number;
  incompatible?: bigint;
  compatible?: bigint;
  autoclear?: bigint;
  refcountOrder?: number;
  headerLength?: number;
  compressionType?: number;
  extensions?: { type: number; data: Uint8Array }[];
  /** Bytes to return (default: one cluster). */
  length?: number;
}

/** A synthetic qcow2 first cluster following `spec` (defaults: a valid v3 image of 1 MiB with 64 KiB clusters). */
export function buildQcow2Header(spec: HeaderSpec = {}): Uint8Array {
  const clusterBits = spec.clusterBits ?? 16;
  const version = spec.version ?? 3;
  const buf = new Uint8Array(spec.length ?? 2 ** Math.min(clusterBits, 16));
  const v = new DataView(buf.buffer);
  const headerLength = spec.headerLength ?? (version === 2 ? 72 : 112);
  v.setUint32(0, 0x514649fb);
  v.setUint32(4, version);
  if (spec.backing !== undefined) {
    const name = new TextEncoder().encode(spec.backing.name);
    v.setBigUint64(8, BigInt(spec.backing.offset));
    v.setUint32(16, name.length);
    buf.set(name, spec.backing.offset);
  }
  v.setUint32(20, clusterBits);
  v.setBigUint64(24, BigInt(spec.size ?? 1024 * 1024));
  v.setUint32(32, spec.cryptMethod ?? 0);
  v.setUint32(36, spec.l1Size ?? 1);
  v.setBigUint64(40, BigInt(spec.l1Offset ?? 3 * 2 ** clusterBits));
  v.setBigUint64(48, BigInt(spec.refcountOffset ?? 2 ** clusterBits));
  v.setUint32(56, 1);
  if (version !== 2) {
    v.setBigUint64(72, spec.incompatible ?? 0n);
    v.setBigUint64(80, spec.compatible ?? 0n);
    v.setBigUint64(88, spec.autoclear ?? 0n);
    v.setUint32(96, spec.refcountOrder ?? 4);
    v.setUint32(100, headerLength);
    if (headerLength > 104) buf[104] = spec.compressionType ?? 0;
  }
  let at = headerLength;
  for (const ext of spec.extensions ?? []) {
    v.setUint32(at, ext.type);
    v.setUint32(at + 4, ext.data.length);
    buf.set(ext.data, at + 8);
    at += 8 + Math.ceil(ext.data.length / 8) * 8;
  }
  return buf;
}

/** One feature-name-table entry (48 bytes). */
export function featureNameEntry(type: number, bit: number, name: string): Uint8Array {
  const entry = new Uint8Array(48);
  entry[0] = type;
  entry[1] = bit;
  entry.set(new TextEncoder().encode(name).subarray(0, 46), 2);
  return entry;
}
