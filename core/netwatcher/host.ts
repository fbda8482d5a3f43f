// Converges one network namespace (a node) to the planned host interfaces: creates what is missing, re-creates
// what drifted (parent, VLAN ID, VNI, group, source address), fixes MTU and admin state in place, keeps the unicast
// VXLAN flood list equal to the peers, and deletes the interfaces netwatcher created that no network needs any
// more. Interfaces netwatcher did not create are never changed or deleted: they carry no ownership mark.
import { Effect } from "effect";
import { type Family, formatIp, parseIp } from "../net/ip.ts";
import type { Address, Link, LinkSpec, NetlinkError, NetnsHandle } from "../ports/netlink.ts";
import { HostInterfaceRefused } from "./errors.ts";
import type { HostIfaceSpec } from "./plan.ts";
import { multicastGroup, vxlanOverhead, VxlanPort } from "./vxlan.ts";

/**
 * The ownership mark, in the link alias (IFLA_IFALIAS): survives agent restarts, visible with `ip link`, and
 * something an administrator does not set by accident.
 */
export const OwnerAlias = "danm:netwatcher";
export const isOwned = (l: Link): boolean => l.alias === OwnerAlias;

const ZeroMac = "00:00:00:00:00:00";

export type HostAction =
  | "create"
  | "recreate"
  | "delete"
  | "set-mtu"
  | "set-up"
  | "host-device-up"
  | "fdb-add"
  | "fdb-delete";

export interface IfaceOutcome {
  readonly ready: boolean;
  /** What is in place, or why it is not. */
  readonly message: string;
}

export interface HostReport {
  /** Per planned interface name. */
  readonly outcomes: ReadonlyMap<string, IfaceOutcome>;
  /** What this pass changed, e.g. { action: "recreate", iface: "vx_a", detail: "VNI 600 → 601" }. */
  readonly actions: ReadonlyArray<{ readonly action: HostAction; readonly iface: string; readonly detail: string }>;
  /** Interfaces carrying the ownership mark after the pass, by kind. */
  readonly owned: { readonly vlan: number; readonly vxlan: number };
}

export interface HostContext {
  /** The node name, for messages. */
  readonly node: string;
  /** Underlay addresses of the other nodes, of one family: the unicast VXLAN flood list. */
  readonly peers: (family: Family) => ReadonlyArray<string>;
}

/** Canonical text of an IP (so "ff02:0::258" and "ff02::258" compare equal); undefined stays undefined. */
const canon = (ip: string | undefined): string | undefined => {
  if (ip === undefined) return undefined;
  const p = parseIp(ip);
  return p ? formatIp(p) : ip;
};

/** The kernel state an interface must have; derived from the spec and the host device as they are now. */
interface Wanted {
  readonly spec: HostIfaceSpec;
  readonly parent: Link;
  readonly mtu: number;
  /** VXLAN only. */
  readonly local?: string;
  readonly family?: Family;
  readonly group?: string;
}

/** The first universe-scope address of the host device, IPv4 before IPv6 (DANM's VXLAN source rule). */
function underlayAddress(addresses: ReadonlyArray<Address>): { address: string; family: Family } | undefined {
  const usable = addresses.filter((a) =>
    a.scope === "universe" && !a.flags.includes("tentative") && !a.flags.includes("dadfailed")
  );
  const pick = usable.find((a) => a.family === 4) ?? usable.find((a) => a.family === 6);
  return pick ? { address: canon(pick.address)!, family: pick.family } : undefined;
}

/**
 * Why an existing link is not the wanted one, or undefined when it is (MTU and up state aside). The miss flags are
 * not compared: the kernel cannot change them in place, and recreating a VXLAN would take its pods' interfaces along.
 */
function drift(l: Link, w: Wanted): string | undefined {
  const s = w.spec;
  if (l.kind !== s.kind) return `kind ${l.kind}, wanted ${s.kind}`;
  if (s.kind === "vlan") {
    if (l.parent !== w.parent.index) return `parent ifindex ${l.parent ?? "?"}, wanted ${s.parent}`;
    if (l.vlan?.id !== s.id) return `VLAN ${l.vlan?.id ?? "?"}, wanted ${s.id}`;
    return undefined;
  }
  const v = l.vxlan;
  if (!v) return "no VXLAN attributes";
  if (v.vni !== s.vni) return `VNI ${v.vni}, wanted ${s.vni}`;
  if (v.dev !== w.parent.index) return `underlay ifindex ${v.dev ?? "none"}, wanted ${s.parent}`;
  if (v.port !== VxlanPort) return `port ${v.port}, wanted ${VxlanPort}`;
  if (canon(v.local) !== w.local) return `source ${v.local ?? "none"}, wanted ${w.local}`;
  if (canon(v.group) !== w.group) return `group ${v.group ?? "none"}, wanted ${w.group ?? "none"}`;
  if (v.remote !== undefined) return `default remote ${v.remote}, wanted none`;
  return undefined;
}

