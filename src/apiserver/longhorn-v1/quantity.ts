// Volume sizes as Longhorn clients send them: a JSON number of bytes, a decimal string of bytes ("2147483648"), or
// a Kubernetes quantity ("2Gi", "1.5Gi", "500M"). Parsed exactly with BigInt — sizes past 2^53 bytes must not be
// rounded — into the decimal string Volume.spec.size stores. Returns a problem message instead of throwing so the
// caller can name the field.

const BINARY: Record<string, bigint> = { Ki: 1n << 10n, Mi: 1n << 20n, Gi: 1n << 30n, Ti: 1n << 40n, Pi: 1n << 50n, Ei: 1n << 60n };
const DECIMAL: Record<string, bigint> = { k: 10n ** 3n, M: 10n ** 6n, G: 10n ** 9n, T: 10n ** 12n, P: 10n ** 15n, E: 10n ** 18n };

/** Sizes are int64 on the wire (Longhorn's Go side). */
const MAX_BYTES = (1n << 63n) - 1n;

export type SizeResult = { bytes: string } | { problem: string };

export function parseSize(value: unknown): SizeResult {
  const usage = 'must be a number of bytes or a quantity such as 2Gi, 512Mi or 10G';
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value <= 0) return { problem: usage };
    return { bytes: String(value) };
  }
  if (typeof value !== 'string') return { problem: usage };
  const m = /^\s*([0-9]+)(?:\.([0-9]+))?\s*([KMGTPE]i|[kMGTPE])?\s*$/.exec(value);
  if (!m) return { problem: usage };
  const whole = m[1] ?? '0';
  const frac = m[2] ?? '';
  const mult = m[3] === undefined ? 1n : (BINARY[m[3]] ?? DECIMAL[m[3]] ?? 1n);
  const scale = 10n ** BigInt(frac.length);
  const scaled = (BigInt(whole) * scale + BigInt(frac === '' ? '0' : frac)) * mult;
  if (scaled % scale !== 0n) return { problem: 'is not a whole number of bytes' };
  const bytes = scaled / scale;
  if (bytes === 0n) return { problem: 'must be greater than 0' };
  if (bytes > MAX_BYTES) return { problem: `must be at most ${MAX_BYTES} bytes` };
  return { bytes: bytes.toString() };
}
