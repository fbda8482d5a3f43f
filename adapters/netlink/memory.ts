// The in-memory Netlink layer: a simulated kernel network stack with namespaces, links, addresses, routes,
// policy rules, neighbours/FDB and sysctls. It enforces the rules the kernel enforces (and the contract suite
// checks against the real one), answering with the same errno so the same typed errors come out:
//
//   - link names are unique per namespace and valid (1–15 bytes, no '/', ':' or blanks); ifindexes unique;
//   - parents must exist; VLAN ID 1–4094, VNI 1–16777215, one VXLAN per (VNI, port, underlay) and namespace;
//   - a lower device serves macvlans or ipvlans or a bridge, never two of them (EBUSY);
//   - deleting a veth deletes its peer; deleting a lower device deletes its vlan/macvlan/ipvlan/vxlan users;
//   - addresses, routes and neighbours go with their link; a link going down loses its routes and its IPv6
//     addresses; a link moved to another namespace goes down and loses addresses, routes and master;
//   - routes need an up device and a reachable gateway; connected routes follow addresses on up links;
//   - lo and bridges cannot change namespace; lo and physical NICs cannot be deleted;
//   - a namespace dies when nothing holds it (name, open fd, handle): its physical NICs return to the host
//     namespace, its virtual links are deleted.
//
// Not simulated: IPv6 link-local autoconfiguration and DAD (addresses are never tentative), the local routing
// table, dynamic neighbour entries, FDB entries other than on VXLAN devices and bridge ports. The contract
// suite only asserts what both agree on.
import { Effect, Layer } from "effect";
import type {
  Address,
  CreatableKind,
  Family,
  IpvlanFlag,
  IpvlanMode,
  Link,
  LinkChanges,
  LinkSel,
  LinkSpec,
  MacvlanMode,
  Neighbour,
  NeighbourSpec,
  NetnsHandle,
  OperState,
  Route,
  RouteSpec,
  RouteType,
  RtScope,
  Rule,
  RuleMatch,
  WriteMode,
} from "../../core/ports/netlink.ts";
import { Netlink, NetnsRef } from "../../core/ports/netlink.ts";
import { protocolName, protocolValue } from "./codec.ts";
import { attempt, Errno, KernelError } from "./errors.ts";
import { contains, formatIp, formatMac, type Ip, isMulticast, maskBytes, sameBytes } from "./ip.ts";
import * as V from "./validate.ts";

export interface HostNic {
  readonly name: string;
  readonly mtu?: number;
  readonly mac?: string;
  /** Default true. */
  readonly up?: boolean;
}

export interface MemoryOptions {
  /** Where named namespaces appear; default /run/netns. */
  readonly netnsDir?: string;
  /** Physical NICs present in the host namespace from the start (kind "device"). */
  readonly hostNics?: ReadonlyArray<HostNic>;
  /** Kinds this kernel lacks (as the test host lacks ipvlan, vlan and dummy): creating one is EOPNOTSUPP. */
  readonly unsupportedKinds?: ReadonlyArray<CreatableKind>;
}

/** A gratuitous ARP the twin "sent". */
export interface SentGarp {
  readonly netns: number;
  readonly link: string;
  readonly address: string;
  readonly mac: string;
}

const fail = (errno: number, detail?: string): never => {
  throw new KernelError(errno, detail);
};

interface FdbEntry {
  mac: Uint8Array;
  /** Remote VTEPs (VXLAN); undefined = "any". */
  dsts: (Ip | undefined)[];
  state: number;
}

interface MLink {
  index: number;
  name: string;
  readonly kind: string;
  mtu: number;
  mac: Uint8Array;
  up: boolean;
  ns: Ns;
  alive: boolean;
  master?: MLink;
  /** vlan/macvlan/ipvlan lower device. */
  lower?: MLink;
  peer?: MLink;
  alias?: string;
  vlanId?: number;
  macvlanMode?: MacvlanMode;
  /** The ipvlan port of a lower device: one mode and flag shared by all its ipvlans. */
  ipvlanPort?: { mode: IpvlanMode; flag: IpvlanFlag };
  vxlan?: {
    vni: number;
    port: number;
    remote?: Ip;
    local?: Ip;
    learning: boolean;
    l2miss: boolean;
    l3miss: boolean;
    dev?: MLink;
    ttl: number;
  };
  sysctls: Map<string, string>;
  fdb: FdbEntry[];
  /** Links stacked on this one (its `lower` or vxlan `dev`): found without a scan over every link of the kernel. */
  readonly dependents: Set<MLink>;
}

interface MAddr {
  readonly link: MLink;
  readonly ip: Ip;
  prefix: number;
  flags: number;
  scope: RtScope;
  label?: string;
  broadcast?: Ip;
}

interface MRoute {
  readonly family: Family;
  readonly dst?: Uint8Array;
  readonly dstLen: number;
  readonly table: number;
  readonly metric: number;
  gateway?: Uint8Array;
  link?: MLink;
  scope: RtScope;
  src?: Uint8Array;
  type: RouteType;
  protocol: number;
}

interface MRule {
  readonly family: Family;
  readonly priority: number;
  readonly src?: V.RuleRequest["src"];
  readonly dst?: V.RuleRequest["dst"];
  readonly table: number;
  readonly iif?: string;
  readonly oif?: string;
  readonly fwmark?: number;
}

interface MNeigh {
  readonly link: MLink;
  readonly family: "inet" | "inet6";
  readonly dst: Ip;
  lladdr: Uint8Array;
  state: number;
}

const RT_MAIN = 254;
const NUD = { reachable: 0x02, stale: 0x04, noarp: 0x40, permanent: 0x80 } as const;
const IFA_F = { secondary: 0x01, nodad: 0x02, permanent: 0x80, noprefixroute: 0x200 } as const;

const linkSysctlDefaults = (lo: boolean): [string, string][] => [
  ["ipv4/forwarding", "0"],
  ["ipv4/rp_filter", "0"],
  ["ipv4/arp_accept", "0"],
  ["ipv4/arp_announce", "0"],
  ["ipv4/arp_ignore", "0"],
  ["ipv4/arp_notify", "0"],
  ["ipv4/proxy_arp", "0"],
  ["ipv4/accept_local", "0"],
  ["ipv4/route_localnet", "0"],
  ["ipv6/disable_ipv6", "0"],
  ["ipv6/accept_dad", lo ? "-1" : "1"],
  ["ipv6/accept_ra", "1"],
  ["ipv6/autoconf", "1"],
  ["ipv6/forwarding", "0"],
  ["ipv6/keep_addr_on_down", "0"],
  ["ipv6/addr_gen_mode", "0"],
];

