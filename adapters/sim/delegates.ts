// Simulated delegate CNI plugins for the embedded simulation: in-memory stand-ins for flannel, calico, bridge,
// macvlan, ipvlan, host-device … They do on the node's simulated kernel what the real plugins do on a real one
// (an interface in the pod's namespace, addresses from their IPAM section, a default route where the real
// plugin would add one) and answer in the requested CNI version, so danm's delegation path runs unchanged.
import { Effect, Schema } from "effect";
import type { FakeInvocation, FakeOutput, MemoryProcess } from "../process/memory.ts";
import { type LinkSpec, type Netlink, NetnsRef } from "../../core/ports/netlink.ts";
import { formatIp, lastAddress, parseCidr } from "../../core/net/ip.ts";

const Opt = Schema.optionalKey;

const IpamSection = Schema.Struct({
  type: Schema.String,
  /** host-local (simple form) */
  subnet: Opt(Schema.String),
  gateway: Opt(Schema.String),
  ranges: Opt(Schema.Array(Schema.Array(Schema.Struct({ subnet: Schema.String, gateway: Opt(Schema.String) })))),
  /** static */
  addresses: Opt(Schema.Array(Schema.Struct({ address: Schema.String, gateway: Opt(Schema.String) }))),
  routes: Opt(Schema.Array(Schema.Struct({ dst: Schema.String, gw: Opt(Schema.String) }))),
});

/** What an exec'd IPAM plugin prints: its result, or a CNI error. */
const IpamOutput = Schema.Struct({
  ips: Schema.Array(Schema.Struct({ address: Schema.String, gateway: Opt(Schema.String) })),
});
const IpamError = Schema.Struct({ msg: Schema.String });
// Built once: a Schema built per call is a new AST, and its parser is compiled again on every decode.
const decodeIpamOutput = Schema.decodeUnknownResult(Schema.fromJsonString(IpamOutput));
const decodeIpamError = Schema.decodeUnknownResult(Schema.fromJsonString(IpamError));

const PluginConfig = Schema.Struct({
  cniVersion: Opt(Schema.String),
  name: Opt(Schema.String),
  type: Opt(Schema.String),
  master: Opt(Schema.String),
  mode: Opt(Schema.String),
  mtu: Opt(Schema.Number),
  bridge: Opt(Schema.String),
  isGateway: Opt(Schema.Boolean),
  ipam: Opt(IpamSection),
});
type PluginConfig = typeof PluginConfig.Type;

/** How a simulated plugin makes its interface, the real plugin's way. */
export interface SimulatedPlugin {
  /** A link on the config's `master`, made in the pod (macvlan, ipvlan); otherwise a veth pair. */
  readonly child?: (child: { name: string; parent: string; netns: NetnsRef }) => LinkSpec;
  /** The veth's host end goes on the config's bridge (default cni0). */
  readonly bridge?: boolean;
  /**
   * The cluster's pod network (flannel, calico): a per-node pod CIDR 10.<octet>.<node>.0/24 when its config has no
   * IPAM, and a default route through the gateway.
   */
  readonly podNetworkOctet?: number;
}

/** The simulated plugins (the twins of the delegates danm's backends run), by plugin type. */
export const simulatedPlugins: Readonly<Record<string, SimulatedPlugin>> = {
  flannel: { podNetworkOctet: 244 },
  calico: { podNetworkOctet: 245 },
  bridge: { bridge: true },
  ptp: {},
  macvlan: { child: (c) => ({ kind: "macvlan", mode: "bridge", ...c }) },
  ipvlan: { child: (c) => ({ kind: "ipvlan", mode: "l2", ...c }) },
  "host-device": {},
  sriov: {},
};

export const simulatedPluginTypes = Object.keys(simulatedPlugins);

interface Address {
  readonly cidr: string;
  readonly gateway?: string;
}

const error = (version: string, code: number, msg: string): FakeOutput => ({
  code: 1,
  stdout: JSON.stringify({ cniVersion: version, code, msg }),
});

/**
 * host-local style allocation state, per subnet, for the lifetime of the simulation: like host-local, the search for a
 * free address starts after the last one handed out, so an allocation does not scan every lease.
 */
