// The kernel network stack as the core sees it: links, addresses, routes, policy rules, neighbours/FDB,
// per-namespace sysctls, gratuitous ARP and named network namespaces.
//
// Everything happens through a namespace handle (`NetnsHandle`): `netlink.host` acts in the namespace the
// process started in, `netlink.netns(ref)` opens a scoped handle whose methods act inside another one. The
// namespace switch never leaks: other work running meanwhile stays where it was.
//
// Live layer: adapters/netlink/live.ts (rtnetlink over FFI). In-memory layer: adapters/netlink/memory.ts
// (a simulated kernel enforcing the same rules). Contract: tests/contract/netlink.ts.
import { Context, Effect, Schema, type Scope } from "effect";

// ---------------------------------------------------------------------------------------------------------
// Namespace references

/** Which network namespace a handle or a target refers to. */
export type NetnsRef =
  /** The namespace the process was in when the layer was built. */
  | { readonly _tag: "Host" }
  /** A bind-mounted namespace file, e.g. /run/netns/x or a CNI_NETNS path. */
  | { readonly _tag: "Path"; readonly path: string }
  /** An open namespace file descriptor (see `Netlink.openNetns`). */
  | { readonly _tag: "Fd"; readonly fd: number };

export const NetnsRef = {
  host: { _tag: "Host" } as NetnsRef,
  path: (path: string): NetnsRef => ({ _tag: "Path", path }),
  fd: (fd: number): NetnsRef => ({ _tag: "Fd", fd }),
  describe: (ref: NetnsRef): string =>
    ref._tag === "Host" ? "host netns" : ref._tag === "Path" ? `netns ${ref.path}` : `netns fd ${ref.fd}`,
} as const;

// ---------------------------------------------------------------------------------------------------------
// Links

/** A link named by interface name or by ifindex (within the handle's namespace). */
export type LinkSel = string | number;

/** Link kinds danm creates. Listed links may report other kernel kinds, "device" (a physical NIC) or "loopback". */
export type CreatableKind = "veth" | "macvlan" | "ipvlan" | "vlan" | "vxlan" | "bridge" | "dummy";

export type MacvlanMode = "private" | "vepa" | "bridge" | "passthru" | "source";
export type IpvlanMode = "l2" | "l3" | "l3s";
export type IpvlanFlag = "bridge" | "private" | "vepa";
export type OperState = "unknown" | "notpresent" | "down" | "lowerlayerdown" | "testing" | "dormant" | "up";

export interface VxlanInfo {
  readonly vni: number;
  /** UDP destination port. */
  readonly port: number;
  /** Multicast group, when the configured remote is a multicast address. */
  readonly group?: string;
  /** Unicast default remote, when the configured remote is a unicast address. */
  readonly remote?: string;
  readonly local?: string;
  readonly learning: boolean;
  /** Netlink notifications on FDB (l2miss) and neighbour (l3miss) misses, for a control plane to fill them. */
  readonly l2miss: boolean;
  readonly l3miss: boolean;
  /** ifindex of the underlay device. */
  readonly dev?: number;
  /** 0 = inherit. */
  readonly ttl: number;
}

export interface Link {
  readonly index: number;
  readonly name: string;
  /** The IFLA_INFO_KIND ("veth", "vxlan", …), "device" for a link without one, "loopback" for lo. */
  readonly kind: string;
  readonly mtu: number;
  /** Lower-case colon-separated MAC; absent on links without one (e.g. ipip). */
  readonly mac?: string;
  /** Administratively up (IFF_UP). */
  readonly up: boolean;
  /** The driver signals carrier (IFF_LOWER_UP). */
  readonly lowerUp: boolean;
  readonly operstate: OperState;
  /** ifindex of the master (bridge) in the same namespace. */
  readonly master?: number;
  /**
   * IFLA_LINK: the parent (vlan, macvlan, ipvlan) or the veth peer, by its index in its own namespace, which
   * may be another one. Absent when that index equals this link's own (the kernel then omits it).
   */
  readonly parent?: number;
  readonly alias?: string;
  readonly vlan?: { readonly id: number };
  readonly vxlan?: VxlanInfo;
  readonly macvlan?: { readonly mode: MacvlanMode };
  readonly ipvlan?: { readonly mode: IpvlanMode; readonly flag: IpvlanFlag };
}

interface LinkCommon {
  readonly name: string;
  readonly mtu?: number;
  readonly mac?: string;
  /** Bring the link up right after creating it. */
  readonly up?: boolean;
  /** Create the link directly in another namespace (parents are still looked up in this one). */
  readonly netns?: NetnsRef;
}