function linkSpec(w: Wanted): LinkSpec {
  const s = w.spec;
  if (s.kind === "vlan") return { kind: "vlan", name: s.name, parent: w.parent.index, id: s.id, mtu: w.mtu };
  return {
    kind: "vxlan",
    name: s.name,
    vni: s.vni,
    port: VxlanPort,
    dev: w.parent.index,
    mtu: w.mtu,
    // DANM's VXLAN: learning, l2miss and l3miss on.
    learning: true,
    l2miss: true,
    l3miss: true,
    ...(w.local === undefined ? {} : { local: w.local }),
    ...(w.group === undefined ? {} : { group: w.group }),
  };
}

const summary = (w: Wanted): string => {
  const s = w.spec;
  return s.kind === "vlan"
    ? `${s.name}: VLAN ${s.id} on ${s.parent}, MTU ${w.mtu}`
    : `${s.name}: VNI ${s.vni} on ${s.parent} from ${w.local}, ${
      s.mode === "multicast" ? `group ${w.group}` : "unicast"
    }, MTU ${w.mtu}`;
};

/** What the steps of one reconcile share: the namespace, the node's context, the action log and refusals. */
interface HostStep {
  readonly ns: NetnsHandle;
  readonly ctx: HostContext;
  readonly act: (action: HostAction, iface: string, detail: string) => Effect.Effect<void>;
  readonly refuse: (iface: string, reason: string) => HostInterfaceRefused;
}

/** What `spec` needs given its host device: the link to build, or why it cannot be built. */
const wantedOf = ({ ns, refuse, act }: HostStep, spec: HostIfaceSpec) =>
  Effect.gen(function* () {
    const parent = yield* ns.link(spec.parent).pipe(
      Effect.catchTag("NetlinkNotFound", () => Effect.fail(refuse(spec.name, `host device ${spec.parent} not found`))),
    );
    if (!parent.up) {
      // DANM #44: a VLAN or VXLAN on a down host device carries nothing.
      yield* ns.setLink(parent.index, { up: true });
      yield* act("host-device-up", spec.name, parent.name);
    }
    if (spec.kind === "vlan") {
      const mtu = spec.mtu ?? parent.mtu;
      if (mtu > parent.mtu) {
        return yield* refuse(spec.name, `MTU ${mtu} does not fit host device ${parent.name} (MTU ${parent.mtu})`);
      }
      return { spec, parent, mtu } satisfies Wanted;
    }
    const under = underlayAddress(yield* ns.addresses({ link: parent.index }));
    if (!under) {
      return yield* refuse(spec.name, `host device ${parent.name} has no IPv4 or IPv6 address to send VXLAN from`);
    }
    const overhead = vxlanOverhead(under.family);
    const room = parent.mtu - overhead;
    const mtu = spec.mtu ?? room;
    if (mtu > room) {
      return yield* refuse(
        spec.name,
        `MTU ${mtu} does not fit host device ${parent.name} (MTU ${parent.mtu}) minus the VXLAN overhead ` +
          `(${overhead} bytes over IPv${under.family}): at most ${room}`,
      );
    }
    if (mtu < 68) {
      return yield* refuse(spec.name, `host device ${parent.name} (MTU ${parent.mtu}) is too small`);
    }
    return {
      spec,
      parent,
      mtu,
      local: under.address,
      family: under.family,
      ...(spec.mode === "multicast" ? { group: canon(multicastGroup(under.family, spec.vni)) } : {}),
    } satisfies Wanted;
  });

/** Down until marked: a crash in between leaves an unmarked, idle link rather than a live foreign-looking one. */
const createOwned = (ns: NetnsHandle, w: Wanted) =>
  Effect.gen(function* () {
    yield* ns.createLink(linkSpec(w));
    yield* ns.setLink(w.spec.name, { alias: OwnerAlias });
    yield* ns.setLink(w.spec.name, { up: true });
  });

