// IP address and CIDR arithmetic on bigints, so IPv4 /8 and IPv6 /64 networks need no special cases.
import ipaddr from "ipaddr.js";

export type Family = 4 | 6;

export interface Ip {
  readonly family: Family;
  readonly value: bigint;
}

export interface Cidr {
  readonly family: Family;
  /** The network address (host bits cleared). */
  readonly base: bigint;
  readonly prefix: number;
  /** Number of addresses in the CIDR. */
  readonly size: bigint;
}

const bits = (f: Family) => (f === 4 ? 32 : 128);

function fromBytes(bytes: readonly number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

function toBytes(family: Family, value: bigint): number[] {
  const n = family === 4 ? 4 : 16;
  const out = new Array<number>(n);
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}

/** Parses a plain address. IPv4 must be dotted quad (ipaddr.js alone accepts forms like "10.1"). */
export function parseIp(text: string): Ip | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) {
    return { family: 4, value: fromBytes(ipaddr.IPv4.parse(text).toByteArray()) };
  }
  if (text.includes(":") && ipaddr.IPv6.isValid(text) && !text.includes("%")) {
    return { family: 6, value: fromBytes(ipaddr.IPv6.parse(text).toByteArray()) };
  }
  return undefined;
}

export function formatIp(ip: Ip): string {
  const bytes = toBytes(ip.family, ip.value);
  return ip.family === 4 ? bytes.join(".") : (ipaddr.fromByteArray(bytes) as ipaddr.IPv6).toRFC5952String();
}

/** Parses "addr/prefix"; the address part may have host bits set (they are kept in `ip`). */
export function parseCidr(text: string): { cidr: Cidr; ip: Ip } | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > bits(ip.family)) return undefined;
  return { cidr: makeCidr(ip.family, ip.value, prefix), ip };
}

export function makeCidr(family: Family, addr: bigint, prefix: number): Cidr {
  const hostBits = BigInt(bits(family) - prefix);
  const size = 1n << hostBits;
  return { family, base: (addr >> hostBits) << hostBits, prefix, size };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, value: c.base })}/${c.prefix}`;
}

/** "10.0.0.5/24": an address carrying its network's prefix, as CNI results and DanmEps hold them. */
export function formatWithPrefix(ip: Ip, prefix: number): string {
  return `${formatIp(ip)}/${prefix}`;
}

export const lastAddress = (c: Cidr): bigint => c.base + c.size - 1n;

export function contains(c: Cidr, ip: Ip): boolean {
  return ip.family === c.family && ip.value >= c.base && ip.value <= lastAddress(c);
}

/** True when `inner` lies entirely inside `outer`. */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.family === outer.family && inner.prefix >= outer.prefix && inner.base >= outer.base &&
    inner.base + inner.size <= outer.base + outer.size;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.base <= lastAddress(b) && b.base <= lastAddress(a);
}