function hostLocalPools() {
  interface Pool {
    readonly byOwner: Map<string, bigint>;
    readonly taken: Set<bigint>;
    last?: bigint;
  }
  const pools = new Map<string, Pool>();
  const allocate = (subnet: string, owner: string): Address | undefined => {
    const parsed = parseCidr(subnet);
    if (!parsed) return undefined;
    const c = parsed.cidr;
    let pool = pools.get(subnet);
    if (!pool) pools.set(subnet, pool = { byOwner: new Map(), taken: new Set() });
    const gateway = c.base + 1n;
    const first = c.base + 2n, end = lastAddress(c);
    let value = pool.byOwner.get(owner);
    if (value === undefined && end > first) {
      const start = pool.last !== undefined && pool.last + 1n < end ? pool.last + 1n : first;
      let v = start;
      do {
        if (!pool.taken.has(v)) value = v;
        else v = v + 1n < end ? v + 1n : first;
      } while (value === undefined && v !== start);
    }
    if (value === undefined) return undefined;
    pool.byOwner.set(owner, value);
    pool.taken.add(value);
    pool.last = value;
    return {
      cidr: `${formatIp({ family: c.family, value })}/${c.prefix}`,
      gateway: formatIp({ family: c.family, value: gateway }),
    };
  };
  const release = (owner: string) => {
    for (const pool of pools.values()) {
      const value = pool.byOwner.get(owner);
      if (value === undefined) continue;
      pool.byOwner.delete(owner);
      pool.taken.delete(value);
    }
  };
  return { allocate, release };
}

/** Any other IPAM type is exec'd from CNI_PATH (first match) with the plugin's configuration, as libcni does. */
const execIpam = (proc: MemoryProcess, inv: FakeInvocation, type: string): Effect.Effect<Address[] | string> =>
  Effect.gen(function* () {
    const dirs = (inv.env.CNI_PATH ?? "").split(":").filter((d) => d !== "");
    const dir = dirs.find((d) => proc.registered(`${d}/${type}`) !== undefined);
    if (dir === undefined) return `IPAM plugin ${type} not found in CNI_PATH ${dirs.join(":")}`;
    const out = yield* Effect.result(proc.service.exec({ argv: [`${dir}/${type}`], env: inv.env, stdin: inv.stdin }));
    if (out._tag === "Failure") return `IPAM plugin ${type}: ${out.failure.message}`;
    const text = new TextDecoder().decode(out.success.stdout);
    const parsed = decodeIpamOutput(text);
    if (out.success.code !== 0 || parsed._tag === "Failure") {
      const e = decodeIpamError(text);
      return `IPAM plugin ${type}: ${e._tag === "Success" ? e.success.msg : text.slice(0, 200)}`;
    }
    return parsed.success.ips.map((ip) => ({ cidr: ip.address, ...(ip.gateway ? { gateway: ip.gateway } : {}) }));
  });

/** Addresses from the IPAM types simulated here, an error, or undefined for a type to exec. */
const ipamAddresses = (
  conf: PluginConfig,
  owner: string,
  allocate: (subnet: string, owner: string) => Address | undefined,
): Address[] | string | undefined => {
  const ipam = conf.ipam;
  if (!ipam) return [];
  switch (ipam.type) {
    case "static":
      return (ipam.addresses ?? []).map((a) => ({ cidr: a.address, ...(a.gateway ? { gateway: a.gateway } : {}) }));
    case "host-local": {
      const subnets = ipam.ranges?.map((r) => r[0]?.subnet).filter((s): s is string => !!s) ??
        (ipam.subnet ? [ipam.subnet] : []);
      const out: Address[] = [];
      for (const s of subnets) {
        const a = allocate(s, owner);
        if (!a) return `host-local: no free address in ${s}`;
        out.push(a);
      }
      return out;
    }
    default:
      return undefined;
  }
};

/**
 * Registers the simulated plugins under `binDir` in `proc`; they act on `kernel` (the node's simulated kernel,
 * reached through `netlink`). `nodeIndex` separates the per-node pod CIDRs of flannel/calico.
 */