export type LinkSpec =
  | LinkCommon & {
    readonly kind: "veth";
    readonly peer: { readonly name: string; readonly netns?: NetnsRef; readonly mtu?: number; readonly mac?: string };
  }
  | LinkCommon & { readonly kind: "macvlan"; readonly parent: LinkSel; readonly mode?: MacvlanMode }
  | LinkCommon & {
    readonly kind: "ipvlan";
    readonly parent: LinkSel;
    /**
     * Default l2 / bridge. The kernel keeps one mode and flag per lower device: creating an ipvlan sets them
     * for every ipvlan on that parent.
     */
    readonly mode?: IpvlanMode;
    readonly flag?: IpvlanFlag;
  }
  | LinkCommon & { readonly kind: "vlan"; readonly parent: LinkSel; readonly id: number }
  | LinkCommon & {
    readonly kind: "vxlan";
    readonly vni: number;
    /** Default 4789 (IANA), not the kernel's legacy 8472. */
    readonly port?: number;
    /** Multicast group (needs `dev`) … */
    readonly group?: string;
    /** … or a unicast default remote; neither = FDB-driven unicast VXLAN. */
    readonly remote?: string;
    readonly local?: string;
    /** Default true, as in the kernel. */
    readonly learning?: boolean;
    /** Default false, as in the kernel. */
    readonly l2miss?: boolean;
    readonly l3miss?: boolean;
    readonly dev?: LinkSel;
    readonly ttl?: number;
  }
  | LinkCommon & { readonly kind: "bridge" }
  | LinkCommon & { readonly kind: "dummy" };

/** Changes applied in one request, in the kernel's order: mac, mtu, name, alias, up/down, master. */
export interface LinkChanges {
  readonly up?: boolean;
  readonly mtu?: number;
  readonly name?: string;
  readonly mac?: string;
  /** A bridge to enslave to; null releases the link (nomaster). */
  readonly master?: LinkSel | null;
  /** null or "" clears the alias. */
  readonly alias?: string | null;
}

// ---------------------------------------------------------------------------------------------------------
// Addresses, routes, rules, neighbours

export type Family = 4 | 6;
export type RtScope = "universe" | "site" | "link" | "host" | "nowhere";

export type AddressFlag =
  | "secondary"
  | "nodad"
  | "optimistic"
  | "dadfailed"
  | "homeaddress"
  | "deprecated"
  | "tentative"
  | "permanent"
  | "managetempaddr"
  | "noprefixroute"
  | "mcautojoin"
  | "stable-privacy";

export interface AddressSpec {
  readonly link: LinkSel;
  /** "10.1.0.5/24" or "2001:db8::5/64". */
  readonly cidr: string;
  /** Skip duplicate address detection (IPv6): the address is usable at once. */
  readonly nodad?: boolean;
  readonly noprefixroute?: boolean;
  readonly broadcast?: string;
  readonly label?: string;
  /** Default as iproute2: host for loopback addresses, link for fe80::/10, else universe. */
  readonly scope?: RtScope;
}

export interface Address {
  readonly link: number;
  readonly family: Family;
  /** Address with prefix length, e.g. "10.1.0.5/24". */
  readonly cidr: string;
  readonly address: string;
  readonly prefix: number;
  readonly scope: RtScope;
  readonly flags: ReadonlyArray<AddressFlag>;
  readonly label?: string;
  readonly broadcast?: string;
}

export type RouteType =
  | "unspec"
  | "unicast"
  | "local"
  | "broadcast"
  | "anycast"
  | "multicast"
  | "blackhole"
  | "unreachable"
  | "prohibit"
  | "throw"
  | "nat";

/** rtm_protocol: named for the well-known values, else the number. */
export type RouteProtocol = "unspec" | "redirect" | "kernel" | "boot" | "static" | "dhcp" | number;

export const Table = { unspec: 0, default: 253, main: 254, local: 255 } as const;

export interface RouteSpec {
  /** "default" or a CIDR whose host bits are zero. */
  readonly dst: string;
  /** Needed only for "default" without a gateway; else taken from dst/gateway. */
  readonly family?: Family;
  readonly gateway?: string;
  readonly link?: LinkSel;
  /** Default main (254). */
  readonly table?: number;
  /** Default as iproute2: link without a gateway, universe with one (nowhere = any, on delete). */
  readonly scope?: RtScope;
  readonly metric?: number;
  /** Preferred source address. */
  readonly src?: string;
  /** Default unicast. */
  readonly type?: RouteType;
  /** Default boot, as iproute2. */
  readonly protocol?: RouteProtocol;
  readonly onlink?: boolean;
}

export interface Route {
  readonly family: Family;
  /** "default" or a CIDR. */
  readonly dst: string;
  readonly gateway?: string;
  readonly link?: number;
  readonly table: number;
  readonly scope: RtScope;
  readonly metric?: number;
  readonly src?: string;
  readonly type: RouteType;
  readonly protocol: RouteProtocol;
}

