// Kubernetes resource quantities (`32Mi`, `1Gi`, `500M`, `2147483648`): parsing to bytes and printing back, for
// PVC and PV sizes. Only the forms a storage request uses are accepted (no exponents, no milli-units).

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };

/** Bytes of a quantity, or undefined when it is not one. Fractions are rounded up (`1.5Gi` is exact anyway). */
export function parseQuantity(q: string | number | undefined): number | undefined {
  if (typeof q === 'number') return Number.isFinite(q) && q >= 0 ? Math.ceil(q) : undefined;
  if (typeof q !== 'string') return undefined;
  const m = /^(\d+(?:\.\d+)?)([KMGTPE]i|[kMGTPE])?$/.exec(q.trim());
  if (!m) return undefined;
  const unit = m[2] ?? '';
  const mult = BINARY[unit] ?? DECIMAL[unit];
  if (mult === undefined) return undefined;
  return Math.ceil(Number(m[1]) * mult);
}

/** The shortest exact binary form of `bytes` (`33554432` → `32Mi`), else the plain number. */
export function formatQuantity(bytes: number): string {
  for (const unit of ['Ei', 'Pi', 'Ti', 'Gi', 'Mi', 'Ki']) {
    const mult = BINARY[unit] as number;
    if (bytes >= mult && bytes % mult === 0) return `${bytes / mult}${unit}`;
  }
  return String(bytes);
}