export function registerSimulatedDelegates(
  proc: MemoryProcess,
  netlink: Netlink["Service"],
  opts: { readonly binDir: string; readonly nodeIndex: number },
): void {
  const { allocate, release } = hostLocalPools();

  const plugin = (type: string, sim: SimulatedPlugin) => (inv: FakeInvocation): Effect.Effect<FakeOutput> =>
    Effect.gen(function* () {
      const command = inv.env.CNI_COMMAND ?? "";
      const raw = new TextDecoder().decode(inv.stdin);
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch {
        return error("1.0.0", 6, `${type}: cannot decode the network configuration`);
      }
      const decoded = Schema.decodeUnknownResult(PluginConfig)(json);
      if (decoded._tag === "Failure") return error("1.0.0", 7, `${type}: ${decoded.failure.message}`);
      const conf = decoded.success;
      const version = conf.cniVersion ?? "1.0.0";
      const ifname = inv.env.CNI_IFNAME ?? "eth0";
      const owner = `${inv.env.CNI_CONTAINERID ?? ""}/${ifname}`;
      if (command === "VERSION") {
        return {
          stdout: JSON.stringify({ cniVersion: version, supportedVersions: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] }),
        };
      }
      if (command === "CHECK" || command === "GC" || command === "STATUS") return {};
      const podNs = NetnsRef.path(inv.env.CNI_NETNS ?? "");
      if (command === "DEL") {
        release(owner);
        if (inv.env.CNI_NETNS) {
          yield* Effect.scoped(Effect.gen(function* () {
            const pod = yield* netlink.netns(podNs);
            yield* pod.deleteLink(ifname);
          })).pipe(Effect.ignore);
        }
        return {};
      }
      if (command !== "ADD") return error(version, 4, `${type}: unknown CNI_COMMAND ${command}`);
      const planned = ipamAddresses(conf, owner, allocate);
      const addresses = planned ?? (yield* execIpam(proc, inv, conf.ipam!.type));
      if (typeof addresses === "string") return error(version, 11, addresses);
      // Pod network plugins (flannel, calico) bring their own IPAM when the config has none.
      const octet = sim.podNetworkOctet;
      const addrs = addresses.length === 0 && octet !== undefined
        ? [allocate(`10.${octet}.${opts.nodeIndex + 1}.0/24`, owner)!]
        : addresses;
      const created = yield* Effect.result(Effect.scoped(Effect.gen(function* () {
        const host = netlink.host;
        const pod = yield* netlink.netns(podNs);
        if (sim.child) {
          if (!conf.master) return yield* Effect.fail(`${type}: "master" is required`);
          const spec = sim.child({ name: ifname, parent: conf.master, netns: podNs });
          yield* host.createLink({ ...spec, ...(conf.mtu ? { mtu: conf.mtu } : {}) });
        } else {
          const peer = `veth${(inv.env.CNI_CONTAINERID ?? "x").slice(0, 6)}${ifname.slice(-3)}`.slice(0, 15);
          yield* host.createLink({ kind: "veth", name: peer, up: true, peer: { name: ifname, netns: podNs } });
          if (sim.bridge) {
            const br = conf.bridge ?? "cni0";
            const exists = yield* Effect.result(host.link(br));
            if (exists._tag === "Failure") yield* host.createLink({ kind: "bridge", name: br, up: true });
            yield* host.setLink(peer, { master: br });
          }
        }
        yield* pod.setLink(ifname, { up: true });
        for (const a of addrs) yield* pod.addAddress({ link: ifname, cidr: a.cidr, nodad: a.cidr.includes(":") });
        const gw = addrs.find((a) => a.gateway)?.gateway;
        if (gw && (octet !== undefined || conf.isGateway)) {
          yield* pod.addRoute({ dst: "default", gateway: gw, link: ifname }).pipe(Effect.ignore);
        }
        return yield* pod.link(ifname);
      })));
      if (created._tag === "Failure") {
        release(owner);
        const f = created.failure;
        return error(version, 11, `${type}: ${typeof f === "string" ? f : f.message}`);
      }
      const link = created.success;
      const legacy = version.startsWith("0.");
      return {
        stdout: JSON.stringify({
          cniVersion: version,
          interfaces: [{ name: ifname, mac: link.mac, sandbox: inv.env.CNI_NETNS }],
          ips: addrs.map((a) => ({
            ...(legacy ? { version: a.cidr.includes(":") ? "6" : "4" } : {}),
            address: a.cidr,
            ...(a.gateway ? { gateway: a.gateway } : {}),
            interface: 0,
          })),
          routes: [],
          dns: {},
        }),
      };
    });

  for (const [t, sim] of Object.entries(simulatedPlugins)) proc.register(`${opts.binDir}/${t}`, plugin(t, sim));
}