class Ns {
  readonly links = new Map<number, MLink>();
  addrs: MAddr[] = [];
  routes: MRoute[] = [];
  rules: MRule[] = [
    { family: 4, priority: 0, table: 255 },
    { family: 4, priority: 32766, table: 254 },
    { family: 4, priority: 32767, table: 253 },
    { family: 6, priority: 0, table: 255 },
    { family: 6, priority: 32766, table: 254 },
  ];
  neigh: MNeigh[] = [];
  readonly globals = new Map<string, string>();
  /** Next ifindex to try: allocation is per namespace and cyclic, as in the kernel. */
  nextIndex = 1;
  /** Names, fds and handles holding the namespace. */
  pins = 0;
  alive = true;

  constructor(readonly id: number) {
    this.globals.set("net/ipv4/ip_forward", "0");
    this.globals.set("net/ipv4/ip_nonlocal_bind", "0");
    this.globals.set("net/ipv6/ip_nonlocal_bind", "0");
    for (const scope of ["all", "default"]) {
      for (const [k, v] of linkSysctlDefaults(false)) {
        const [fam, key] = k.split("/");
        this.globals.set(`net/${fam}/conf/${scope}/${key}`, v);
      }
    }
  }

  byName(name: string): MLink | undefined {
    for (const l of this.links.values()) if (l.name === name) return l;
    return undefined;
  }

  find(sel: LinkSel): MLink {
    const l = typeof sel === "number" ? this.links.get(sel) : this.byName(sel);
    return l ?? fail(Errno.ENODEV, `no link ${JSON.stringify(sel)}`);
  }

  /** A free ifindex: `wanted` when free (a moved link keeps its index if it can), else the next one. */
  allocIndex(wanted?: number): number {
    if (wanted !== undefined && !this.links.has(wanted)) return wanted;
    while (this.links.has(this.nextIndex)) this.nextIndex++;
    return this.nextIndex++;
  }

  loopback(): MLink | undefined {
    for (const l of this.links.values()) if (l.kind === "loopback") return l;
    return undefined;
  }
}

/** The simulated kernel. Tests may hold it to add host NICs or inspect what happened. */
export class MemoryKernel {
  readonly netnsDir: string;
  readonly host: Ns;
  readonly garps: SentGarp[] = [];
  private readonly unsupported: ReadonlySet<string>;
  private readonly named = new Map<string, Ns>();
  private readonly fds = new Map<number, Ns>();
  private readonly all = new Set<MLink>();
  private readonly live = new Set<Ns>();
  private nextNs = 1;
  private nextFd = 1000;

  constructor(opts: MemoryOptions = {}) {
    this.netnsDir = opts.netnsDir ?? "/run/netns";
    this.unsupported = new Set(opts.unsupportedKinds ?? []);
    this.host = this.newNs();
    this.host.pins = 1; // the host namespace never dies
    for (const nic of opts.hostNics ?? []) this.addHostNic(nic);
  }

  // -------------------------------------------------------------------------------------------------------
  // Test-facing helpers

  /** Adds a physical NIC (kind "device") to `ns` (default: the host namespace); returns its ifindex. */
  addHostNic(nic: HostNic, ns: NetnsRef = NetnsRef.host): number {
    const target = this.resolve(ns);
    V.checkName(nic.name);
    if (target.byName(nic.name)) fail(Errno.EEXIST, `link ${nic.name} exists`);
    const l = this.newLink(target, nic.name, "device", nic.mtu ?? 1500, nic.mac ? V.deviceMac(nic.mac) : undefined);
    if (nic.up ?? true) this.setUp(l, true);
    return l.index;
  }

  /** Live namespaces besides the host one (leak checks). */
  namespaceCount(): number {
    return this.live.size - 1;
  }

  /** Links in all namespaces (leak checks). */
  linkCount(): number {
    return this.all.size;
  }

  // -------------------------------------------------------------------------------------------------------
  // Namespaces

  private newNs(): Ns {
    const ns = new Ns(this.nextNs++);
    this.newLink(ns, "lo", "loopback", 65536, new Uint8Array(6));
    this.live.add(ns);
    return ns;
  }

  resolve(ref: NetnsRef): Ns {
    switch (ref._tag) {
      case "Host":
        return this.host;
      case "Fd":
        return this.fds.get(ref.fd) ?? fail(Errno.EBADF, `fd ${ref.fd} is not an open namespace`);
      case "Path":
        return this.named.get(ref.path) ?? fail(Errno.ENOENT, ref.path);
    }
  }

  pin(ns: Ns): void {
    ns.pins++;
  }

  unpin(ns: Ns): void {
    if (--ns.pins > 0 || ns === this.host || !ns.alive) return;
    // As cleanup_net/default_device_exit: physical NICs go home, virtual links are destroyed.
    ns.alive = false;
    this.live.delete(ns);
    for (const l of [...ns.links.values()]) {
      if (!l.alive) continue;
      if (l.kind === "device") {
        let name = l.name;
        for (let i = 0; this.host.byName(name); i++) name = `dev${i}`;
        this.moveTo(l, this.host);
        l.name = name;
      } else this.destroy(l);
    }
  }

  createNetns(name: string): string {
    V.checkNetnsName(name);
    const path = `${this.netnsDir}/${name}`;
    if (this.named.has(path)) fail(Errno.EEXIST, path);
    const ns = this.newNs();
    ns.pins = 1;
    this.named.set(path, ns);
    return path;
  }

  deleteNetns(name: string): void {
    V.checkNetnsName(name);
    const path = `${this.netnsDir}/${name}`;
    const ns = this.named.get(path) ?? fail(Errno.ENOENT, path);
    this.named.delete(path);
    this.unpin(ns);
  }

  listNetns(): string[] {
    const prefix = `${this.netnsDir}/`;
    return [...this.named.keys()].filter((p) => p.startsWith(prefix)).map((p) => p.slice(prefix.length)).sort();
  }

  openFd(path: string): number {
    const ns = this.named.get(path) ?? fail(Errno.ENOENT, path);
    const fd = this.nextFd++;
    this.fds.set(fd, ns);
    this.pin(ns);
    return fd;
  }

  closeFd(fd: number): void {
    const ns = this.fds.get(fd);
    if (!ns) return;
    this.fds.delete(fd);
    this.unpin(ns);
  }

  // -------------------------------------------------------------------------------------------------------
  // Links

  private newLink(ns: Ns, name: string, kind: string, mtu: number, mac?: Uint8Array): MLink {
    const l: MLink = {
      index: ns.allocIndex(),
      name,
      kind,
      mtu,
      mac: mac ?? randomMac(),
      up: false,
      ns,
      alive: true,
      sysctls: new Map(linkSysctlDefaults(kind === "loopback")),
      fdb: [],
      dependents: new Set(),
    };
    ns.links.set(l.index, l);
    this.all.add(l);
    return l;
  }

  private children(l: MLink): MLink[] {
    return [...l.dependents].filter((c) => c.alive);
  }

  /** Who handles frames arriving on `l`: a bridge (as a port), macvlans or ipvlans. */
  private rxHandler(l: MLink): "bridge" | "macvlan" | "ipvlan" | undefined {
    if (l.master) return "bridge";
    for (const c of this.children(l)) if (c.kind === "macvlan" || c.kind === "ipvlan") return c.kind;
    return undefined;
  }

