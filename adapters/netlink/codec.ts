// rtnetlink message codecs: request bodies (family header + attributes) and decoders turning kernel replies
// into the port's values. Pure functions; the socket and the service live in socket.ts and live.ts.
import type {
  Address,
  AddressFlag,
  Family,
  IpvlanFlag,
  IpvlanMode,
  Link,
  MacvlanMode,
  Neighbour,
  NeighbourFamily,
  NeighbourState,
  OperState,
  Route,
  RouteProtocol,
  RouteType,
  RtScope,
  Rule,
} from "../../core/ports/netlink.ts";
import { formatIp, formatMac, isMulticast } from "./ip.ts";
import { Errno, KernelError } from "./errors.ts";
import { Attrs, header, Writer } from "./wire.ts";

export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  NEWNEIGH: 28,
  DELNEIGH: 29,
  GETNEIGH: 30,
  NEWRULE: 32,
  DELRULE: 33,
  GETRULE: 34,
} as const;

export const AF_UNSPEC = 0, AF_INET = 2, AF_BRIDGE = 7, AF_INET6 = 10;
export const afOf = (f: Family): number => (f === 4 ? AF_INET : AF_INET6);
export const familyOfAf = (af: number): Family | undefined => (af === AF_INET ? 4 : af === AF_INET6 ? 6 : undefined);

export const IFF_UP = 0x1, IFF_LOOPBACK = 0x8, IFF_LOWER_UP = 0x10000;

export const IFLA = {
  ADDRESS: 1,
  IFNAME: 3,
  MTU: 4,
  LINK: 5,
  MASTER: 10,
  OPERSTATE: 16,
  LINKINFO: 18,
  IFALIAS: 20,
  NET_NS_FD: 28,
  EXT_MASK: 29,
} as const;
export const IFLA_INFO = { KIND: 1, DATA: 2 } as const;
const VETH_INFO_PEER = 1;
const IFLA_VLAN_ID = 1;
const IFLA_MACVLAN_MODE = 1;
const IFLA_IPVLAN_MODE = 1, IFLA_IPVLAN_FLAGS = 2;
const IFLA_VXLAN = {
  ID: 1,
  GROUP: 2,
  LINK: 3,
  LOCAL: 4,
  TTL: 5,
  LEARNING: 7,
  L2MISS: 13,
  L3MISS: 14,
  PORT: 15,
  GROUP6: 16,
  LOCAL6: 17,
} as const;
/** Skip per-link statistics in replies: smaller messages, fewer dump parts. */
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;

const IFA = { ADDRESS: 1, LOCAL: 2, LABEL: 3, BROADCAST: 4, FLAGS: 8 } as const;
const RTA = { DST: 1, OIF: 4, GATEWAY: 5, PRIORITY: 6, PREFSRC: 7, TABLE: 15 } as const;
export const RTM_F_CLONED = 0x200;
const RTNH_F_ONLINK = 4;
const FRA = { DST: 1, SRC: 2, IIFNAME: 3, PRIORITY: 6, FWMARK: 10, TABLE: 15, OIFNAME: 17 } as const;
const FR_ACT_TO_TBL = 1;
const NDA = { DST: 1, LLADDR: 2 } as const;

// ---------------------------------------------------------------------------------------------------------
// Enumerations both ways

