// The live Netlink layer: rtnetlink over FFI (no `ip` processes).
//
// Namespaces: a handle for another namespace owns a NETLINK_ROUTE socket created while the JS thread was
// switched into that namespace (setns → socket → setns back, synchronously); the socket stays bound to it, so
// later requests need no switch. The few things that are not netlink (sysctls under /proc/sys/net, the
// AF_PACKET socket for gratuitous ARP) switch the thread in and out around synchronous calls. Nothing
// asynchronous ever runs while the thread is switched, so no other work can observe it.
import { Effect, Layer, type Scope } from "effect";
import {
  type Address,
  type AddressSpec,
  type Link,
  type LinkChanges,
  type LinkSel,
  type LinkSpec,
  type Neighbour,
  Netlink,
  type NetlinkError,
  type NetnsHandle,
  NetnsRef,
  type Route,
  type RouteSpec,
  type Rule,
  type WriteMode,
} from "../../core/ports/netlink.ts";
import {
  AF_UNSPEC,
  afOf,
  decodeAddr,
  decodeLink,
  decodeNeigh,
  decodeRoute,
  decodeRule,
  encodeAddr,
  encodeAddrDump,
  encodeNeigh,
  encodeNeighDump,
  encodeRoute,
  encodeRouteDump,
  encodeRule,
  encodeRuleDump,
  IFF_UP,
  ifinfomsg,
  IFLA,
  type KindInfo,
  neighbourAf,
  NTF_MASTER,
  NTF_SELF,
  nudValue,
  protocolValue,
  routeTypes,
  RTEXT_FILTER_SKIP_STATS,
  RTM,
  scopes,
  writeLinkAttrs,
  writeLinkInfo,
} from "./codec.ts";
import { attempt, Errno, KernelError } from "./errors.ts";
import {
  AF_PACKET,
  CLONE_NEWNET,
  MNT_DETACH,
  MS_BIND,
  MS_REC,
  MS_SHARED,
  O_CLOEXEC,
  O_RDONLY,
  O_WRONLY,
  SOCK_CLOEXEC,
  SOCK_RAW,
  sys,
} from "./libc.ts";
import { NetlinkSocket } from "./socket.ts";
import * as V from "./validate.ts";
import { NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, Writer } from "./wire.ts";

export interface LiveOptions {
  /** Where named namespaces are bind-mounted; default /run/netns (as iproute2). */
  readonly netnsDir?: string;
}

const ETH_P_ARP = 0x0806;
const THREAD_NETNS = "/proc/thread-self/ns/net";

const writeFlags = (mode: WriteMode): number =>
  NLM_F_CREATE | (mode === "add" ? NLM_F_EXCL : mode === "append" ? NLM_F_APPEND : NLM_F_REPLACE);

/** The thread-switching primitive, bound to the namespace the process started in. */
class Switcher {
  constructor(readonly hostFd: number) {}

  /** Runs `f` with the calling thread inside the namespace `fd`; always switches back. */
  inside<T>(fd: number | undefined, f: () => T): T {
    if (fd === undefined) return f();
    sys.setns(fd, CLONE_NEWNET);
    try {
      return f();
    } finally {
      this.back();
    }
  }

  back(): void {
    try {
      sys.setns(this.hostFd, CLONE_NEWNET);
    } catch (e) {
      // Continuing in the wrong namespace would silently misconfigure everything that follows.
      throw new Error(`cannot switch back to the host network namespace: ${e}`);
    }
  }

  /** Runs `f` with a namespace fd for `ref`, opening (and closing) a path reference. */
  withFd<T>(ref: NetnsRef | undefined, f: (fd: number | undefined) => T): T {
    if (ref === undefined) return f(undefined);
    if (ref._tag === "Host") return f(this.hostFd);
    if (ref._tag === "Fd") return f(ref.fd);
    const fd = sys.open(ref.path, O_RDONLY | O_CLOEXEC);
    try {
      return f(fd);
    } finally {
      sys.close(fd);
    }
  }
}