  carrier(l: MLink): boolean {
    if (!l.up || !l.alive) return false;
    switch (l.kind) {
      case "veth":
        return !!l.peer && l.peer.alive && l.peer.up;
      case "macvlan":
      case "ipvlan":
      case "vlan":
        return !!l.lower && this.carrier(l.lower);
      case "bridge": {
        const ports = [...l.ns.links.values()].filter((p) => p.master === l);
        return ports.length === 0 || ports.some((p) => this.carrier(p));
      }
      default:
        return true;
    }
  }

  operstate(l: MLink): OperState {
    if (!l.up) return "down";
    const carrier = this.carrier(l);
    switch (l.kind) {
      case "loopback":
      case "dummy":
      case "vxlan":
        return "unknown";
      case "bridge": {
        // A bridge without ports never signals carrier changes: "unknown", as the kernel reports it.
        const ports = [...l.ns.links.values()].filter((p) => p.master === l);
        return ports.length === 0 ? "unknown" : carrier ? "up" : "down";
      }
      case "device":
        return "up";
      default:
        return carrier ? "up" : "lowerlayerdown";
    }
  }

  toLink(l: MLink): Link {
    const out: { -readonly [K in keyof Link]: Link[K] } = {
      index: l.index,
      name: l.name,
      kind: l.kind,
      mtu: l.mtu,
      up: l.up,
      lowerUp: this.carrier(l),
      operstate: this.operstate(l),
      mac: formatMac(l.kind === "ipvlan" && l.lower ? l.lower.mac : l.mac),
    };
    if (l.master) out.master = l.master.index;
    // As nla_put_iflink: no IFLA_LINK when the parent's index (in its namespace) equals the link's own.
    const parent = l.lower ?? l.peer;
    if (parent && parent.index !== l.index) out.parent = parent.index;
    if (l.alias) out.alias = l.alias;
    if (l.vlanId !== undefined) out.vlan = { id: l.vlanId };
    if (l.macvlanMode) out.macvlan = { mode: l.macvlanMode };
    if (l.kind === "ipvlan" && l.lower?.ipvlanPort) out.ipvlan = { ...l.lower.ipvlanPort };
    if (l.vxlan) {
      const v = l.vxlan;
      out.vxlan = {
        vni: v.vni,
        port: v.port,
        learning: v.learning,
        l2miss: v.l2miss,
        l3miss: v.l3miss,
        ttl: v.ttl,
        ...(v.remote
          ? (isMulticast(v.remote) ? { group: formatIp(v.remote.bytes) } : { remote: formatIp(v.remote.bytes) })
          : {}),
        ...(v.local ? { local: formatIp(v.local.bytes) } : {}),
        ...(v.dev ? { dev: v.dev.index } : {}),
      };
    }
    return out;
  }

  private maxMtu(l: { kind: string; lower?: MLink; vxlan?: MLink["vxlan"] }): number {
    switch (l.kind) {
      case "macvlan":
      case "ipvlan":
      case "vlan":
        return l.lower!.mtu;
      case "vxlan":
        return 65535 - (l.vxlan?.remote?.family === 6 ? 70 : 50);
      case "dummy":
        return 0x7fffffff;
      case "device":
        return 9216;
      case "loopback":
        return 0x7fffffff;
      default:
        return 65535;
    }
  }

  private checkMtu(l: { kind: string; lower?: MLink; vxlan?: MLink["vxlan"] }, mtu: number): void {
    const min = l.kind === "dummy" || l.kind === "loopback" ? 0 : 68;
    if (!Number.isInteger(mtu) || mtu < min) fail(Errno.EINVAL, "mtu less than device minimum");
    if (mtu > this.maxMtu(l)) fail(Errno.EINVAL, "mtu greater than device maximum");
  }

  createLink(ns: Ns, spec: LinkSpec): void {
    V.checkLinkSpec(spec);
    if (this.unsupported.has(spec.kind)) fail(Errno.EOPNOTSUPP, "Unknown device type");
    const target = spec.netns ? this.resolve(spec.netns) : ns;
    if (target.byName(spec.name)) fail(Errno.EEXIST, `link ${spec.name} exists`);
    const mac = spec.mac !== undefined ? V.deviceMac(spec.mac) : undefined;
    let created: MLink;
    switch (spec.kind) {
      case "veth": {
        const peerNs = spec.peer.netns ? this.resolve(spec.peer.netns) : ns;
        if (peerNs.byName(spec.peer.name) || (peerNs === target && spec.peer.name === spec.name)) {
          fail(Errno.EEXIST, `link ${spec.peer.name} exists`);
        }
        if (spec.mtu !== undefined) this.checkMtu({ kind: "veth" }, spec.mtu);
        if (spec.peer.mtu !== undefined) this.checkMtu({ kind: "veth" }, spec.peer.mtu);
        const peerMac = spec.peer.mac !== undefined ? V.deviceMac(spec.peer.mac) : undefined;
        // veth_newlink registers the peer first: it gets the lower ifindex.
        const peer = this.newLink(peerNs, spec.peer.name, "veth", spec.peer.mtu ?? 1500, peerMac);
        created = this.newLink(target, spec.name, "veth", spec.mtu ?? 1500, mac);
        created.peer = peer;
        peer.peer = created;
        break;
      }
      case "macvlan":
      case "ipvlan": {
        let lower = ns.find(spec.parent);
        // A macvlan on a macvlan (ipvlan on an ipvlan) attaches to the real lower device, as the drivers do.
        if (lower.kind === spec.kind && lower.lower) lower = lower.lower;
        if (lower.kind === "loopback") fail(Errno.EINVAL, `${lower.name} cannot carry a ${spec.kind}`);
        const busy = this.rxHandler(lower);
        if (busy && busy !== spec.kind) fail(Errno.EBUSY, `${lower.name} is already used by a ${busy}`);
        const probe = { kind: spec.kind, lower };
        if (spec.mtu !== undefined) this.checkMtu(probe, spec.mtu);
        created = this.newLink(target, spec.name, spec.kind, spec.mtu ?? lower.mtu, mac);
        created.lower = lower;
        lower.dependents.add(created);
        if (spec.kind === "macvlan") created.macvlanMode = spec.mode ?? "bridge";
        else lower.ipvlanPort = { mode: spec.mode ?? "l2", flag: spec.flag ?? "bridge" };
        break;
      }
      case "vlan": {
        const lower = ns.find(spec.parent);
        if (lower.kind === "loopback") fail(Errno.EOPNOTSUPP, `VLANs not supported on ${lower.name}`);
        if (this.children(lower).some((c) => c.kind === "vlan" && c.vlanId === spec.id)) {
          fail(Errno.EEXIST, "VLAN device already exists");
        }
        if (spec.mtu !== undefined) this.checkMtu({ kind: "vlan", lower }, spec.mtu);
        created = this.newLink(target, spec.name, "vlan", spec.mtu ?? lower.mtu, mac ?? new Uint8Array(lower.mac));
        created.lower = lower;
        lower.dependents.add(created);
        created.vlanId = spec.id;
        break;
      }
      case "vxlan": {
        const { remote, local } = V.vxlanAddresses(spec);
        const dev = spec.dev !== undefined ? ns.find(spec.dev) : undefined;
        const port = spec.port ?? 4789;
        for (const other of target.links.values()) {
          const v = other.vxlan;
          if (v && v.vni === spec.vni && v.port === port && v.dev === dev) {
            fail(Errno.EEXIST, "A VXLAN device with the specified VNI already exists");
          }
        }
        const vx = {
          vni: spec.vni,
          port,
          learning: spec.learning ?? true,
          l2miss: spec.l2miss ?? false,
          l3miss: spec.l3miss ?? false,
          ttl: spec.ttl ?? 0,
        };
        const info = { ...vx, ...(remote ? { remote } : {}), ...(local ? { local } : {}), ...(dev ? { dev } : {}) };
        if (spec.mtu !== undefined) this.checkMtu({ kind: "vxlan", vxlan: info }, spec.mtu);
        const headroom = remote?.family === 6 || local?.family === 6 ? 70 : 50;
        created = this.newLink(target, spec.name, "vxlan", spec.mtu ?? (dev ? dev.mtu - headroom : 1500), mac);
        created.vxlan = info;
        dev?.dependents.add(created);
        // A configured remote or group is the default destination: an all-zero FDB entry.
        if (remote) created.fdb.push({ mac: new Uint8Array(6), dsts: [remote], state: NUD.reachable | NUD.permanent });
        break;
      }
      case "bridge":
      case "dummy": {
        if (spec.mtu !== undefined) this.checkMtu({ kind: spec.kind }, spec.mtu);
        created = this.newLink(target, spec.name, spec.kind, spec.mtu ?? 1500, mac);
        break;
      }
    }
    if (spec.up) this.setUp(created, true);
  }