const macvlanModes: Record<MacvlanMode, number> = { private: 1, vepa: 2, bridge: 4, passthru: 8, source: 16 };
const ipvlanModes: Record<IpvlanMode, number> = { l2: 0, l3: 1, l3s: 2 };
const ipvlanFlags: Record<IpvlanFlag, number> = { bridge: 0, private: 1, vepa: 2 };
const operStates: OperState[] = ["unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"];
export const scopes: Record<RtScope, number> = { universe: 0, site: 200, link: 253, host: 254, nowhere: 255 };
export const routeTypes: RouteType[] = [
  "unspec",
  "unicast",
  "local",
  "broadcast",
  "anycast",
  "multicast",
  "blackhole",
  "unreachable",
  "prohibit",
  "throw",
  "nat",
];
const protocols: Record<string, number> = { unspec: 0, redirect: 1, kernel: 2, boot: 3, static: 4, dhcp: 16 };
const ruleActions: Rule["action"][] = [
  "unspec",
  "lookup",
  "goto",
  "nop",
  "unspec",
  "unspec",
  "blackhole",
  "unreachable",
  "prohibit",
];
const addressFlagBits: [AddressFlag, number][] = [
  ["secondary", 0x01],
  ["nodad", 0x02],
  ["optimistic", 0x04],
  ["dadfailed", 0x08],
  ["homeaddress", 0x10],
  ["deprecated", 0x20],
  ["tentative", 0x40],
  ["permanent", 0x80],
  ["managetempaddr", 0x100],
  ["noprefixroute", 0x200],
  ["mcautojoin", 0x400],
  ["stable-privacy", 0x800],
];
export const nudBits: [NeighbourState, number][] = [
  ["incomplete", 0x01],
  ["reachable", 0x02],
  ["stale", 0x04],
  ["delay", 0x08],
  ["probe", 0x10],
  ["failed", 0x20],
  ["noarp", 0x40],
  ["permanent", 0x80],
];
const ntfBits: [string, number][] = [
  ["use", 0x01],
  ["self", 0x02],
  ["master", 0x04],
  ["proxy", 0x08],
  ["extern_learn", 0x10],
  ["offload", 0x20],
  ["sticky", 0x40],
  ["router", 0x80],
];
export const NTF_SELF = 0x02, NTF_MASTER = 0x04;

/** An address attribute as text; the kernel sends 4 or 16 bytes, anything else is a malformed message. */
function addressOf(raw: Uint8Array, what: string): string {
  if (raw.length !== 4 && raw.length !== 16) {
    throw new KernelError(Errno.EBADMSG, `${what}: an address of ${raw.length} bytes`);
  }
  return formatIp(raw);
}

const byValue = <K extends string>(table: Record<K, number>, v: number): K | undefined =>
  (Object.keys(table) as K[]).find((k) => table[k] === v);
const bitNames = <K>(bits: [K, number][], v: number): K[] => bits.filter(([, b]) => v & b).map(([n]) => n);

export const scopeName = (v: number): RtScope => byValue(scopes, v) ?? "universe";
export const protocolName = (v: number): RouteProtocol => (byValue(protocols, v) as RouteProtocol | undefined) ?? v;
export const protocolValue = (p: RouteProtocol): number => (typeof p === "number" ? p : protocols[p]);
export const addressFlagValue = (names: AddressFlag[]): number =>
  addressFlagBits.filter(([n]) => names.includes(n)).reduce((a, [, b]) => a | b, 0);
export const nudValue = (s: NeighbourState): number => nudBits.find(([n]) => n === s)![1];

// ---------------------------------------------------------------------------------------------------------
// Links

/** ifinfomsg: family, type, index, flags, change. */
export function ifinfomsg(w: Writer, index: number, flags = 0, change = 0): Writer {
  return w.u8(AF_UNSPEC).u8(0).u16(0).i32(index).u32(flags).u32(change);
}

