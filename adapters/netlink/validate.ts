// Checks and normalisation of the port's request values, shared by the live layer and the in-memory twin so
// that both reject the same input the same way. Failures are KernelError(EINVAL) — what the kernel says —
// or the port's stricter rules (VLAN ID 1–4094, VNI 1–16777215) that both layers enforce alike.
import type {
  AddressSpec,
  Family,
  LinkSpec,
  NeighbourSpec,
  RouteSpec,
  RouteType,
  RtScope,
  RuleMatch,
} from "../../core/ports/netlink.ts";
import { Errno, KernelError } from "./errors.ts";
import { type Ip, isMulticast, maskBytes, parseIp, parseMac, parsePrefix, type Prefix, sameBytes } from "./ip.ts";

const invalid = (detail: string) => new KernelError(Errno.EINVAL, detail);

export const IFNAMSIZ = 16;

/** dev_valid_name(): 1–15 bytes, not "." or "..", no '/', ':' or whitespace. */
export function checkName(name: string): void {
  const bytes = new TextEncoder().encode(name).length;
  if (bytes === 0 || bytes >= IFNAMSIZ || name === "." || name === ".." || /[/:\s]/.test(name)) {
    throw invalid(`invalid interface name "${name}"`);
  }
}

export function ip(s: string, what = "address"): Ip {
  const v = parseIp(s);
  if (!v) throw invalid(`invalid ${what} "${s}"`);
  return v;
}

export function prefix(s: string, what = "prefix"): Prefix {
  const v = parsePrefix(s);
  if (!v) throw invalid(`invalid ${what} "${s}"`);
  return v;
}

export function mac(s: string): Uint8Array {
  const v = parseMac(s);
  if (!v) throw invalid(`invalid MAC address "${s}"`);
  return v;
}

/** A device MAC must be unicast and non-zero (eth_validate_addr); checked up front so both layers say EINVAL. */
export function deviceMac(s: string): Uint8Array {
  const m = mac(s);
  if (m[0] & 1 || m.every((b) => b === 0)) throw invalid(`${s} is not a unicast MAC address`);
  return m;
}

export function checkLinkSpec(spec: LinkSpec): void {
  checkName(spec.name);
  if (spec.mac !== undefined) deviceMac(spec.mac);
  switch (spec.kind) {
    case "veth":
      checkName(spec.peer.name);
      if (spec.peer.mac !== undefined) deviceMac(spec.peer.mac);
      break;
    case "vlan":
      if (!Number.isInteger(spec.id) || spec.id < 1 || spec.id > 4094) {
        throw new KernelError(Errno.ERANGE, `VLAN ID ${spec.id} outside 1–4094`);
      }
      break;
    case "vxlan": {
      if (!Number.isInteger(spec.vni) || spec.vni < 1 || spec.vni > 0xffffff) {
        throw new KernelError(Errno.ERANGE, `VNI ${spec.vni} outside 1–16777215`);
      }
      const port = spec.port ?? 4789;
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(`invalid VXLAN port ${port}`);
      const v = vxlanAddresses(spec);
      if (v.remote && isMulticast(v.remote) && spec.dev === undefined) {
        throw invalid("vxlan: multicast destination requires interface to be specified");
      }
      break;
    }
  }
}

/** The group/remote and local addresses of a vxlan spec, checked for consistency. */
export function vxlanAddresses(spec: Extract<LinkSpec, { kind: "vxlan" }>): { remote?: Ip; local?: Ip } {
  if (spec.group !== undefined && spec.remote !== undefined) throw invalid("vxlan: both group and remote given");
  const remoteText = spec.group ?? spec.remote;
  const remote = remoteText !== undefined ? ip(remoteText, "vxlan remote") : undefined;
  const local = spec.local !== undefined ? ip(spec.local, "vxlan local") : undefined;
  if (spec.group !== undefined && remote && !isMulticast(remote)) {
    throw invalid(`vxlan group ${spec.group} is not a multicast address`);
  }
  if (spec.remote !== undefined && remote && isMulticast(remote)) {
    throw invalid(`vxlan remote ${spec.remote} is a multicast address`);
  }
  if (remote && local && remote.family !== local.family) throw invalid("vxlan: local and remote families differ");
  return { ...(remote ? { remote } : {}), ...(local ? { local } : {}) };
}