  /** Unregisters a link and everything that cannot live without it. */
  destroy(l: MLink): void {
    if (!l.alive) return;
    this.setUp(l, false);
    l.alive = false;
    const ns = l.ns;
    ns.links.delete(l.index);
    this.all.delete(l);
    l.lower?.dependents.delete(l);
    l.vxlan?.dev?.dependents.delete(l);
    this.forgetLink(l);
    for (const port of ns.links.values()) if (port.master === l) port.master = undefined;
    if (l.peer) this.destroy(l.peer);
    for (const c of this.children(l)) this.destroy(c);
  }

  /** Drops addresses, routes and neighbours referring to `l` in its namespace. */
  private forgetLink(l: MLink): void {
    const ns = l.ns;
    ns.addrs = ns.addrs.filter((a) => a.link !== l);
    ns.routes = ns.routes.filter((r) => r.link !== l);
    ns.neigh = ns.neigh.filter((n) => n.link !== l);
  }

  deleteLink(ns: Ns, sel: LinkSel): void {
    const l = ns.find(sel);
    if (l.kind === "loopback" || l.kind === "device") fail(Errno.EOPNOTSUPP, `${l.name} cannot be deleted`);
    this.destroy(l);
  }

  private moveTo(l: MLink, target: Ns): void {
    this.setUp(l, false);
    this.forgetLink(l);
    l.master = undefined;
    for (const port of l.ns.links.values()) if (port.master === l) port.master = undefined;
    l.ns.links.delete(l.index);
    l.ns = target;
    l.index = target.allocIndex(l.index);
    target.links.set(l.index, l);
    // The per-device IPv4/IPv6 configuration is re-created in the new namespace.
    l.sysctls = new Map(linkSysctlDefaults(false));
  }

  moveLink(ns: Ns, sel: LinkSel, target: Ns): void {
    const l = ns.find(sel);
    if (l.kind === "loopback" || l.kind === "bridge") fail(Errno.EINVAL, "The interface netns is immutable");
    if (target === ns) return;
    if (target.byName(l.name)) fail(Errno.EEXIST, `link ${l.name} exists in the target namespace`);
    this.moveTo(l, target);
  }

  /** Admin up/down with the kernel's side effects. */
  setUp(l: MLink, up: boolean): void {
    if (l.up === up) return;
    if (up) {
      if (l.kind === "vlan" && l.lower && !l.lower.up) fail(Errno.ENETDOWN, `${l.lower.name} is down`);
      l.up = true;
      if (l.kind === "loopback") {
        const ns = l.ns;
        for (const [text, prefix] of [["127.0.0.1", 8], ["::1", 128]] as const) {
          const ip = V.ip(text);
          if (!ns.addrs.some((a) => a.link === l && sameBytes(a.ip.bytes, ip.bytes))) {
            ns.addrs.push({ link: l, ip, prefix, flags: IFA_F.permanent, scope: "host", label: "lo" });
          }
        }
      }
      for (const a of l.ns.addrs) if (a.link === l) this.addPrefixRoute(a);
      return;
    }
    l.up = false;
    const ns = l.ns;
    // Down: every route through the device goes, IPv6 addresses are flushed (keep_addr_on_down=0),
    // neighbour entries are flushed, 802.1Q children follow their lower device down.
    ns.routes = ns.routes.filter((r) => r.link !== l);
    ns.addrs = ns.addrs.filter((a) => a.link !== l || a.ip.family === 4);
    ns.neigh = ns.neigh.filter((n) => n.link !== l);
    for (const c of this.children(l)) if (c.kind === "vlan") this.setUp(c, false);
  }