export function decodeLink(payload: Uint8Array): Link {
  const h = header(payload, 16, "RTM_NEWLINK");
  const index = h.getInt32(4, true), flags = h.getUint32(8, true);
  const a = Attrs.parse(payload, 16);
  const info = a.nested(IFLA.LINKINFO);
  const infoKind = info?.str(IFLA_INFO.KIND);
  const data = info?.nested(IFLA_INFO.DATA);
  const kind = infoKind ?? (flags & IFF_LOOPBACK ? "loopback" : "device");
  const mac = a.raw(IFLA.ADDRESS);
  const link: {
    -readonly [K in keyof Link]: Link[K];
  } = {
    index,
    name: a.str(IFLA.IFNAME) ?? "",
    kind,
    mtu: a.u32(IFLA.MTU) ?? 0,
    up: (flags & IFF_UP) !== 0,
    lowerUp: (flags & IFF_LOWER_UP) !== 0,
    operstate: operStates[a.u8(IFLA.OPERSTATE) ?? 0] ?? "unknown",
  };
  if (mac && mac.length === 6) link.mac = formatMac(mac);
  const master = a.u32(IFLA.MASTER), parent = a.u32(IFLA.LINK), alias = a.str(IFLA.IFALIAS);
  if (master) link.master = master;
  if (parent && parent !== index) link.parent = parent;
  if (alias) link.alias = alias;
  if (data) {
    if (kind === "vlan") link.vlan = { id: data.u16(IFLA_VLAN_ID) ?? 0 };
    if (kind === "macvlan") link.macvlan = { mode: byValue(macvlanModes, data.u32(IFLA_MACVLAN_MODE) ?? 0) ?? "vepa" };
    if (kind === "ipvlan") {
      link.ipvlan = {
        mode: byValue(ipvlanModes, data.u16(IFLA_IPVLAN_MODE) ?? 0) ?? "l2",
        flag: byValue(ipvlanFlags, data.u16(IFLA_IPVLAN_FLAGS) ?? 0) ?? "bridge",
      };
    }
    if (kind === "vxlan") link.vxlan = decodeVxlan(data);
  }
  return link;
}

function decodeVxlan(d: Attrs): Link["vxlan"] {
  const raw = d.raw(IFLA_VXLAN.GROUP) ?? d.raw(IFLA_VXLAN.GROUP6);
  const remote = raw && !raw.every((b) => b === 0) ? addressOf(raw, "IFLA_VXLAN_GROUP") : undefined;
  const localRaw = d.raw(IFLA_VXLAN.LOCAL) ?? d.raw(IFLA_VXLAN.LOCAL6);
  const local = localRaw && !localRaw.every((b) => b === 0) ? addressOf(localRaw, "IFLA_VXLAN_LOCAL") : undefined;
  const dev = d.u32(IFLA_VXLAN.LINK);
  const out: { -readonly [K in keyof NonNullable<Link["vxlan"]>]: NonNullable<Link["vxlan"]>[K] } = {
    vni: d.u32(IFLA_VXLAN.ID) ?? 0,
    port: d.be16(IFLA_VXLAN.PORT) ?? 0,
    learning: (d.u8(IFLA_VXLAN.LEARNING) ?? 0) !== 0,
    l2miss: (d.u8(IFLA_VXLAN.L2MISS) ?? 0) !== 0,
    l3miss: (d.u8(IFLA_VXLAN.L3MISS) ?? 0) !== 0,
    ttl: d.u8(IFLA_VXLAN.TTL) ?? 0,
  };
  if (raw && remote) {
    if (isMulticast({ family: raw.length === 4 ? 4 : 6, bytes: raw })) out.group = remote;
    else out.remote = remote;
  }
  if (local) out.local = local;
  if (dev) out.dev = dev;
  return out;
}

/** Link attributes common to a created link and a veth peer. */
export interface LinkAttrs {
  readonly name?: string;
  readonly mtu?: number;
  readonly mac?: Uint8Array;
  readonly netnsFd?: number;
}

export function writeLinkAttrs(w: Writer, a: LinkAttrs): void {
  if (a.name !== undefined) w.attrStr(IFLA.IFNAME, a.name);
  if (a.mtu !== undefined) w.attrU32(IFLA.MTU, a.mtu);
  if (a.mac !== undefined) w.attr(IFLA.ADDRESS, a.mac);
  if (a.netnsFd !== undefined) w.attrU32(IFLA.NET_NS_FD, a.netnsFd);
}

/** Kind-specific IFLA_LINKINFO content, with parents already resolved to ifindexes. */
export type KindInfo =
  | { readonly kind: "veth"; readonly peer: LinkAttrs }
  | { readonly kind: "macvlan"; readonly mode: MacvlanMode }
  | { readonly kind: "ipvlan"; readonly mode: IpvlanMode; readonly flag: IpvlanFlag }
  | { readonly kind: "vlan"; readonly id: number }
  | {
    readonly kind: "vxlan";
    readonly vni: number;
    readonly port: number;
    readonly remote?: Uint8Array;
    readonly local?: Uint8Array;
    readonly learning: boolean;
    readonly l2miss: boolean;
    readonly l3miss: boolean;
    readonly dev?: number;
    readonly ttl?: number;
  }
  | { readonly kind: "bridge" }
  | { readonly kind: "dummy" };