/** A unicast VXLAN's flood list (all-zero FDB entries) set to the peers' underlay addresses. */
const syncFlood = ({ ns, ctx, act }: HostStep, w: Wanted) =>
  Effect.gen(function* () {
    const name = w.spec.name;
    const want = new Set(
      ctx.peers(w.family!).map((p) => canon(p)!).filter((p) => p !== w.local),
    );
    const have = new Set(
      (yield* ns.neighbours({ family: "bridge", link: name }))
        .filter((n) => n.lladdr === ZeroMac && n.dst !== undefined)
        .map((n) => canon(n.dst)!),
    );
    for (const p of want) {
      if (have.has(p)) continue;
      yield* ns.addNeighbour({ family: "bridge", link: name, lladdr: ZeroMac, dst: p }, "append");
      yield* act("fdb-add", name, p);
    }
    for (const p of have) {
      if (want.has(p)) continue;
      yield* ns.deleteNeighbour({ family: "bridge", link: name, lladdr: ZeroMac, dst: p });
      yield* act("fdb-delete", name, p);
    }
    return want.size;
  });

/** One planned interface made as planned: created, re-created on drift, or its MTU and state corrected. */
const ensure = (step: HostStep, spec: HostIfaceSpec) =>
  Effect.gen(function* () {
    const { ns, refuse, act } = step;
    const w = yield* wantedOf(step, spec);
    const existing = yield* ns.link(spec.name).pipe(
      Effect.catchTag("NetlinkNotFound", () => Effect.succeed(undefined)),
    );
    if (existing && !isOwned(existing)) {
      // Somebody else's link: usable if it is what we would have built, never touched either way.
      const why = drift(existing, w);
      if (why !== undefined) {
        return yield* refuse(spec.name, `a link of that name exists, was not created by danm and differs (${why})`);
      }
      return { ready: true, message: `${summary(w)} (existing link, not managed by danm)` };
    }
    if (!existing) {
      yield* createOwned(ns, w);
      yield* act("create", spec.name, summary(w));
    } else {
      const why = drift(existing, w);
      if (why !== undefined) {
        yield* ns.deleteLink(existing.index);
        yield* createOwned(ns, w);
        yield* act("recreate", spec.name, why);
      } else {
        if (existing.mtu !== w.mtu) {
          yield* ns.setLink(existing.index, { mtu: w.mtu });
          yield* act("set-mtu", spec.name, `${existing.mtu} → ${w.mtu}`);
        }
        if (!existing.up) {
          yield* ns.setLink(existing.index, { up: true });
          yield* act("set-up", spec.name, "");
        }
      }
    }
    let message = summary(w);
    if (spec.kind === "vxlan" && spec.mode === "unicast") message += `, ${yield* syncFlood(step, w)} peer(s)`;
    return { ready: true, message };
  });

export const reconcileHost = (
  ns: NetnsHandle,
  planned: ReadonlyMap<string, HostIfaceSpec>,
  ctx: HostContext,
): Effect.Effect<HostReport, NetlinkError> =>
  Effect.gen(function* () {
    const actions: Array<{ action: HostAction; iface: string; detail: string }> = [];
    const act = (action: HostAction, iface: string, detail: string) => {
      actions.push({ action, iface, detail });
      return Effect.logInfo(`netwatcher ${ctx.node}: ${action} ${iface}${detail ? ` (${detail})` : ""}`);
    };
    const refuse = (iface: string, reason: string) =>
      new HostInterfaceRefused({ operation: "set up host interface", object: `${iface} on node ${ctx.node}`, reason });
    const step: HostStep = { ns, ctx, act, refuse };

    // Removals first: an interface that moves to another name (NetworkID changed) frees its VLAN ID / VNI, which
    // the kernel allows only once per parent.
    for (const l of yield* ns.links()) {
      if (!isOwned(l) || planned.has(l.name)) continue;
      yield* ns.deleteLink(l.index).pipe(Effect.catchTag("NetlinkNotFound", () => Effect.void));
      yield* act("delete", l.name, "no network needs it");
    }

    const outcomes = new Map<string, IfaceOutcome>();
    for (const spec of planned.values()) {
      const outcome = yield* ensure(step, spec).pipe(
        Effect.catch((e: HostInterfaceRefused | NetlinkError) =>
          Effect.succeed<IfaceOutcome>({ ready: false, message: e.message })
        ),
      );
      outcomes.set(spec.name, outcome);
    }

    const owned = { vlan: 0, vxlan: 0 };
    for (const l of yield* ns.links()) {
      if (isOwned(l) && (l.kind === "vlan" || l.kind === "vxlan")) owned[l.kind]++;
    }
    return { outcomes, actions, owned };
  });