  setLink(ns: Ns, sel: LinkSel, ch: LinkChanges): void {
    const l = ns.find(sel);
    // The kernel's order (do_setlink): address, mtu, name, alias, flags, master; earlier changes stick.
    if (ch.name !== undefined) V.checkName(ch.name);
    if (ch.mac !== undefined) l.mac = V.deviceMac(ch.mac);
    if (ch.mtu !== undefined && ch.mtu !== l.mtu) {
      this.checkMtu(l, ch.mtu);
      l.mtu = ch.mtu;
      // Stacked devices never exceed their lower device.
      for (const c of this.children(l)) if (c.lower === l && c.mtu > l.mtu) c.mtu = l.mtu;
    }
    if (ch.name !== undefined && ch.name !== l.name) {
      if (ns.byName(ch.name)) fail(Errno.EEXIST, `link ${ch.name} exists`);
      // Older kernels refuse to rename a running device; the twin keeps that stricter rule.
      if (l.up) fail(Errno.EBUSY, `${l.name} is up`);
      for (const a of ns.addrs) if (a.link === l && a.label === l.name) a.label = ch.name;
      l.name = ch.name;
    }
    if (ch.alias !== undefined) {
      if ((ch.alias ?? "").length > 255) fail(Errno.EINVAL, "alias too long");
      l.alias = ch.alias || undefined;
    }
    if (ch.up !== undefined) this.setUp(l, ch.up);
    if (ch.master !== undefined) {
      if (ch.master === null) {
        l.master = undefined;
        return;
      }
      const m = ns.find(ch.master);
      if (m.kind !== "bridge") fail(Errno.EOPNOTSUPP, `${m.name} cannot have ports`);
      if (l.master === m) return;
      if (l.kind === "bridge") fail(Errno.ELOOP, "Can not enslave a bridge to a bridge");
      if (l.kind === "loopback") fail(Errno.EINVAL, "loopback cannot be a bridge port");
      const busy = this.rxHandler(l);
      if (busy && busy !== "bridge") fail(Errno.EBUSY, `${l.name} is already used by a ${busy}`);
      l.master = m;
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Addresses

  private addPrefixRoute(a: MAddr): void {
    const l = a.link, ns = l.ns;
    const max = a.ip.family === 4 ? 32 : 128;
    if (!l.up || a.flags & (IFA_F.noprefixroute | IFA_F.secondary) || a.prefix === max || a.scope === "host") return;
    const dst = maskBytes(a.ip.bytes, a.prefix);
    if (ns.routes.some((r) => r.link === l && r.protocol === 2 && r.dstLen === a.prefix && sameBytes(r.dst!, dst))) {
      return;
    }
    ns.routes.push({
      family: a.ip.family,
      dst,
      dstLen: a.prefix,
      table: RT_MAIN,
      metric: a.ip.family === 4 ? 0 : 256,
      link: l,
      scope: a.ip.family === 4 ? "link" : "universe",
      ...(a.ip.family === 4 ? { src: a.ip.bytes } : {}),
      type: "unicast",
      protocol: 2,
    });
  }

  private dropPrefixRoute(a: MAddr): void {
    const ns = a.link.ns;
    const dst = maskBytes(a.ip.bytes, a.prefix);
    const stillCovered = ns.addrs.some((o) =>
      o !== a && o.link === a.link && o.ip.family === a.ip.family && o.prefix === a.prefix &&
      !(o.flags & IFA_F.secondary) && sameBytes(maskBytes(o.ip.bytes, o.prefix), dst)
    );
    if (stillCovered) return;
    ns.routes = ns.routes.filter((r) =>
      !(r.link === a.link && r.protocol === 2 && r.dstLen === a.prefix && sameBytes(r.dst!, dst))
    );
  }

  addAddress(ns: Ns, l: MLink, r: V.AddrRequest, mode: "add" | "replace"): void {
    const fam = r.ip.family;
    if (fam === 6 && l.sysctls.get("ipv6/disable_ipv6") !== "0") {
      fail(Errno.EACCES, "ipv6: IPv6 is disabled on this device");
    }
    const existing = ns.addrs.find((a) =>
      a.link === l && a.ip.family === fam && sameBytes(a.ip.bytes, r.ip.bytes) &&
      (fam === 6 || a.prefix === r.ip.prefix)
    );
    if (existing) {
      if (mode === "add") fail(Errno.EEXIST, `${fam === 4 ? "ipv4" : "ipv6"}: Address already assigned`);
      existing.flags = (existing.flags & IFA_F.secondary) | r.flags | IFA_F.permanent;
      existing.scope = r.scope;
      existing.prefix = r.ip.prefix;
      if (r.label !== undefined) existing.label = r.label;
      if (r.broadcast) existing.broadcast = r.broadcast;
      return;
    }
    // An IPv4 address inside the subnet of an existing primary on the same link becomes its secondary.
    const secondary = fam === 4 &&
      ns.addrs.some((a) =>
        a.link === l && a.ip.family === 4 && a.prefix === r.ip.prefix && !(a.flags & IFA_F.secondary) &&
        contains(a.ip.bytes, a.prefix, r.ip.bytes)
      );
    const a: MAddr = {
      link: l,
      ip: { family: fam, bytes: r.ip.bytes },
      prefix: r.ip.prefix,
      flags: r.flags | IFA_F.permanent | (secondary ? IFA_F.secondary : 0),
      scope: r.scope,
      ...(fam === 4 ? { label: r.label ?? l.name } : {}),
      ...(r.broadcast ? { broadcast: r.broadcast } : {}),
    };
    ns.addrs.push(a);
    this.addPrefixRoute(a);
  }

  deleteAddress(ns: Ns, l: MLink, p: { family: Family; bytes: Uint8Array; prefix: number }): void {
    const a =
      ns.addrs.find((x) =>
        x.link === l && x.ip.family === p.family && sameBytes(x.ip.bytes, p.bytes) && x.prefix === p.prefix
      ) ?? fail(Errno.EADDRNOTAVAIL, `${p.family === 4 ? "ipv4" : "ipv6"}: Address not found`);
    ns.addrs = ns.addrs.filter((x) => x !== a);
    // Without promote_secondaries, a primary takes its secondaries with it.
    if (p.family === 4 && !(a.flags & IFA_F.secondary)) {
      ns.addrs = ns.addrs.filter((x) =>
        !(x.link === l && x.ip.family === 4 && x.flags & IFA_F.secondary && x.prefix === a.prefix &&
          contains(a.ip.bytes, a.prefix, x.ip.bytes))
      );
      ns.routes = ns.routes.filter((r) => !(r.protocol === 2 && r.src && sameBytes(r.src, a.ip.bytes)));
    }
    this.dropPrefixRoute(a);
  }

  toAddress(a: MAddr): Address {
    const address = formatIp(a.ip.bytes);
    const flags = (Object.entries({
      secondary: IFA_F.secondary,
      nodad: IFA_F.nodad,
      permanent: IFA_F.permanent,
      noprefixroute: IFA_F.noprefixroute,
    }) as [Address["flags"][number], number][]).filter(([, b]) => a.flags & b).map(([n]) => n);
    return {
      link: a.link.index,
      family: a.ip.family,
      cidr: `${address}/${a.prefix}`,
      address,
      prefix: a.prefix,
      scope: a.scope,
      flags,
      ...(a.label ? { label: a.label } : {}),
      ...(a.broadcast ? { broadcast: formatIp(a.broadcast.bytes) } : {}),
    };
  }

  // -------------------------------------------------------------------------------------------------------
  // Routes

  writeRoute(ns: Ns, spec: RouteSpec, mode: "add" | "replace"): void {
    const r = V.routeRequest(spec, false);
    const dst = V.checkRouteDst(r);
    let link = spec.link !== undefined ? ns.find(spec.link) : undefined;
    const special = r.type === "blackhole" || r.type === "unreachable" || r.type === "prohibit" || r.type === "throw";
    if (r.gateway && !r.onlink) {
      const gw = r.gateway.bytes;
      const lookIn = [r.table, RT_MAIN];
      const via = ns.routes.find((x) =>
        lookIn.includes(x.table) && x.family === r.family && !x.gateway && x.type === "unicast" && x.link &&
        contains(x.dst ?? new Uint8Array(gw.length), x.dstLen, gw) && (!link || x.link === link)
      );
      const linkLocal = r.family === 6 && gw[0] === 0xfe && (gw[1] & 0xc0) === 0x80;
      if (linkLocal) {
        if (!link) fail(Errno.EINVAL, "Nexthop has invalid gateway");
      } else if (!via) {
        fail(
          r.family === 4 ? Errno.ENETUNREACH : Errno.EHOSTUNREACH,
          r.family === 4 ? "Nexthop has invalid gateway" : undefined,
        );
      } else link ??= via.link;
    }
    if (!special && !link) fail(Errno.ENODEV, "no nexthop device");
    if (link && !link.up && !special) fail(Errno.ENETDOWN, "Nexthop device is not up");
    const metric = r.metric ?? (r.family === 4 ? 0 : 1024);
    const same = (x: MRoute) =>
      x.family === r.family && x.table === r.table && x.dstLen === r.dstLen && x.metric === metric &&
      sameBytes(x.dst ?? new Uint8Array(0), dst ?? new Uint8Array(0));
    const existing = ns.routes.find(same);
    if (existing && mode === "add") fail(Errno.EEXIST, "route exists");
    const route: MRoute = {
      family: r.family,
      ...(dst ? { dst } : {}),
      dstLen: r.dstLen,
      table: r.table,
      metric,
      ...(r.gateway ? { gateway: r.gateway.bytes } : {}),
      // IPv6 reject routes hang off the loopback device, as the kernel shows them.
      ...(link ? { link } : special && r.family === 6 ? { link: ns.loopback() } : {}),
      scope: r.scope,
      ...(r.src ? { src: r.src.bytes } : {}),
      type: r.type,
      protocol: spec.protocol !== undefined ? protocolValue(spec.protocol) : 3,
    };
    ns.routes = existing ? ns.routes.map((x) => (x === existing ? route : x)) : [...ns.routes, route];
  }

  deleteRoute(ns: Ns, spec: RouteSpec): void {
    const r = V.routeRequest(spec, true);
    const dst = V.checkRouteDst(r);
    const link = spec.link !== undefined ? ns.find(spec.link) : undefined;
    const victim = ns.routes.find((x) =>
      x.family === r.family && x.table === r.table && x.dstLen === r.dstLen &&
      sameBytes(x.dst ?? new Uint8Array(0), dst ?? new Uint8Array(0)) &&
      (!r.gateway || (x.gateway !== undefined && sameBytes(x.gateway, r.gateway.bytes))) &&
      (!link || x.link === link) && (r.metric === undefined || x.metric === r.metric) &&
      (r.type === "unspec" || x.type === r.type) &&
      (spec.protocol === undefined || x.protocol === protocolValue(spec.protocol)) &&
      (r.family === 6 || r.scope === "nowhere" || x.scope === r.scope)
    ) ?? fail(Errno.ESRCH, "no such route");
    ns.routes = ns.routes.filter((x) => x !== victim);
  }

  toRoute(x: MRoute): Route {
    return {
      family: x.family,
      dst: x.dst && x.dstLen > 0 ? `${formatIp(x.dst)}/${x.dstLen}` : "default",
      table: x.table,
      // IPv6 has no route scopes; the kernel reports universe.
      scope: x.family === 6 ? "universe" : x.scope,
      type: x.type,
      protocol: protocolName(x.protocol),
      ...(x.gateway ? { gateway: formatIp(x.gateway) } : {}),
      ...(x.link ? { link: x.link.index } : {}),
      ...(x.family === 6 || x.metric !== 0 ? { metric: x.metric } : {}),
      ...(x.src ? { src: formatIp(x.src) } : {}),
    };
  }

  // -------------------------------------------------------------------------------------------------------
  // Rules

  addRule(ns: Ns, spec: RuleMatch): void {
    const r = V.ruleRequest(spec);
    if (r.table === undefined || r.table === 0) fail(Errno.EINVAL, "a rule needs a lookup table");
    const family = ns.rules.filter((x) => x.family === r.family);
    // fib_default_rule_pref: one below the second rule of the family.
    const priority = r.priority ?? (family.length > 1 && family[1].priority > 0 ? family[1].priority - 1 : 0);
    const rule: MRule = { ...r, table: r.table!, priority };
    if (ns.rules.some((x) => sameRule(x, rule))) fail(Errno.EEXIST, "rule exists");
    // Inserted after every rule with a lower or equal priority.
    const at = ns.rules.findIndex((x) => x.family === r.family && x.priority > priority);
    ns.rules.splice(at < 0 ? ns.rules.length : at, 0, rule);
  }

  deleteRule(ns: Ns, spec: RuleMatch): void {
    const r = V.ruleRequest(spec);
    const victim =
      ns.rules.find((x) =>
        x.family === r.family && (r.priority === undefined || x.priority === r.priority) &&
        (r.table === undefined || x.table === r.table) && samePrefix(r.src, x.src, true) &&
        samePrefix(r.dst, x.dst, true) && (r.iif === undefined || x.iif === r.iif) &&
        (r.oif === undefined || x.oif === r.oif) && (r.fwmark === undefined || x.fwmark === r.fwmark)
      ) ?? fail(Errno.ENOENT, "no such rule");
    ns.rules = ns.rules.filter((x) => x !== victim);
  }

  // -------------------------------------------------------------------------------------------------------
  // Neighbours / FDB

  addNeighbour(ns: Ns, spec: NeighbourSpec, mode: WriteMode): void {
    const r = V.neighRequest(spec);
    const l = ns.find(spec.link);
    const state = (spec.state ? stateBit(spec.state) : NUD.permanent) | (spec.family === "bridge" ? NUD.noarp : 0);
    if (spec.family !== "bridge") {
      const existing = ns.neigh.find((n) => n.link === l && sameBytes(n.dst.bytes, r.dst!.bytes));
      if (existing) {
        if (mode === "add") fail(Errno.EEXIST, "neighbour exists");
        if (mode === "replace") [existing.lladdr, existing.state] = [r.lladdr, state];
        return;
      }
      ns.neigh.push({ link: l, family: spec.family, dst: r.dst!, lladdr: r.lladdr, state });
      return;
    }
    const table = this.fdbOwner(l, spec);
    const entry = table.find((e) => sameBytes(e.mac, r.lladdr));
    if (!entry) {
      table.push({ mac: r.lladdr, dsts: [r.dst], state });
      return;
    }
    if (mode === "add") fail(Errno.EEXIST, "fdb entry exists");
    if (mode === "replace") {
      entry.dsts[0] = r.dst;
      entry.state = state;
      return;
    }
    // append: only the all-zero and multicast entries hold several destinations.
    const flood = entry.mac.every((b) => b === 0) || (entry.mac[0] & 1) === 1;
    if (flood && !entry.dsts.some((d) => sameIp(d, r.dst))) entry.dsts.push(r.dst);
  }

  /** The FDB an entry belongs to: a VXLAN device's own, or the bridge's for a port (NTF_MASTER). */
  private fdbOwner(l: MLink, spec: NeighbourSpec): FdbEntry[] {
    if (spec.master) {
      if (!l.master) fail(Errno.EINVAL, `${l.name} is not a bridge port`);
      return l.fdb;
    }
    if (l.kind !== "vxlan") fail(Errno.EOPNOTSUPP, "the twin models FDB entries on VXLAN devices and bridge ports");
    return l.fdb;
  }

  deleteNeighbour(ns: Ns, spec: NeighbourSpec): void {
    const r = V.neighRequest(spec);
    const l = ns.find(spec.link);
    if (spec.family !== "bridge") {
      const victim = ns.neigh.find((n) => n.link === l && sameBytes(n.dst.bytes, r.dst!.bytes)) ??
        fail(Errno.ENOENT, "no such neighbour");
      ns.neigh = ns.neigh.filter((n) => n !== victim);
      return;
    }
    const table = this.fdbOwner(l, spec);
    const entry = table.find((e) => sameBytes(e.mac, r.lladdr)) ?? fail(Errno.ENOENT, "no such fdb entry");
    if (r.dst) {
      // As __vxlan_fdb_delete: an unknown destination of a known MAC is quietly ignored.
      const i = entry.dsts.findIndex((d) => sameIp(d, r.dst));
      if (i < 0) return;
      entry.dsts.splice(i, 1);
    }
    if (!r.dst || entry.dsts.length === 0) table.splice(table.indexOf(entry), 1);
  }

  neighbours(ns: Ns, family: Neighbour["family"], link?: MLink): Neighbour[] {
    if (family !== "bridge") {
      return ns.neigh.filter((n) => n.family === family && (!link || n.link === link)).map((n) => ({
        family,
        link: n.link.index,
        lladdr: formatMac(n.lladdr),
        dst: formatIp(n.dst.bytes),
        state: stateNames(n.state),
        flags: [],
      }));
    }
    const out: Neighbour[] = [];
    for (const l of [...ns.links.values()].sort((a, b) => a.index - b.index)) {
      if (link && l !== link) continue;
      for (const e of l.fdb) {
        for (const d of e.dsts) {
          out.push({
            family,
            link: l.index,
            lladdr: formatMac(e.mac),
            ...(d ? { dst: formatIp(d.bytes) } : {}),
            state: stateNames(e.state),
            flags: [l.kind === "vxlan" ? "self" : "master"],
          });
        }
      }
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------------------
  // Sysctls

  private sysctlSlot(ns: Ns, key: string): { get(): string; set(v: string): void } {
    V.checkSysctlKey(key);
    const m = key.match(/^net\/(ipv4|ipv6)\/conf\/([^/]+)\/([^/]+)$/);
    if (m && m[2] !== "all" && m[2] !== "default") {
      const l = ns.byName(m[2]) ?? fail(Errno.ENOENT, `/proc/sys/${key}`);
      const k = `${m[1]}/${m[3]}`;
      if (!l.sysctls.has(k)) fail(Errno.ENOENT, `/proc/sys/${key}`);
      return {
        get: () => l.sysctls.get(k)!,
        set: (v) => {
          l.sysctls.set(k, v);
          // disable_ipv6 takes the device's IPv6 addresses and routes away.
          if (k === "ipv6/disable_ipv6" && v !== "0") {
            ns.addrs = ns.addrs.filter((a) => a.link !== l || a.ip.family === 4);
            ns.routes = ns.routes.filter((r) => r.link !== l || r.family === 4);
          }
        },
      };
    }
    if (!ns.globals.has(key)) fail(Errno.ENOENT, `/proc/sys/${key}`);
    return { get: () => ns.globals.get(key)!, set: (v) => void ns.globals.set(key, v) };
  }

  sysctl(ns: Ns, key: string): string {
    return this.sysctlSlot(ns, key).get();
  }

  setSysctl(ns: Ns, key: string, value: string): void {
    const slot = this.sysctlSlot(ns, key);
    // Every key the twin knows is an integer (proc_dointvec).
    if (!/^\s*-?\d+\s*$/.test(value)) fail(Errno.EINVAL, "write");
    slot.set(String(Number(value.trim())));
  }

  gratuitousArp(ns: Ns, sel: LinkSel, address: string): void {
    const ip = V.ip(address);
    if (ip.family !== 4) fail(Errno.EINVAL, "gratuitous ARP is IPv4 only");
    const l = ns.find(sel);
    if (!l.up) fail(Errno.ENETDOWN, "sendto");
    const mac = this.toLink(l).mac!;
    this.garps.push({ netns: ns.id, link: l.name, address: formatIp(ip.bytes), mac });
    // Reception across a veth: with arp_accept, a peer holding an address in that subnet learns the sender.
    const peer = l.peer;
    if (!peer || !this.carrier(l) || !this.carrier(peer) || peer.sysctls.get("ipv4/arp_accept") === "0") return;
    const onLink = peer.ns.addrs.some((a) =>
      a.link === peer && a.ip.family === 4 && contains(a.ip.bytes, a.prefix, ip.bytes)
    );
    if (!onLink) return;
    const known = peer.ns.neigh.find((n) => n.link === peer && sameBytes(n.dst.bytes, ip.bytes));
    if (known) {
      if (!(known.state & NUD.permanent)) known.lladdr = V.mac(mac);
    } else peer.ns.neigh.push({ link: peer, family: "inet", dst: ip, lladdr: V.mac(mac), state: NUD.stale });
  }
}

const stateBit = (s: NeighbourSpec["state"] & string): number =>
  ({
    incomplete: 0x01,
    reachable: 0x02,
    stale: 0x04,
    delay: 0x08,
    probe: 0x10,
    failed: 0x20,
    noarp: 0x40,
    permanent: 0x80,
  })[s];

const stateNames = (v: number): Neighbour["state"] =>
  (["incomplete", "reachable", "stale", "delay", "probe", "failed", "noarp", "permanent"] as const).filter((_, i) =>
    v & (1 << i)
  );

const sameIp = (a: Ip | undefined, b: Ip | undefined): boolean =>
  a === undefined || b === undefined ? a === b : sameBytes(a.bytes, b.bytes);

/** Prefix equality; with `wildcard`, an absent wanted prefix matches anything. */
function samePrefix(
  want: { bytes: Uint8Array; prefix: number } | undefined,
  have: { bytes: Uint8Array; prefix: number } | undefined,
  wildcard: boolean,
): boolean {
  if (!want) return wildcard || !have;
  return !!have && have.prefix === want.prefix && sameBytes(have.bytes, want.bytes);
}

function sameRule(a: MRule, b: MRule): boolean {
  return a.family === b.family && a.priority === b.priority && a.table === b.table &&
    samePrefix(a.src, b.src, false) && samePrefix(a.dst, b.dst, false) && a.iif === b.iif && a.oif === b.oif &&
    a.fwmark === b.fwmark;
}

function toRule(x: MRule): Rule {
  return {
    family: x.family,
    priority: x.priority,
    table: x.table,
    action: "lookup",
    ...(x.src && x.src.prefix > 0 ? { src: `${formatIp(x.src.bytes)}/${x.src.prefix}` } : {}),
    ...(x.dst && x.dst.prefix > 0 ? { dst: `${formatIp(x.dst.bytes)}/${x.dst.prefix}` } : {}),
    ...(x.iif !== undefined ? { iif: x.iif } : {}),
    ...(x.oif !== undefined ? { oif: x.oif } : {}),
    ...(x.fwmark !== undefined ? { fwmark: x.fwmark } : {}),
  };
}

function randomMac(): Uint8Array {
  const m = crypto.getRandomValues(new Uint8Array(6));
  m[0] = (m[0] & 0xfe) | 0x02; // unicast, locally administered
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// The service over a MemoryKernel

function makeHandle(k: MemoryKernel, ref: NetnsRef, ns: Ns): NetnsHandle {
  const where = `in ${NetnsRef.describe(ref)}`;
  const addrOp = (spec: Parameters<NetnsHandle["addAddress"]>[0], mode: "add" | "replace") =>
    attempt(`${mode} address`, `${spec.cidr} on ${spec.link}`, () => {
      const r = V.addrRequest(spec);
      k.addAddress(ns, ns.find(spec.link), r, mode);
    });
  const routeOp = (spec: RouteSpec, mode: "add" | "replace") =>
    attempt(`${mode} route`, V.describeRoute(spec), () => k.writeRoute(ns, spec, mode));

  return {
    ref,
    links: () =>
      attempt(
        "list links",
        where,
        () => [...ns.links.values()].sort((a, b) => a.index - b.index).map((l) => k.toLink(l)),
      ),
    link: (sel) => attempt("get link", String(sel), () => k.toLink(ns.find(sel))),
    createLink: (spec) => attempt("create link", `${spec.name} (${spec.kind})`, () => k.createLink(ns, spec), true),
    deleteLink: (sel) => attempt("delete link", String(sel), () => k.deleteLink(ns, sel)),
    setLink: (sel, changes) => attempt("set link", String(sel), () => k.setLink(ns, sel, changes)),
    moveLink: (sel, target) =>
      attempt("move link", `${sel} to ${NetnsRef.describe(target)}`, () => k.moveLink(ns, sel, k.resolve(target))),

    addresses: (filter = {}) =>
      attempt("list addresses", filter.link !== undefined ? `on ${filter.link}` : where, () => {
        const l = filter.link !== undefined ? ns.find(filter.link) : undefined;
        return ns.addrs
          .filter((a) => (!l || a.link === l) && (filter.family === undefined || a.ip.family === filter.family))
          .sort((a, b) => a.ip.family - b.ip.family || a.link.index - b.link.index)
          .map((a) => k.toAddress(a));
      }),
    addAddress: (spec) => addrOp(spec, "add"),
    replaceAddress: (spec) => addrOp(spec, "replace"),
    deleteAddress: (link, cidr) =>
      attempt("delete address", `${cidr} on ${link}`, () => {
        const p = V.prefix(cidr, "address");
        k.deleteAddress(ns, ns.find(link), p);
      }),

    routes: (filter = {}) =>
      attempt("list routes", where, () => {
        const l = filter.link !== undefined ? ns.find(filter.link) : undefined;
        const table = filter.table ?? RT_MAIN;
        return ns.routes
          .filter((r) =>
            (filter.family === undefined || r.family === filter.family) && (table === "all" || r.table === table) &&
            (!l || r.link === l)
          )
          .sort((a, b) => a.family - b.family)
          .map((r) => k.toRoute(r));
      }),
    addRoute: (spec) => routeOp(spec, "add"),
    replaceRoute: (spec) => routeOp(spec, "replace"),
    deleteRoute: (spec) => attempt("delete route", V.describeRoute(spec), () => k.deleteRoute(ns, spec)),

    rules: (family) =>
      attempt("list rules", where, () =>
        ns.rules.filter((r) => family === undefined || r.family === family)
          .sort((a, b) => a.family - b.family)
          .map(toRule)),
    addRule: (spec) => attempt("add rule", V.describeRule(spec), () => k.addRule(ns, spec)),
    deleteRule: (match) => attempt("delete rule", V.describeRule(match), () => k.deleteRule(ns, match)),

    neighbours: (filter) =>
      attempt(
        "list neighbours",
        `${filter.family}${filter.link !== undefined ? ` on ${filter.link}` : ""}`,
        () => k.neighbours(ns, filter.family, filter.link !== undefined ? ns.find(filter.link) : undefined),
      ),
    addNeighbour: (spec, mode = "add") =>
      attempt(`${mode} neighbour`, V.describeNeighbour(spec), () => k.addNeighbour(ns, spec, mode)),
    deleteNeighbour: (spec) =>
      attempt("delete neighbour", V.describeNeighbour(spec), () => k.deleteNeighbour(ns, spec)),

    sysctl: (key) => attempt("get sysctl", key, () => k.sysctl(ns, key)),
    setSysctl: (key, value) => attempt("set sysctl", `${key}=${value}`, () => k.setSysctl(ns, key, value)),
    gratuitousArp: (link, address) =>
      attempt("send gratuitous arp", `${address} on ${link}`, () => k.gratuitousArp(ns, link, address)),
  };
}

/** The Netlink service over `kernel`. */
export const make = (kernel: MemoryKernel): Netlink["Service"] => {
  const host = makeHandle(kernel, NetnsRef.host, kernel.host);
  return Netlink.of({
    host,
    netns: (ref) =>
      ref._tag === "Host" ? Effect.succeed(host) : Effect.map(
        Effect.acquireRelease(
          attempt("open netns", NetnsRef.describe(ref), () => {
            const ns = kernel.resolve(ref);
            kernel.pin(ns);
            return ns;
          }),
          (ns) => Effect.sync(() => kernel.unpin(ns)),
        ),
        (ns) => makeHandle(kernel, ref, ns),
      ),
    createNetns: (name) => attempt("create netns", name, () => kernel.createNetns(name)),
    deleteNetns: (name) => attempt("delete netns", name, () => kernel.deleteNetns(name)),
    listNetns: () => attempt("list netns", kernel.netnsDir, () => kernel.listNetns()),
    openNetns: (path) =>
      Effect.map(
        Effect.acquireRelease(
          attempt("open netns", path, () => kernel.openFd(path)),
          (fd) => Effect.sync(() => kernel.closeFd(fd)),
        ),
        NetnsRef.fd,
      ),
  });
};

/** A layer over a fresh simulated kernel, or over `kernel` when the test wants to look inside. */
export const layer = (kernel: MemoryKernel | MemoryOptions = {}): Layer.Layer<Netlink> =>
  Layer.sync(Netlink, () => make(kernel instanceof MemoryKernel ? kernel : new MemoryKernel(kernel)));