export interface RouteFilter {
  readonly family?: Family;
  /** Default main; "all" lists every table. */
  readonly table?: number | "all";
  readonly link?: LinkSel;
}

export interface RuleSpec {
  /** Needed only when neither src nor dst is given (default 4). */
  readonly family?: Family;
  /** Default: the kernel's choice (just below the first non-zero priority). */
  readonly priority?: number;
  /** "from" prefix. */
  readonly src?: string;
  /** "to" prefix. */
  readonly dst?: string;
  /** Lookup table. */
  readonly table: number;
  readonly iif?: string;
  readonly oif?: string;
  readonly fwmark?: number;
}

/** What identifies rules on delete: only the given fields are compared. */
export type RuleMatch = Partial<RuleSpec>;

export interface Rule {
  readonly family: Family;
  readonly priority: number;
  readonly src?: string;
  readonly dst?: string;
  readonly table: number;
  readonly action: "lookup" | "goto" | "nop" | "blackhole" | "unreachable" | "prohibit" | "unspec";
  readonly iif?: string;
  readonly oif?: string;
  readonly fwmark?: number;
}

/** "bridge" = forwarding database (e.g. VXLAN remote VTEPs); "inet"/"inet6" = ARP / NDP caches. */
export type NeighbourFamily = "inet" | "inet6" | "bridge";
export type NeighbourState =
  | "incomplete"
  | "reachable"
  | "stale"
  | "delay"
  | "probe"
  | "failed"
  | "noarp"
  | "permanent";

export interface NeighbourSpec {
  readonly family: NeighbourFamily;
  readonly link: LinkSel;
  /** MAC; "00:00:00:00:00:00" on a VXLAN is the default (flooding) entry. */
  readonly lladdr: string;
  /** IP: the neighbour's address (inet/inet6) or the remote VTEP (bridge). */
  readonly dst?: string;
  /** Default permanent. */
  readonly state?: NeighbourState;
  /** bridge family: address the bridge master's table rather than the device's own (NTF_MASTER vs NTF_SELF). */
  readonly master?: boolean;
}

export interface Neighbour {
  readonly family: NeighbourFamily;
  readonly link: number;
  readonly lladdr?: string;
  readonly dst?: string;
  readonly state: ReadonlyArray<NeighbourState>;
  /** "self", "master", "router", "extern_learn", … */
  readonly flags: ReadonlyArray<string>;
}

/** add = must not exist; append = add another destination (FDB flood lists); replace = create or overwrite. */
export type WriteMode = "add" | "append" | "replace";

// ---------------------------------------------------------------------------------------------------------
// Errors: every message names the operation, the object and the reason, e.g.
// "create link vx_foo (vxlan): exists".

const errorFields = {
  /** e.g. "create link". */
  operation: Schema.String,
  /** e.g. "vx_foo (vxlan)". */
  object: Schema.String,
  /** The kernel's extended-ack message or a twin's explanation. */
  detail: Schema.optional(Schema.String),
  errno: Schema.optional(Schema.Number),
};

const describe = (e: { operation: string; object: string; detail?: string }, reason: string) =>
  `${e.operation} ${e.object}: ${reason}${e.detail ? ` (${e.detail})` : ""}`;

/** EEXIST. */
export class NetlinkExists extends Schema.TaggedError<NetlinkExists>()("NetlinkExists", errorFields) {
  override get message(): string {
    return describe(this, "exists");
  }
}

/** ENODEV, ENOENT, ESRCH, EADDRNOTAVAIL: the link, address, route, rule, entry or namespace is missing. */
export class NetlinkNotFound extends Schema.TaggedError<NetlinkNotFound>()("NetlinkNotFound", errorFields) {
  override get message(): string {
    return describe(this, "not found");
  }
}

/** EPERM, EACCES. */
export class NetlinkPermission extends Schema.TaggedError<NetlinkPermission>()("NetlinkPermission", errorFields) {
  override get message(): string {
    return describe(this, "permission denied");
  }
}

/** EOPNOTSUPP, or a link kind this kernel does not know ("Unknown device type"). */
export class NetlinkUnsupported extends Schema.TaggedError<NetlinkUnsupported>()("NetlinkUnsupported", errorFields) {
  override get message(): string {
    return describe(this, "unsupported");
  }
}

/** EBUSY, e.g. renaming an up link or a lower device already used by another kind of child. */
export class NetlinkBusy extends Schema.TaggedError<NetlinkBusy>()("NetlinkBusy", errorFields) {
  override get message(): string {
    return describe(this, "busy");
  }
}