export function writeLinkInfo(w: Writer, k: KindInfo): void {
  w.nest(IFLA.LINKINFO, (w) => {
    w.attrStr(IFLA_INFO.KIND, k.kind);
    switch (k.kind) {
      case "veth":
        w.nest(IFLA_INFO.DATA, (w) =>
          w.nest(VETH_INFO_PEER, (w) => {
            ifinfomsg(w, 0);
            writeLinkAttrs(w, k.peer);
          }));
        break;
      case "macvlan":
        w.nest(IFLA_INFO.DATA, (w) => w.attrU32(IFLA_MACVLAN_MODE, macvlanModes[k.mode]));
        break;
      case "ipvlan":
        w.nest(IFLA_INFO.DATA, (w) => {
          w.attrU16(IFLA_IPVLAN_MODE, ipvlanModes[k.mode]);
          w.attrU16(IFLA_IPVLAN_FLAGS, ipvlanFlags[k.flag]);
        });
        break;
      case "vlan":
        w.nest(IFLA_INFO.DATA, (w) => w.attrU16(IFLA_VLAN_ID, k.id));
        break;
      case "vxlan":
        w.nest(IFLA_INFO.DATA, (w) => {
          w.attrU32(IFLA_VXLAN.ID, k.vni);
          w.attrBe16(IFLA_VXLAN.PORT, k.port);
          if (k.remote) w.attr(k.remote.length === 4 ? IFLA_VXLAN.GROUP : IFLA_VXLAN.GROUP6, k.remote);
          if (k.local) w.attr(k.local.length === 4 ? IFLA_VXLAN.LOCAL : IFLA_VXLAN.LOCAL6, k.local);
          if (k.dev !== undefined) w.attrU32(IFLA_VXLAN.LINK, k.dev);
          if (k.ttl !== undefined) w.attrU8(IFLA_VXLAN.TTL, k.ttl);
          w.attrU8(IFLA_VXLAN.LEARNING, k.learning ? 1 : 0);
          w.attrU8(IFLA_VXLAN.L2MISS, k.l2miss ? 1 : 0);
          w.attrU8(IFLA_VXLAN.L3MISS, k.l3miss ? 1 : 0);
        });
        break;
      case "bridge":
      case "dummy":
        break;
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Addresses

export interface AddrBody {
  readonly family: Family;
  readonly prefix: number;
  readonly flags: number;
  readonly scope: number;
  readonly index: number;
  readonly local: Uint8Array;
  readonly broadcast?: Uint8Array;
  readonly label?: string;
}

export function encodeAddr(b: AddrBody): Uint8Array {
  const w = new Writer().u8(afOf(b.family)).u8(b.prefix).u8(b.flags & 0xff).u8(b.scope).u32(b.index);
  w.attr(IFA.LOCAL, b.local).attr(IFA.ADDRESS, b.local);
  // Flags above the first byte (noprefixroute, …) only fit in IFA_FLAGS.
  if (b.flags > 0xff) w.attrU32(IFA.FLAGS, b.flags);
  if (b.broadcast) w.attr(IFA.BROADCAST, b.broadcast);
  if (b.label !== undefined) w.attrStr(IFA.LABEL, b.label);
  return w.finish();
}

export const encodeAddrDump = (family: number): Uint8Array => new Writer().u8(family).u8(0).u8(0).u8(0).u32(0).finish();

export function decodeAddr(payload: Uint8Array): Address | undefined {
  const h = header(payload, 8, "RTM_NEWADDR");
  const family = familyOfAf(h.getUint8(0));
  if (!family) return undefined;
  const prefix = h.getUint8(1), scope = h.getUint8(3), index = h.getUint32(4, true);
  const a = Attrs.parse(payload, 8);
  // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
  const raw = a.raw(IFA.LOCAL) ?? a.raw(IFA.ADDRESS);
  if (!raw) return undefined;
  const address = addressOf(raw, "IFA_LOCAL");
  const flags = a.u32(IFA.FLAGS) ?? h.getUint8(2);
  const out: { -readonly [K in keyof Address]: Address[K] } = {
    link: index,
    family,
    cidr: `${address}/${prefix}`,
    address,
    prefix,
    scope: scopeName(scope),
    flags: bitNames(addressFlagBits, flags),
  };
  const label = a.str(IFA.LABEL), brd = a.raw(IFA.BROADCAST);
  if (label) out.label = label;
  if (brd) out.broadcast = addressOf(brd, "IFA_BROADCAST");
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Routes

export interface RouteBody {
  readonly family: Family;
  readonly dst?: Uint8Array;
  readonly dstLen: number;
  readonly table: number;
  readonly protocol: number;
  readonly scope: number;
  readonly type: number;
  readonly onlink: boolean;
  readonly gateway?: Uint8Array;
  readonly oif?: number;
  readonly metric?: number;
  readonly src?: Uint8Array;
}

export function encodeRoute(r: RouteBody): Uint8Array {
  const w = new Writer()
    .u8(afOf(r.family)).u8(r.dstLen).u8(0).u8(0)
    .u8(r.table < 256 ? r.table : 0).u8(r.protocol).u8(r.scope).u8(r.type)
    .u32(r.onlink ? RTNH_F_ONLINK : 0);
  if (r.table !== 0) w.attrU32(RTA.TABLE, r.table);
  if (r.dst && r.dstLen > 0) w.attr(RTA.DST, r.dst);
  if (r.gateway) w.attr(RTA.GATEWAY, r.gateway);
  if (r.oif !== undefined) w.attrU32(RTA.OIF, r.oif);
  if (r.metric !== undefined) w.attrU32(RTA.PRIORITY, r.metric);
  if (r.src) w.attr(RTA.PREFSRC, r.src);
  return w.finish();
}

export const encodeRouteDump = (family: number): Uint8Array => new Writer().u8(family).zeros(11).finish();

export function decodeRoute(payload: Uint8Array): Route | undefined {
  const h = header(payload, 12, "RTM_NEWROUTE");
  const family = familyOfAf(h.getUint8(0));
  if (!family || h.getUint32(8, true) & RTM_F_CLONED) return undefined;
  const dstLen = h.getUint8(1);
  const a = Attrs.parse(payload, 12);
  const dst = a.raw(RTA.DST);
  const out: { -readonly [K in keyof Route]: Route[K] } = {
    family,
    dst: dst && dstLen > 0 ? `${addressOf(dst, "RTA_DST")}/${dstLen}` : "default",
    table: a.u32(RTA.TABLE) ?? h.getUint8(4),
    scope: scopeName(h.getUint8(6)),
    type: routeTypes[h.getUint8(7)] ?? "unspec",
    protocol: protocolName(h.getUint8(5)),
  };
  const gw = a.raw(RTA.GATEWAY), oif = a.u32(RTA.OIF), metric = a.u32(RTA.PRIORITY), src = a.raw(RTA.PREFSRC);
  if (gw) out.gateway = addressOf(gw, "RTA_GATEWAY");
  if (oif !== undefined) out.link = oif;
  if (metric !== undefined) out.metric = metric;
  if (src) out.src = addressOf(src, "RTA_PREFSRC");
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Policy rules

export interface RuleBody {
  readonly family: Family;
  readonly src?: { readonly bytes: Uint8Array; readonly prefix: number };
  readonly dst?: { readonly bytes: Uint8Array; readonly prefix: number };
  readonly table?: number;
  readonly priority?: number;
  readonly iif?: string;
  readonly oif?: string;
  readonly fwmark?: number;
}

export function encodeRule(r: RuleBody): Uint8Array {
  const table = r.table ?? 0;
  const w = new Writer()
    .u8(afOf(r.family)).u8(r.dst?.prefix ?? 0).u8(r.src?.prefix ?? 0).u8(0)
    .u8(table < 256 ? table : 0).u8(0).u8(0).u8(r.table !== undefined ? FR_ACT_TO_TBL : 0)
    .u32(0);
  if (r.table !== undefined) w.attrU32(FRA.TABLE, r.table);
  if (r.src && r.src.prefix > 0) w.attr(FRA.SRC, r.src.bytes);
  if (r.dst && r.dst.prefix > 0) w.attr(FRA.DST, r.dst.bytes);
  if (r.priority !== undefined) w.attrU32(FRA.PRIORITY, r.priority);
  if (r.iif !== undefined) w.attrStr(FRA.IIFNAME, r.iif);
  if (r.oif !== undefined) w.attrStr(FRA.OIFNAME, r.oif);
  if (r.fwmark !== undefined) w.attrU32(FRA.FWMARK, r.fwmark);
  return w.finish();
}

export const encodeRuleDump = encodeRouteDump;

export function decodeRule(payload: Uint8Array): Rule | undefined {
  const h = header(payload, 12, "RTM_NEWRULE");
  const family = familyOfAf(h.getUint8(0));
  if (!family) return undefined;
  const dstLen = h.getUint8(1), srcLen = h.getUint8(2);
  const a = Attrs.parse(payload, 12);
  const out: { -readonly [K in keyof Rule]: Rule[K] } = {
    family,
    priority: a.u32(FRA.PRIORITY) ?? 0,
    table: a.u32(FRA.TABLE) ?? h.getUint8(4),
    action: ruleActions[h.getUint8(7)] ?? "unspec",
  };
  const src = a.raw(FRA.SRC), dst = a.raw(FRA.DST);
  if (src && srcLen > 0) out.src = `${addressOf(src, "FRA_SRC")}/${srcLen}`;
  if (dst && dstLen > 0) out.dst = `${addressOf(dst, "FRA_DST")}/${dstLen}`;
  const iif = a.str(FRA.IIFNAME), oif = a.str(FRA.OIFNAME), mark = a.u32(FRA.FWMARK);
  if (iif) out.iif = iif;
  if (oif) out.oif = oif;
  if (mark !== undefined) out.fwmark = mark;
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Neighbours and FDB entries

export const neighbourAf = (
  f: NeighbourFamily,
): number => (f === "bridge" ? AF_BRIDGE : f === "inet" ? AF_INET : AF_INET6);

export interface NeighBody {
  readonly af: number;
  readonly index: number;
  readonly state: number;
  readonly flags: number;
  readonly lladdr?: Uint8Array;
  readonly dst?: Uint8Array;
}

export function encodeNeigh(n: NeighBody): Uint8Array {
  const w = new Writer().u8(n.af).u8(0).u16(0).i32(n.index).u16(n.state).u8(n.flags).u8(0);
  if (n.lladdr) w.attr(NDA.LLADDR, n.lladdr);
  if (n.dst) w.attr(NDA.DST, n.dst);
  return w.finish();
}

export const encodeNeighDump = (af: number): Uint8Array => new Writer().u8(af).zeros(11).finish();

export function decodeNeigh(payload: Uint8Array): Neighbour | undefined {
  const h = header(payload, 12, "RTM_NEWNEIGH");
  const af = h.getUint8(0);
  const family: NeighbourFamily | undefined = af === AF_BRIDGE
    ? "bridge"
    : af === AF_INET
    ? "inet"
    : af === AF_INET6
    ? "inet6"
    : undefined;
  if (!family) return undefined;
  const a = Attrs.parse(payload, 12);
  const out: { -readonly [K in keyof Neighbour]: Neighbour[K] } = {
    family,
    link: h.getInt32(4, true),
    state: bitNames(nudBits, h.getUint16(8, true)),
    flags: bitNames(ntfBits, h.getUint8(10)),
  };
  const ll = a.raw(NDA.LLADDR), dst = a.raw(NDA.DST);
  if (ll && ll.length === 6) out.lladdr = formatMac(ll);
  if (dst && (dst.length === 4 || dst.length === 16)) out.dst = formatIp(dst);
  return out;
}