/** What the operations of one handle share: its namespace and the NETLINK_ROUTE socket bound to it. */
interface HandleContext {
  readonly ref: NetnsRef;
  readonly sock: NetlinkSocket;
  /** Undefined for the host namespace (no switch needed). */
  readonly nsFd: number | undefined;
  readonly sw: Switcher;
}

const nameAttr = (w: Writer, name: string) => {
  // A name the kernel could never hold is simply not there (the kernel would call it EINVAL).
  if (name.length === 0 || new TextEncoder().encode(name).length >= V.IFNAMSIZ) {
    throw new KernelError(Errno.ENODEV, `no link named "${name}"`);
  }
  w.attrStr(IFLA.IFNAME, name);
};
/** ifinfomsg selecting `sel`: by index, or index 0 plus IFLA_IFNAME. */
const selectLink = (sel: LinkSel, flags = 0, change = 0): Writer => {
  const w = ifinfomsg(new Writer(), typeof sel === "number" ? sel : 0, flags, change);
  if (typeof sel === "string") nameAttr(w, sel);
  return w;
};

/** Links looked up through `sock`: by index or name. */
function lookups(sock: NetlinkSocket) {
  const getLink = (sel: LinkSel): Link => {
    const w = selectLink(sel).attrU32(IFLA.EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    const [reply] = sock.request(RTM.GETLINK, 0, w.finish());
    if (!reply) throw new KernelError(Errno.ENODEV, `no reply for link ${sel}`);
    return decodeLink(reply);
  };
  const indexOf = (sel: LinkSel): number => (typeof sel === "number" ? sel : getLink(sel).index);
  return { getLink, indexOf };
}

/** `ip link`: list, create (every kind), delete, change, move between namespaces. */
function linkOps({ ref, sock, sw }: HandleContext): Pick<
  NetnsHandle,
  "links" | "link" | "createLink" | "deleteLink" | "setLink" | "moveLink"
> {
  const { getLink, indexOf } = lookups(sock);
  const listLinks = (): Link[] =>
    sock.dump(RTM.GETLINK, ifinfomsg(new Writer(), 0).attrU32(IFLA.EXT_MASK, RTEXT_FILTER_SKIP_STATS).finish())
      .map(decodeLink);

  const kindInfo = (spec: LinkSpec, peerFd: number | undefined): KindInfo => {
    switch (spec.kind) {
      case "veth":
        return {
          kind: "veth",
          peer: {
            name: spec.peer.name,
            ...(spec.peer.mtu !== undefined ? { mtu: spec.peer.mtu } : {}),
            ...(spec.peer.mac !== undefined ? { mac: V.mac(spec.peer.mac) } : {}),
            ...(peerFd !== undefined ? { netnsFd: peerFd } : {}),
          },
        };
      case "macvlan":
        return { kind: "macvlan", mode: spec.mode ?? "bridge" };
      case "ipvlan":
        return { kind: "ipvlan", mode: spec.mode ?? "l2", flag: spec.flag ?? "bridge" };
      case "vlan":
        return { kind: "vlan", id: spec.id };
      case "vxlan": {
        const { remote, local } = V.vxlanAddresses(spec);
        return {
          kind: "vxlan",
          vni: spec.vni,
          port: spec.port ?? 4789,
          learning: spec.learning ?? true,
          l2miss: spec.l2miss ?? false,
          l3miss: spec.l3miss ?? false,
          ...(remote ? { remote: remote.bytes } : {}),
          ...(local ? { local: local.bytes } : {}),
          ...(spec.dev !== undefined ? { dev: indexOf(spec.dev) } : {}),
          ...(spec.ttl !== undefined ? { ttl: spec.ttl } : {}),
        };
      }
      case "bridge":
        return { kind: "bridge" };
      case "dummy":
        return { kind: "dummy" };
    }
  };

  return {
    links: () => attempt("list links", `in ${NetnsRef.describe(ref)}`, listLinks),
    link: (sel) => attempt("get link", String(sel), () => getLink(sel)),
    createLink: (spec) =>
      attempt("create link", `${spec.name} (${spec.kind})`, () => {
        V.checkLinkSpec(spec);
        const up = spec.up ? IFF_UP : 0;
        sw.withFd(spec.netns, (fd) =>
          sw.withFd(spec.kind === "veth" ? spec.peer.netns : undefined, (peerFd) => {
            const w = ifinfomsg(new Writer(), 0, up, up);
            writeLinkAttrs(w, {
              name: spec.name,
              ...(spec.mtu !== undefined ? { mtu: spec.mtu } : {}),
              ...(spec.mac !== undefined ? { mac: V.mac(spec.mac) } : {}),
              ...(fd !== undefined ? { netnsFd: fd } : {}),
            });
            if (spec.kind === "vlan" || spec.kind === "macvlan" || spec.kind === "ipvlan") {
              w.attrU32(IFLA.LINK, indexOf(spec.parent));
            }
            writeLinkInfo(w, kindInfo(spec, peerFd));
            sock.request(RTM.NEWLINK, NLM_F_CREATE | NLM_F_EXCL, w.finish());
          }));
      }, true),
    deleteLink: (sel) =>
      attempt("delete link", String(sel), () => {
        sock.request(RTM.DELLINK, 0, selectLink(sel).finish());
      }),
    setLink: (sel, changes: LinkChanges) =>
      attempt("set link", String(sel), () => {
        if (changes.name !== undefined) V.checkName(changes.name);
        const mac = changes.mac !== undefined ? V.deviceMac(changes.mac) : undefined;
        const up = changes.up === undefined ? 0 : IFF_UP;
        // A rename needs the ifindex: with index 0, IFLA_IFNAME selects the link instead.
        const target = changes.name !== undefined ? indexOf(sel) : sel;
        const w = selectLink(target, changes.up ? IFF_UP : 0, up);
        if (mac) w.attr(IFLA.ADDRESS, mac);
        if (changes.mtu !== undefined) w.attrU32(IFLA.MTU, changes.mtu);
        if (changes.name !== undefined) w.attrStr(IFLA.IFNAME, changes.name);
        if (changes.alias !== undefined) w.attrStr(IFLA.IFALIAS, changes.alias ?? "");
        if (changes.master !== undefined) w.attrU32(IFLA.MASTER, changes.master === null ? 0 : indexOf(changes.master));
        sock.request(RTM.NEWLINK, 0, w.finish());
      }),
    moveLink: (sel, target) =>
      attempt("move link", `${sel} to ${NetnsRef.describe(target)}`, () =>
        sw.withFd(target, (fd) => {
          sock.request(RTM.NEWLINK, 0, selectLink(sel).attrU32(IFLA.NET_NS_FD, fd!).finish());
        })),
  };
}

/** `ip address`. */
function addressOps({ ref, sock }: HandleContext): Pick<
  NetnsHandle,
  "addresses" | "addAddress" | "replaceAddress" | "deleteAddress"
> {
  const { indexOf } = lookups(sock);
  const addrOp = (spec: AddressSpec, mode: "add" | "replace") =>
    attempt(`${mode} address`, `${spec.cidr} on ${spec.link}`, () => {
      const r = V.addrRequest(spec);
      sock.request(
        RTM.NEWADDR,
        writeFlags(mode),
        encodeAddr({
          family: r.ip.family,
          prefix: r.ip.prefix,
          flags: r.flags,
          scope: scopes[r.scope],
          index: indexOf(spec.link),
          local: r.ip.bytes,
          ...(r.broadcast ? { broadcast: r.broadcast.bytes } : {}),
          ...(r.label !== undefined ? { label: r.label } : {}),
        }),
      );
    });

  return {
    addresses: (filter = {}) =>
      attempt(
        "list addresses",
        filter.link !== undefined ? `on ${filter.link}` : `in ${NetnsRef.describe(ref)}`,
        () => {
          const index = filter.link !== undefined ? indexOf(filter.link) : undefined;
          const af = filter.family ? afOf(filter.family) : AF_UNSPEC;
          return sock.dump(RTM.GETADDR, encodeAddrDump(af))
            .map(decodeAddr)
            .filter((a): a is Address =>
              a !== undefined && (index === undefined || a.link === index) &&
              (filter.family === undefined || a.family === filter.family)
            );
        },
      ),
    addAddress: (spec) => addrOp(spec, "add"),
    replaceAddress: (spec) => addrOp(spec, "replace"),
    deleteAddress: (link, cidr) =>
      attempt("delete address", `${cidr} on ${link}`, () => {
        const p = V.prefix(cidr, "address");
        sock.request(
          RTM.DELADDR,
          0,
          encodeAddr({ family: p.family, prefix: p.prefix, flags: 0, scope: 0, index: indexOf(link), local: p.bytes }),
        );
      }),
  };
}

/** `ip route` and `ip rule`. */
function routeOps({ ref, sock }: HandleContext): Pick<
  NetnsHandle,
  "routes" | "addRoute" | "replaceRoute" | "deleteRoute" | "rules" | "addRule" | "deleteRule"
> {
  const { indexOf } = lookups(sock);
  const routeBody = (spec: RouteSpec, forDelete: boolean) => {
    const r = V.routeRequest(spec, forDelete);
    const dst = V.checkRouteDst(r);
    return encodeRoute({
      family: r.family,
      ...(dst ? { dst } : {}),
      dstLen: r.dstLen,
      table: r.table,
      protocol: spec.protocol !== undefined ? protocolValue(spec.protocol) : forDelete ? 0 : protocolValue("boot"),
      scope: scopes[r.scope],
      type: routeTypes.indexOf(r.type),
      onlink: r.onlink,
      ...(r.gateway ? { gateway: r.gateway.bytes } : {}),
      ...(spec.link !== undefined ? { oif: indexOf(spec.link) } : {}),
      ...(r.metric !== undefined ? { metric: r.metric } : {}),
      ...(r.src ? { src: r.src.bytes } : {}),
    });
  };
  const routeOp = (spec: RouteSpec, mode: "add" | "replace") =>
    attempt(`${mode} route`, V.describeRoute(spec), () => {
      sock.request(RTM.NEWROUTE, writeFlags(mode), routeBody(spec, false));
    });

  const ruleBody = (spec: Parameters<typeof V.ruleRequest>[0]) => {
    const r = V.ruleRequest(spec);
    return encodeRule({
      family: r.family,
      ...(r.src ? { src: r.src } : {}),
      ...(r.dst ? { dst: r.dst } : {}),
      ...(r.table !== undefined ? { table: r.table } : {}),
      ...(r.priority !== undefined ? { priority: r.priority } : {}),
      ...(r.iif !== undefined ? { iif: r.iif } : {}),
      ...(r.oif !== undefined ? { oif: r.oif } : {}),
      ...(r.fwmark !== undefined ? { fwmark: r.fwmark } : {}),
    });
  };

  return {
    routes: (filter = {}) =>
      attempt("list routes", `in ${NetnsRef.describe(ref)}`, () => {
        const index = filter.link !== undefined ? indexOf(filter.link) : undefined;
        const table = filter.table ?? 254;
        return sock.dump(RTM.GETROUTE, encodeRouteDump(filter.family ? afOf(filter.family) : AF_UNSPEC))
          .map(decodeRoute)
          .filter((r): r is Route =>
            r !== undefined && (filter.family === undefined || r.family === filter.family) &&
            (table === "all" || r.table === table) && (index === undefined || r.link === index)
          );
      }),
    addRoute: (spec) => routeOp(spec, "add"),
    replaceRoute: (spec) => routeOp(spec, "replace"),
    deleteRoute: (spec) =>
      attempt("delete route", V.describeRoute(spec), () => {
        sock.request(RTM.DELROUTE, 0, routeBody(spec, true));
      }),
    rules: (family) =>
      attempt(
        "list rules",
        `in ${NetnsRef.describe(ref)}`,
        () =>
          sock.dump(RTM.GETRULE, encodeRuleDump(family ? afOf(family) : AF_UNSPEC))
            .map(decodeRule)
            .filter((r): r is Rule => r !== undefined && (family === undefined || r.family === family)),
      ),
    addRule: (spec) =>
      attempt("add rule", V.describeRule(spec), () => {
        sock.request(RTM.NEWRULE, NLM_F_CREATE | NLM_F_EXCL, ruleBody(spec));
      }),
    deleteRule: (match) =>
      attempt("delete rule", V.describeRule(match), () => {
        sock.request(RTM.DELRULE, 0, ruleBody(match));
      }),
  };
}

/** `ip neighbour` and `bridge fdb`. */
function neighbourOps({ sock }: HandleContext): Pick<NetnsHandle, "neighbours" | "addNeighbour" | "deleteNeighbour"> {
  const { indexOf } = lookups(sock);
  return {
    neighbours: (filter) =>
      attempt("list neighbours", `${filter.family}${filter.link !== undefined ? ` on ${filter.link}` : ""}`, () => {
        const index = filter.link !== undefined ? indexOf(filter.link) : undefined;
        return sock.dump(RTM.GETNEIGH, encodeNeighDump(neighbourAf(filter.family)))
          .map(decodeNeigh)
          .filter((n): n is Neighbour =>
            n !== undefined && n.family === filter.family && (index === undefined || n.link === index)
          );
      }),
    addNeighbour: (spec, mode = "add") =>
      attempt(`${mode} neighbour`, V.describeNeighbour(spec), () => {
        const r = V.neighRequest(spec);
        const bridge = spec.family === "bridge";
        // As bridge(8): an FDB entry is NOARP as well as permanent; as ip-neighbour(8): permanent by default.
        const state = nudValue(spec.state ?? "permanent") | (bridge ? nudValue("noarp") : 0);
        sock.request(
          RTM.NEWNEIGH,
          writeFlags(mode),
          encodeNeigh({
            af: neighbourAf(spec.family),
            index: indexOf(spec.link),
            state,
            flags: bridge ? (spec.master ? NTF_MASTER : NTF_SELF) : 0,
            lladdr: r.lladdr,
            ...(r.dst ? { dst: r.dst.bytes } : {}),
          }),
        );
      }),
    deleteNeighbour: (spec) =>
      attempt("delete neighbour", V.describeNeighbour(spec), () => {
        const r = V.neighRequest(spec);
        const bridge = spec.family === "bridge";
        sock.request(
          RTM.DELNEIGH,
          0,
          encodeNeigh({
            af: neighbourAf(spec.family),
            index: indexOf(spec.link),
            state: 0,
            flags: bridge ? (spec.master ? NTF_MASTER : NTF_SELF) : 0,
            lladdr: r.lladdr,
            ...(r.dst ? { dst: r.dst.bytes } : {}),
          }),
        );
      }),
  };
}

/** What is not netlink: sysctls and the gratuitous ARP, done with the thread switched into the namespace. */
function namespaceOps({ sock, nsFd, sw }: HandleContext): Pick<NetnsHandle, "sysctl" | "setSysctl" | "gratuitousArp"> {
  const { getLink } = lookups(sock);
  const sysctlPath = (key: string) => {
    V.checkSysctlKey(key);
    return `/proc/sys/${key}`;
  };

  return {
    sysctl: (key) =>
      attempt("get sysctl", key, () => {
        const path = sysctlPath(key);
        // /proc/sys/net resolves to the opener's namespace, so open (and read) inside it.
        return sw.inside(nsFd, () => {
          const fd = sys.open(path, O_RDONLY | O_CLOEXEC);
          try {
            const buf = new Uint8Array(4096);
            const n = sys.read(fd, buf);
            return new TextDecoder().decode(buf.subarray(0, n)).trim();
          } finally {
            sys.close(fd);
          }
        });
      }),
    setSysctl: (key, value) =>
      attempt("set sysctl", `${key}=${value}`, () => {
        const path = sysctlPath(key);
        sw.inside(nsFd, () => {
          const fd = sys.open(path, O_WRONLY | O_CLOEXEC);
          try {
            sys.write(fd, new TextEncoder().encode(value));
          } finally {
            sys.close(fd);
          }
        });
      }),
    gratuitousArp: (link, address) =>
      attempt("send gratuitous arp", `${address} on ${link}`, () => {
        const ip = V.ip(address);
        if (ip.family !== 4) throw new KernelError(Errno.EINVAL, "gratuitous ARP is IPv4 only");
        const l = getLink(link);
        if (!l.mac) throw new KernelError(Errno.EOPNOTSUPP, `link ${l.name} has no MAC address`);
        const frame = arpAnnouncement(V.mac(l.mac), ip.bytes);
        const addr = new Uint8Array(20); // sockaddr_ll
        const v = new DataView(addr.buffer);
        v.setUint16(0, AF_PACKET, true);
        v.setUint16(2, ETH_P_ARP, false);
        v.setInt32(4, l.index, true);
        addr[11] = 6;
        addr.fill(0xff, 12, 18);
        // An AF_PACKET socket sends through the ifindex of the namespace it was created in.
        const fd = sw.inside(nsFd, () => sys.socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
        try {
          sys.sendto(fd, frame, addr);
        } finally {
          sys.close(fd);
        }
      }),
  };
}

/** A NetnsHandle over one socket; `nsFd` is undefined for the host namespace (no switch needed). */
function makeHandle(ref: NetnsRef, sock: NetlinkSocket, nsFd: number | undefined, sw: Switcher): NetnsHandle {
  const context: HandleContext = { ref, sock, nsFd, sw };
  return {
    ref,
    ...linkOps(context),
    ...addressOps(context),
    ...routeOps(context),
    ...neighbourOps(context),
    ...namespaceOps(context),
  };
}

/** Ethernet broadcast frame carrying an ARP request whose sender and target address are both `ip`. */
export function arpAnnouncement(mac: Uint8Array, ip: Uint8Array): Uint8Array {
  const f = new Uint8Array(42);
  const v = new DataView(f.buffer);
  f.fill(0xff, 0, 6);
  f.set(mac, 6);
  v.setUint16(12, ETH_P_ARP, false);
  v.setUint16(14, 1, false); // hardware type: Ethernet
  v.setUint16(16, 0x0800, false); // protocol type: IPv4
  f[18] = 6;
  f[19] = 4;
  v.setUint16(20, 1, false); // request
  f.set(mac, 22);
  f.set(ip, 28);
  f.set(ip, 38); // target hardware address stays zero
  return f;
}

export const make = (opts: LiveOptions = {}): Effect.Effect<Netlink["Service"], NetlinkError, Scope.Scope> =>
  Effect.gen(function* () {
    const netnsDir = opts.netnsDir ?? "/run/netns";
    const hostFd = yield* Effect.acquireRelease(
      attempt("open netns", THREAD_NETNS, () => sys.open(THREAD_NETNS, O_RDONLY | O_CLOEXEC)),
      (fd) => Effect.sync(() => sys.close(fd)),
    );
    const sw = new Switcher(hostFd);
    const hostSock = yield* Effect.acquireRelease(
      attempt("open netlink socket", "in host netns", () => NetlinkSocket.open()),
      (s) => Effect.sync(() => s.close()),
    );
    const host = makeHandle(NetnsRef.host, hostSock, undefined, sw);

    const openHandle = (ref: NetnsRef) =>
      attempt("open netns", NetnsRef.describe(ref), () => {
        const fd = ref._tag === "Path" ? sys.open(ref.path, O_RDONLY | O_CLOEXEC) : ref._tag === "Fd" ? ref.fd : -1;
        try {
          const sock = sw.inside(fd, () => NetlinkSocket.open());
          return { fd, ownsFd: ref._tag === "Path", sock };
        } catch (e) {
          if (ref._tag === "Path") sys.close(fd);
          throw e;
        }
      });

    const makeShared = () => {
      // As iproute2: make the directory a shared mount so names appear in other mount namespaces too.
      try {
        sys.mount("none", netnsDir, "none", MS_SHARED | MS_REC);
      } catch (e) {
        if (!(e instanceof KernelError && e.errno === Errno.EINVAL)) throw e;
        sys.mount(netnsDir, netnsDir, "none", MS_BIND | MS_REC);
        sys.mount("none", netnsDir, "none", MS_SHARED | MS_REC);
      }
    };

    return Netlink.of({
      host,

      netns: (ref) =>
        ref._tag === "Host" ? Effect.succeed(host) : Effect.map(
          Effect.acquireRelease(openHandle(ref), (h) =>
            Effect.sync(() => {
              h.sock.close();
              if (h.ownsFd) sys.close(h.fd);
            })),
          (h) => makeHandle(ref, h.sock, h.fd, sw),
        ),

      createNetns: (name) =>
        attempt("create netns", name, () => {
          V.checkNetnsName(name);
          Deno.mkdirSync(netnsDir, { recursive: true });
          makeShared();
          const path = `${netnsDir}/${name}`;
          try {
            Deno.openSync(path, { createNew: true, write: true }).close();
          } catch (e) {
            if (e instanceof Deno.errors.AlreadyExists) throw new KernelError(Errno.EEXIST, path);
            throw e;
          }
          try {
            // A fresh namespace for this thread only, pinned by the bind mount, then back home.
            sys.unshare(CLONE_NEWNET);
            try {
              sys.mount(THREAD_NETNS, path, "none", MS_BIND);
            } finally {
              sw.back();
            }
          } catch (e) {
            Deno.removeSync(path);
            throw e;
          }
          return path;
        }),

      deleteNetns: (name) =>
        attempt("delete netns", name, () => {
          V.checkNetnsName(name);
          const path = `${netnsDir}/${name}`;
          try {
            sys.umount2(path, MNT_DETACH);
          } catch (e) {
            // Not mounted (a stale file) still gets removed; a missing file is reported by the removal.
            if (!(e instanceof KernelError && (e.errno === Errno.EINVAL || e.errno === Errno.ENOENT))) throw e;
          }
          try {
            Deno.removeSync(path);
          } catch (e) {
            if (e instanceof Deno.errors.NotFound) throw new KernelError(Errno.ENOENT, path);
            throw e;
          }
        }),

      listNetns: () =>
        attempt("list netns", netnsDir, () => {
          try {
            return [...Deno.readDirSync(netnsDir)].filter((e) => e.isFile).map((e) => e.name).sort();
          } catch (e) {
            if (e instanceof Deno.errors.NotFound) return [];
            throw e;
          }
        }),

      openNetns: (path) =>
        Effect.map(
          Effect.acquireRelease(
            attempt("open netns", path, () => sys.open(path, O_RDONLY | O_CLOEXEC)),
            (fd) => Effect.sync(() => sys.close(fd)),
          ),
          NetnsRef.fd,
        ),
    });
  });

/** The live layer; fails to build only when the host namespace or a netlink socket cannot be opened. */
export const layer = (opts: LiveOptions = {}): Layer.Layer<Netlink, NetlinkError> => Layer.effect(Netlink, make(opts));
