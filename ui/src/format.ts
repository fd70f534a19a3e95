// Formatting for people: sizes, ages, rates, states and their colours, conditions in words.

import type { Condition } from './api/index.js';

export function bytes(n: number | string | undefined): string {
  const v = Number(n ?? 0);
  if (!Number.isFinite(v) || v <= 0) return v === 0 ? '0 B' : '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = v;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x >= 100 || i === 0 ? Math.round(x) : x.toFixed(1)} ${units[i]}`;
}

export function age(ts: string | undefined, now = Date.now()): string {
  if (!ts) return '—';
  const s = Math.max(0, Math.floor((now - Date.parse(ts)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export function rate(bytesPerSecond: number): string {
  return bytesPerSecond > 0 ? `${bytes(bytesPerSecond)}/s` : '—';
}

/** Mantine colour of a backing-image copy state: green usable, blue moving, red broken, orange not known. */
export function copyColor(state: string | undefined): string {
  switch (state) {
    case 'ready':
      return 'green';
    case 'in-progress':
    case 'ready-for-transfer':
      return 'blue';
    case 'pending':
    case 'starting':
      return 'yellow';
    case 'failed':
    case 'failed-and-cleanup':
      return 'red';
    case 'unknown':
      return 'orange';
    default:
      return 'gray';
  }
}

export function volumeStateColor(state: string | undefined): string {
  return state === 'attached' ? 'green' : state === 'detached' ? 'gray' : state === 'deleting' ? 'red' : 'blue';
}

export function robustnessColor(r: string | undefined): string {
  return r === 'healthy' ? 'green' : r === 'degraded' ? 'yellow' : r === 'faulted' ? 'red' : 'gray';
}

/** A condition as a sentence. */
export function conditionWords(c: Condition): string {
  const msg = c.message ? `: ${c.message}` : '';
  const yes = c.status === 'True';
  switch (c.type) {
    case 'WaitForBackingImage':
      return yes ? `Waiting for the backing image copy on its disk${msg}` : `The backing image copy is ready${msg}`;
    case 'Scheduled':
      return yes ? 'Every replica has a disk' : `Replicas cannot all be placed${c.reason ? ` (${c.reason})` : ''}${msg}`;
    case 'Attached':
      if (yes) return `Attached${msg}`;
      if (c.reason === 'Attaching') return `Attaching${msg}`;
      if (c.reason === 'AttachTimeout') return `Attaching takes longer than 5 minutes; still trying${msg}`;
      if (c.reason === 'Detaching') return `Detaching${msg}`;
      return `Not attached${msg}`;
    case 'Ready':
      return yes ? `Ready${msg}` : `Not ready${c.reason ? ` (${c.reason})` : ''}${msg}`;
    case 'Schedulable':
      return yes ? 'Schedulable' : `Not schedulable${msg}`;
    case 'InstanceReady':
      return yes ? 'Process running' : `Process not running${msg}`;
    default:
      return `${c.type}: ${c.status}${c.reason ? ` (${c.reason})` : ''}${msg}`;
  }
}

/** Parses sizes typed by people: bytes, or a quantity such as 2Gi, 512Mi, 1.5G. */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k)?i?B?\s*$/.exec(text);
  if (!m) return undefined;
  const mult: Record<string, number> = { '': 1, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, K: 1e3, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Math.ceil(Number(m[1]) * (mult[m[2] ?? ''] ?? 1));
}
