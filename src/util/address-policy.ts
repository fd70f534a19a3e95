// Which IP addresses a download may connect to: not this cluster's own network. Refused (unless the setting
// allow-private-download-urls is on): loopback, unspecified, private (RFC 1918), shared/CGNAT, link-local (where
// cloud metadata services live: 169.254.169.254, fd00:ec2::254 is unique-local), unique-local, multicast,
// broadcast and reserved ranges, and every IPv6 form that embeds an IPv4 address (IPv4-mapped, IPv4-compatible,
// NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16) is judged by the IPv4 address inside; Teredo
// (2001:0::/32) is refused outright (its client address is obfuscated and reaches any IPv4 host).
// Pure functions; callers apply them to the address actually connected to (after DNS, after every redirect).

import { isIP } from 'node:net';

function v4Problem(a: number, b: number, c: number, d: number): string | undefined {
  if (a === 127) return 'a loopback address';
  if (a === 0) return 'an unspecified address';
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return 'a private address';
  if (a === 169 && b === 254) return 'a link-local address (cloud metadata lives here)';
  if (a === 100 && b >= 64 && b <= 127) return 'a shared (carrier-grade NAT) address';
  if (a >= 224 && a <= 239) return 'a multicast address';
  if (a === 255 && b === 255 && c === 255 && d === 255) return 'the broadcast address';
  if (a >= 240) return 'a reserved address';
  if (a === 192 && b === 0 && c === 0) return 'an IETF protocol assignment (192.0.0.0/24)';
  if (a === 198 && (b === 18 || b === 19)) return 'a benchmarking address';
  return undefined;
}

/** The eight 16-bit groups of an IPv6 address (with an embedded dotted quad), or undefined when malformed. */
export function ipv6Groups(ip: string): number[] | undefined {
  let s = ip.toLowerCase().replace(/%.*$/, '');
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (quad) {
    const n = quad.slice(1).map(Number);
    if (n.some((x) => x > 255)) return undefined;
    s = `${s.slice(0, quad.index)}${(((n[0] ?? 0) << 8) | (n[1] ?? 0)).toString(16)}:${(((n[2] ?? 0) << 8) | (n[3] ?? 0)).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const part = (h: string | undefined) => (h ? h.split(':') : []);
  const head = part(halves[0]);
  const tail = part(halves[1]);
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  if (fill < 0 || (halves.length === 1 && head.length !== 8)) return undefined;
  const groups = [...head, ...Array<string>(fill).fill('0'), ...tail].map((g) => (/^[0-9a-f]{1,4}$/.test(g) ? Number.parseInt(g, 16) : NaN));
  return groups.length === 8 && groups.every((g) => Number.isInteger(g)) ? groups : undefined;
}

function embedded(hi: number, lo: number): [number, number, number, number] {
  return [hi >> 8, hi & 255, lo >> 8, lo & 255];
}

function v6Problem(ip: string): string | undefined {
  const g = ipv6Groups(ip);
  if (!g) return 'a malformed IPv6 address';
  const [g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0] = g;
  const zeroTo = (n: number) => g.slice(0, n).every((x) => x === 0);
  if (zeroTo(7) && g7 === 1) return 'a loopback address';
  if (zeroTo(8)) return 'an unspecified address';
  const inner = (why: string, v4: [number, number, number, number]) => {
    const p = v4Problem(...v4);
    return p ? `${p} (${why} ${v4.join('.')})` : undefined;
  };
  if (zeroTo(5) && g5 === 0xffff) return inner('IPv4-mapped', embedded(g6, g7));
  if (zeroTo(6)) return inner('IPv4-compatible', embedded(g6, g7));
  if (g0 === 0x64 && g1 === 0xff9b && ((g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) || g2 === 1)) return inner('NAT64 of', embedded(g6, g7));
  if (g0 === 0x2002) return inner('6to4 of', embedded(g1, g2));
  if (g0 === 0x2001 && g1 === 0) return 'a Teredo address (tunnels to any IPv4 host)';
  if ((g0 & 0xffc0) === 0xfe80) return 'a link-local address';
  if ((g0 & 0xfe00) === 0xfc00) return 'a unique-local (private) address';
  if ((g0 & 0xff00) === 0xff00) return 'a multicast address';
  if ((g0 & 0xffc0) === 0xfec0) return 'a site-local address';
  if (g0 === 0x2001 && g1 === 0xdb8) return 'a documentation address';
  if (g0 === 0x100 && g1 === 0 && g2 === 0 && g3 === 0) return 'a discard-only address';
  return undefined;
}

/** Why connecting to the IP address `ip` is refused, or undefined when it is a public address. */
export function addressProblem(ip: string): string | undefined {
  const bare = ip.replace(/^\[|\]$/g, '');
  const family = isIP(bare.replace(/%.*$/, ''));
  if (family === 4) {
    const [a = 0, b = 0, c = 0, d = 0] = bare.split('.').map(Number);
    return v4Problem(a, b, c, d);
  }
  if (family === 6) return v6Problem(bare);
  return `not an IP address (${JSON.stringify(ip)})`;
}