/** EINVAL, ERANGE, EAFNOSUPPORT, and arguments rejected before reaching the kernel. */
export class NetlinkInvalid extends Schema.TaggedError<NetlinkInvalid>()("NetlinkInvalid", errorFields) {
  override get message(): string {
    return describe(this, "invalid argument");
  }
}

/** Any other errno (ENETUNREACH, ENETDOWN, …); `errnoName` says which. */
export class NetlinkFailure extends Schema.TaggedError<NetlinkFailure>()("NetlinkFailure", {
  ...errorFields,
  errnoName: Schema.String,
}) {
  override get message(): string {
    return describe(this, this.errnoName);
  }
}

export type NetlinkError =
  | NetlinkExists
  | NetlinkNotFound
  | NetlinkPermission
  | NetlinkUnsupported
  | NetlinkBusy
  | NetlinkInvalid
  | NetlinkFailure;

// ---------------------------------------------------------------------------------------------------------
// The service

type Op<A> = Effect.Effect<A, NetlinkError>;

/** Operations acting inside one network namespace. */
export interface NetnsHandle {
  readonly ref: NetnsRef;

  links(): Op<ReadonlyArray<Link>>;
  /** Fails with NetlinkNotFound when absent. */
  link(sel: LinkSel): Op<Link>;
  createLink(spec: LinkSpec): Op<void>;
  /** Deleting a veth deletes its peer; deleting a parent deletes its vlan/macvlan/ipvlan children. */
  deleteLink(sel: LinkSel): Op<void>;
  setLink(sel: LinkSel, changes: LinkChanges): Op<void>;
  /** Moves the link (it goes down and loses addresses, routes and master) into another namespace. */
  moveLink(sel: LinkSel, target: NetnsRef): Op<void>;

  addresses(filter?: { readonly link?: LinkSel; readonly family?: Family }): Op<ReadonlyArray<Address>>;
  addAddress(spec: AddressSpec): Op<void>;
  replaceAddress(spec: AddressSpec): Op<void>;
  deleteAddress(link: LinkSel, cidr: string): Op<void>;

  routes(filter?: RouteFilter): Op<ReadonlyArray<Route>>;
  addRoute(spec: RouteSpec): Op<void>;
  replaceRoute(spec: RouteSpec): Op<void>;
  /** Deletes the first route matching dst, table and whichever other fields are given. */
  deleteRoute(spec: RouteSpec): Op<void>;

  rules(family?: Family): Op<ReadonlyArray<Rule>>;
  addRule(spec: RuleSpec): Op<void>;
  deleteRule(match: RuleMatch): Op<void>;

  neighbours(filter: { readonly family: NeighbourFamily; readonly link?: LinkSel }): Op<ReadonlyArray<Neighbour>>;
  /** `bridge fdb append 00:00:00:00:00:00 dev vx dst 10.0.0.2` = addNeighbour({family: "bridge", …}, "append"). */
  addNeighbour(spec: NeighbourSpec, mode?: WriteMode): Op<void>;
  deleteNeighbour(spec: NeighbourSpec): Op<void>;

  /** Reads /proc/sys/<key> in this namespace; key like "net/ipv6/conf/eth0/disable_ipv6". Trimmed. */
  sysctl(key: string): Op<string>;
  setSysctl(key: string, value: string): Op<void>;

  /** Broadcasts one gratuitous ARP request announcing `address` (IPv4) from the link's MAC. */
  gratuitousArp(link: LinkSel, address: string): Op<void>;
}

export class Netlink extends Context.Service<Netlink, {
  /** The namespace the process was in when the layer was built. */
  readonly host: NetnsHandle;
  /** A handle acting inside `ref`; its sockets and descriptors close with the scope. */
  netns(ref: NetnsRef): Effect.Effect<NetnsHandle, NetlinkError, Scope.Scope>;
  /** `ip netns add`: a new namespace bind-mounted at <netns dir>/<name>; returns that path. */
  createNetns(name: string): Op<string>;
  /** `ip netns delete`: unmounts and removes the name (the namespace lives on while something holds it). */
  deleteNetns(name: string): Op<void>;
  /** Names under the netns directory (/run/netns). */
  listNetns(): Op<ReadonlyArray<string>>;
  /** Opens a namespace file; the returned Fd reference stays valid until the scope closes. */
  openNetns(path: string): Effect.Effect<NetnsRef, NetlinkError, Scope.Scope>;
}>()("danm/core/ports/Netlink") {}

/** Runs `f` with a handle for `ref`, closing the handle afterwards. */
export const withNetns = <A, E, R>(
  ref: NetnsRef,
  f: (ns: NetnsHandle) => Effect.Effect<A, E, R>,
): Effect.Effect<A, E | NetlinkError, R | Netlink> =>
  Effect.scoped(Effect.gen(function* () {
    const nl = yield* Netlink;
    return yield* f(yield* nl.netns(ref));
  }));
