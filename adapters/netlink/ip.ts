// IP addresses, prefixes and MAC addresses as bytes and canonical strings (what `ip` prints: dotted quads,
// RFC 5952 IPv6, lower-case colon-separated MACs). Shared by the live codec and the in-memory twin.
import type { Family } from "../../core/ports/netlink.ts";

export interface Ip {
  readonly family: Family;
  readonly bytes: Uint8Array;
}

export interface Prefix extends Ip {
  readonly prefix: number;
}

function parseV4(s: string): Uint8Array | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^(0|[1-9]\d{0,2})$/.test(parts[i])) return undefined;
    const n = Number(parts[i]);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseV6(s: string): Uint8Array | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || s.length < 2) return undefined;
  let tail4: Uint8Array | undefined;
  let text = s;
  const lastColon = s.lastIndexOf(":");
  if (s.includes(".")) {
    tail4 = parseV4(s.slice(lastColon + 1));
    if (!tail4) return undefined;
    text = s.slice(0, lastColon + 1) + "0:0";
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (h: string) => (h === "" ? [] : h.split(":"));
  const head = groups(halves[0]), rest = halves.length === 2 ? groups(halves[1]) : [];
  const total = head.length + rest.length;
  if (halves.length === 1 ? total !== 8 : total > 7) return undefined;
  const all = [...head, ...Array(8 - total).fill("0"), ...rest];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(all[i])) return undefined;
    const n = parseInt(all[i], 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  }
  if (tail4) out.set(tail4, 12);
  return out;
}

/** Parses an IPv4 or IPv6 address; undefined when malformed. */
export function parseIp(s: string): Ip | undefined {
  if (s.includes(":")) {
    const b = parseV6(s);
    return b && { family: 6, bytes: b };
  }
  const b = parseV4(s);
  return b && { family: 4, bytes: b };
}

/** Parses "addr/len"; a bare address is a host prefix. */
export function parsePrefix(s: string): Prefix | undefined {
  const slash = s.indexOf("/");
  const ip = parseIp(slash < 0 ? s : s.slice(0, slash));
  if (!ip) return undefined;
  const max = ip.family === 4 ? 32 : 128;
  if (slash < 0) return { ...ip, prefix: max };
  const lenText = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText)) return undefined;
  const prefix = Number(lenText);
  return prefix <= max ? { ...ip, prefix } : undefined;
}

export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return [...bytes].join(".");
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((bytes[i] << 8) | bytes[i + 1]);
  // IPv4-mapped addresses print with a dotted tail, as inet_ntop does.
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return `::ffff:${[...bytes.subarray(12)].join(".")}`;
  // The longest run of two or more zero groups becomes "::" (the first one on a tie).
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** Canonical text of an address string; undefined when malformed. */
export function canonicalIp(s: string): string | undefined {
  const ip = parseIp(s);
  return ip && formatIp(ip.bytes);
}

/** Zeroes the host bits. */
export function maskBytes(bytes: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < out.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - 8 * i));
    out[i] &= bits === 0 ? 0 : (0xff << (8 - bits)) & 0xff;
  }
  return out;
}

export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** True when `ip` lies inside `net`/`prefix`. */
export function contains(net: Uint8Array, prefix: number, ip: Uint8Array): boolean {
  return net.length === ip.length && sameBytes(maskBytes(net, prefix), maskBytes(ip, prefix));
}

export function isMulticast(ip: Ip): boolean {
  return ip.family === 4 ? (ip.bytes[0] & 0xf0) === 0xe0 : ip.bytes[0] === 0xff;
}

export function parseMac(s: string): Uint8Array | undefined {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(s)) return undefined;
  return Uint8Array.from(s.split(":").map((x) => parseInt(x, 16)));
}

export const formatMac = (b: Uint8Array): string => [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