// ---------------------------------------------------------------------------------------------------------

export interface AddrRequest {
  readonly ip: Prefix;
  readonly flags: number;
  readonly scope: RtScope;
  readonly broadcast?: Ip;
  readonly label?: string;
}

/** iproute2's default scope: host for loopback addresses, link for IPv6 link-local, else universe. */
export function defaultScope(p: Ip): RtScope {
  if (p.family === 4) return p.bytes[0] === 127 ? "host" : "universe";
  if (p.bytes.every((b, i) => (i === 15 ? b === 1 : b === 0))) return "host";
  return p.bytes[0] === 0xfe && (p.bytes[1] & 0xc0) === 0x80 ? "link" : "universe";
}

export function addrRequest(spec: AddressSpec): AddrRequest {
  const p = prefix(spec.cidr, "address");
  const broadcast = spec.broadcast !== undefined ? ip(spec.broadcast, "broadcast") : undefined;
  if (broadcast && (p.family !== 4 || broadcast.family !== 4)) throw invalid("broadcast is IPv4 only");
  if (spec.label !== undefined && (spec.label.length >= IFNAMSIZ)) throw invalid(`label "${spec.label}" too long`);
  return {
    ip: p,
    flags: (spec.nodad ? 0x02 : 0) | (spec.noprefixroute ? 0x200 : 0),
    scope: spec.scope ?? defaultScope(p),
    ...(broadcast ? { broadcast } : {}),
    ...(spec.label !== undefined ? { label: spec.label } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------------

export interface RouteRequest {
  readonly family: Family;
  /** Undefined for "default". */
  readonly dst?: Prefix;
  readonly dstLen: number;
  readonly gateway?: Ip;
  readonly table: number;
  readonly scope: RtScope;
  readonly type: RouteType;
  readonly metric?: number;
  readonly src?: Ip;
  readonly onlink: boolean;
}

export function routeRequest(spec: RouteSpec, forDelete: boolean): RouteRequest {
  const dst = spec.dst === "default" ? undefined : prefix(spec.dst, "route destination");
  const gateway = spec.gateway !== undefined ? ip(spec.gateway, "gateway") : undefined;
  const src = spec.src !== undefined ? ip(spec.src, "preferred source") : undefined;
  const family = dst?.family ?? gateway?.family ?? src?.family ?? spec.family ?? 4;
  for (const x of [dst, gateway, src]) {
    if (x && x.family !== family) throw invalid(`address family mismatch in route ${spec.dst}`);
  }
  if (spec.family !== undefined && spec.family !== family) throw invalid(`route ${spec.dst} is not IPv${spec.family}`);
  const type = spec.type ?? (forDelete ? "unspec" : "unicast");
  const table = spec.table ?? 254;
  if (!Number.isInteger(table) || table < 1 || table > 0xffffffff) throw invalid(`invalid table ${table}`);
  const scope = spec.scope ??
    (type === "local" || type === "nat"
      ? "host"
      : type === "broadcast" || type === "multicast" || type === "anycast"
      ? "link"
      : type === "unicast" || type === "unspec"
      ? (forDelete ? "nowhere" : gateway ? "universe" : "link")
      : "universe");
  return {
    family,
    ...(dst ? { dst } : {}),
    dstLen: dst?.prefix ?? 0,
    ...(gateway ? { gateway } : {}),
    table,
    scope,
    type,
    ...(spec.metric !== undefined ? { metric: spec.metric } : {}),
    ...(src ? { src } : {}),
    onlink: spec.onlink ?? false,
  };
}

/** The kernel rejects IPv4 routes with host bits set (IPv6 ones it masks silently). */
export function checkRouteDst(r: RouteRequest): Uint8Array | undefined {
  if (!r.dst) return undefined;
  const masked = maskBytes(r.dst.bytes, r.dst.prefix);
  if (r.family === 4 && !sameBytes(masked, r.dst.bytes)) throw invalid("Invalid prefix for given prefix length");
  return masked;
}

// ---------------------------------------------------------------------------------------------------------

export interface RuleRequest {
  readonly family: Family;
  readonly src?: Prefix;
  readonly dst?: Prefix;
  readonly table?: number;
  readonly priority?: number;
  readonly iif?: string;
  readonly oif?: string;
  readonly fwmark?: number;
}

export function ruleRequest(spec: RuleMatch): RuleRequest {
  const src = spec.src !== undefined ? prefix(spec.src, "rule source") : undefined;
  const dst = spec.dst !== undefined ? prefix(spec.dst, "rule destination") : undefined;
  const family = src?.family ?? dst?.family ?? spec.family ?? 4;
  if ((src && src.family !== family) || (dst && dst.family !== family) || (spec.family && spec.family !== family)) {
    throw invalid("address family mismatch in rule");
  }
  if (spec.iif !== undefined) checkName(spec.iif);
  if (spec.oif !== undefined) checkName(spec.oif);
  return {
    family,
    ...(src ? { src } : {}),
    ...(dst ? { dst } : {}),
    ...(spec.table !== undefined ? { table: spec.table } : {}),
    ...(spec.priority !== undefined ? { priority: spec.priority } : {}),
    ...(spec.iif !== undefined ? { iif: spec.iif } : {}),
    ...(spec.oif !== undefined ? { oif: spec.oif } : {}),
    ...(spec.fwmark !== undefined ? { fwmark: spec.fwmark } : {}),
  };
}

export const describeRule = (r: RuleMatch): string =>
  [
    r.priority !== undefined ? `priority ${r.priority}` : "",
    `from ${r.src ?? "all"}`,
    r.dst !== undefined ? `to ${r.dst}` : "",
    r.iif !== undefined ? `iif ${r.iif}` : "",
    r.oif !== undefined ? `oif ${r.oif}` : "",
    r.fwmark !== undefined ? `fwmark ${r.fwmark}` : "",
    r.table !== undefined ? `lookup ${r.table}` : "",
  ].filter(Boolean).join(" ");

export const describeRoute = (r: RouteSpec): string =>
  [
    r.type && r.type !== "unicast" ? r.type : "",
    r.dst,
    r.gateway !== undefined ? `via ${r.gateway}` : "",
    r.link !== undefined ? `dev ${r.link}` : "",
    r.table !== undefined && r.table !== 254 ? `table ${r.table}` : "",
    r.metric !== undefined ? `metric ${r.metric}` : "",
  ].filter(Boolean).join(" ");

// ---------------------------------------------------------------------------------------------------------

export interface NeighRequest {
  readonly lladdr: Uint8Array;
  readonly dst?: Ip;
}

export function neighRequest(spec: NeighbourSpec): NeighRequest {
  const dst = spec.dst !== undefined ? ip(spec.dst, "neighbour address") : undefined;
  if (spec.family !== "bridge") {
    if (!dst) throw invalid(`an ${spec.family} neighbour needs an address`);
    if (dst.family !== (spec.family === "inet" ? 4 : 6)) throw invalid(`${spec.dst} is not an ${spec.family} address`);
  }
  const lladdr = mac(spec.lladdr);
  return { lladdr, ...(dst ? { dst } : {}) };
}

export const describeNeighbour = (n: NeighbourSpec): string =>
  `${n.lladdr}${n.dst !== undefined ? ` dst ${n.dst}` : ""} dev ${n.link}${n.family === "bridge" ? " (fdb)" : ""}`;

/** /proc/sys keys under net/: the per-namespace ones. */
export function checkSysctlKey(key: string): void {
  if (!/^net\/[A-Za-z0-9_.:@-]+(\/[A-Za-z0-9_.:@-]+)*$/.test(key) || key.split("/").some((p) => p === "..")) {
    throw invalid(`invalid sysctl key "${key}" (expected net/... with / separators)`);
  }
}

/** Named namespaces: a single path component. */
export function checkNetnsName(name: string): void {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.length > 255) {
    throw invalid(`invalid netns name "${name}"`);
  }
}
