// What the networks ask of every node, and the cluster-wide plan derived from it: which host interfaces must exist
// (reference-counted by the networks using them) and which networks are refused (conflicts, invalid input).
//
// Pure and deterministic: every node computes the same plan from the same objects, so the conflict winner is the
// same everywhere without any coordination.
import { Schema } from "effect";
import type { NetworkKind, NetworkOptions } from "../api/danm.ts";

/** Network annotation selecting the VXLAN flavour; absent = the agent's default (multicast, as DANM). */
export const VxlanModeAnnotation = "danm.io/vxlan-mode";
export const VxlanMode = Schema.Literals(["multicast", "unicast"]);
export type VxlanMode = typeof VxlanMode.Type;

export type SourceKind = NetworkKind | "NetworkAttachmentDefinition";

/** The object a demand comes from. */
export interface NetworkRef {
  readonly kind: SourceKind;
  /** Absent for ClusterNetworks. */
  readonly namespace?: string;
  readonly name: string;
  readonly uid?: string;
  readonly creationTimestamp?: string;
}

export const refKey = (r: NetworkRef): string => `${r.kind}/${r.namespace ? `${r.namespace}/` : ""}${r.name}`;
export const describeRef = (r: NetworkRef): string => `${r.kind} ${r.namespace ? `${r.namespace}/` : ""}${r.name}`;

export type HostIfaceSpec =
  | {
    readonly kind: "vlan";
    readonly name: string;
    /** The host_device. */
    readonly parent: string;
    readonly id: number;
    /** The network's `mtu`; absent = the parent's. */
    readonly mtu?: number;
  }
  | {
    readonly kind: "vxlan";
    readonly name: string;
    /** The host_device: the underlay the VTEP sends from. */
    readonly parent: string;
    readonly vni: number;
    readonly mode: VxlanMode;
    /** The network's `mtu`; absent = the parent's minus the VXLAN overhead. */
    readonly mtu?: number;
  };

export const describeSpec = (s: HostIfaceSpec): string =>
  (s.kind === "vlan" ? `VLAN ${s.id} on ${s.parent}` : `VNI ${s.vni} on ${s.parent} (${s.mode})`) +
  (s.mtu === undefined ? "" : `, MTU ${s.mtu}`);

/** What one network asks of every node. */
export interface Demand {
  readonly ref: NetworkRef;
  /** The host interfaces it needs (one: vlan and vxlan are exclusive). */
  readonly interfaces: ReadonlyArray<HostIfaceSpec>;
  /** Set when the network's host interfaces cannot even be derived; the network is refused on every node. */
  readonly problem?: string;
}

/** The inputs a demand is derived from, common to danm networks and NADs. */
export interface DemandInput {
  readonly ref: NetworkRef;
  readonly networkId?: string;
  readonly hostDevice?: string;
  readonly vlan?: number;
  readonly vxlan?: number;
  readonly mtu?: number;
  /** The raw value of the mode annotation, if any. */
  readonly mode?: string;
}

const IFNAMSIZ = 15;
const encoder = new TextEncoder();

/** The kernel's dev_valid_name: 1–15 bytes, not "." or "..", no '/', ':' or whitespace. */
export function validIfName(name: string): boolean {
  const n = encoder.encode(name).length;
  return n >= 1 && n <= IFNAMSIZ && name !== "." && name !== ".." && !/[/:\s]/.test(name);
}

export const vlanIfName = (networkId: string, vlan: number): string => `${networkId}.${vlan}`;
export const vxlanIfName = (networkId: string): string => `vx_${networkId}`;

const isVxlanMode = Schema.is(VxlanMode);

/**
 * DANM's rule (spec §5.2): nothing without host_device, nothing without vlan/vxlan. Undefined = the network needs
 * no host interface.
 */
export function demandOf(input: DemandInput, defaultMode: VxlanMode): Demand | undefined {
  const { ref } = input;
  if (!input.hostDevice || (input.vlan === undefined && input.vxlan === undefined)) return undefined;
  const refuse = (problem: string): Demand => ({ ref, interfaces: [], problem });
  if (input.vlan !== undefined && input.vxlan !== undefined) {
    return refuse("vlan and vxlan are mutually exclusive: no host interface is created");
  }
  if (!input.networkId) return refuse("a NetworkID is needed to name the host interface");
  if (!validIfName(input.hostDevice)) return refuse(`host_device "${input.hostDevice}" is not an interface name`);
  const common = { parent: input.hostDevice, ...(input.mtu === undefined ? {} : { mtu: input.mtu }) };
  let spec: HostIfaceSpec;
  if (input.vlan !== undefined) {
    spec = { kind: "vlan", name: vlanIfName(input.networkId, input.vlan), id: input.vlan, ...common };
  } else {
    const mode = input.mode ?? defaultMode;
    if (!isVxlanMode(mode)) {
      return refuse(`annotation ${VxlanModeAnnotation}: "${mode}" is neither "multicast" nor "unicast"`);
    }
    spec = { kind: "vxlan", name: vxlanIfName(input.networkId), vni: input.vxlan!, mode, ...common };
  }
  if (!validIfName(spec.name)) {
    return refuse(`host interface name "${spec.name}" is not valid (at most ${IFNAMSIZ} bytes): shorten the NetworkID`);
  }
  return { ref, interfaces: [spec] };
}

/** The demand of a DanmNet, TenantNetwork or ClusterNetwork. */
export function networkDemandInput(
  ref: NetworkRef,
  spec: { readonly NetworkID?: string; readonly Options?: NetworkOptions },
  annotations: Readonly<Record<string, string>> | undefined,
): DemandInput {
  const o = spec.Options ?? {};
  const mode = annotations?.[VxlanModeAnnotation];
  return {
    ref,
    ...(spec.NetworkID === undefined ? {} : { networkId: spec.NetworkID }),
    ...(o.host_device === undefined ? {} : { hostDevice: o.host_device }),
    ...(o.vlan === undefined ? {} : { vlan: o.vlan }),
    ...(o.vxlan === undefined ? {} : { vxlan: o.vxlan }),
    ...(o.mtu === undefined ? {} : { mtu: o.mtu }),
    ...(mode === undefined ? {} : { mode }),
  };
}

// ---------------------------------------------------------------------------------------------------------
// The plan

export interface PlannedInterface {
  readonly spec: HostIfaceSpec;
  /** The networks using it, winner first: the interface lives while this is non-empty. */
  readonly users: ReadonlyArray<NetworkRef>;
}

export interface Refusal {
  readonly ref: NetworkRef;
  readonly reason: "Conflict" | "InvalidNetwork";
  readonly message: string;
  /** The interfaces it would have needed. */
  readonly interfaces: ReadonlyArray<string>;
}

export interface Plan {
  /** By interface name. */
  readonly interfaces: ReadonlyMap<string, PlannedInterface>;
  /** By refKey. */
  readonly refused: ReadonlyMap<string, Refusal>;
  /** Every demand by refKey (also the refused ones). */
  readonly demands: ReadonlyMap<string, Demand>;
}

const kindOrder: Readonly<Record<SourceKind, number>> = {
  ClusterNetwork: 0,
  TenantNetwork: 1,
  DanmNet: 2,
  NetworkAttachmentDefinition: 3,
};

/** Oldest first; equal timestamps (1 s resolution) fall back to kind, then namespace/name: a total order. */
export function olderFirst(a: NetworkRef, b: NetworkRef): number {
  const ta = a.creationTimestamp ?? "\uffff", tb = b.creationTimestamp ?? "\uffff";
  if (ta !== tb) return ta < tb ? -1 : 1;
  if (a.kind !== b.kind) return kindOrder[a.kind] - kindOrder[b.kind];
  const ka = refKey(a), kb = refKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** What the kernel allows once per namespace: one VLAN ID per parent, one VNI per underlay and port. */
const kernelIdentity = (s: HostIfaceSpec): string =>
  s.kind === "vlan" ? `vlan ${s.parent} ${s.id}` : `vxlan ${s.parent} ${s.vni}`;

export function sameSpec(a: HostIfaceSpec, b: HostIfaceSpec): boolean {
  if (a.name !== b.name || a.parent !== b.parent || a.mtu !== b.mtu || a.kind !== b.kind) return false;
  return a.kind === "vlan"
    ? a.id === (b as typeof a).id
    : a.vni === (b as typeof a).vni && a.mode === (b as typeof a).mode;
}

/**
 * Builds the plan. Networks are considered oldest first; a network whose interface would clash with one already
 * claimed (same name with other parameters, or the same VLAN/VNI on the same parent under another name) is
 * refused, so the oldest network keeps the interface and its pods keep working.
 */
export function planInterfaces(demands: Iterable<Demand>): Plan {
  const all = [...demands].sort((a, b) => olderFirst(a.ref, b.ref));
  const interfaces = new Map<string, { spec: HostIfaceSpec; users: NetworkRef[] }>();
  const identities = new Map<string, string>();
  const refused = new Map<string, Refusal>();
  const byKey = new Map<string, Demand>();
  for (const d of all) {
    const key = refKey(d.ref);
    byKey.set(key, d);
    const names = d.interfaces.map((s) => s.name);
    if (d.problem !== undefined) {
      refused.set(key, { ref: d.ref, reason: "InvalidNetwork", message: d.problem, interfaces: names });
      continue;
    }
    let clash: string | undefined;
    for (const spec of d.interfaces) {
      const claimed = interfaces.get(spec.name);
      if (claimed && !sameSpec(claimed.spec, spec)) {
        clash = `host interface ${spec.name} is already claimed by the older ${describeRef(claimed.users[0])} ` +
          `(${describeSpec(claimed.spec)}); this network asks for ${describeSpec(spec)}`;
        break;
      }
      const holder = identities.get(kernelIdentity(spec));
      if (!claimed && holder !== undefined) {
        const other = interfaces.get(holder)!;
        clash = `${describeSpec(spec)} is already used by host interface ${holder} of the older ` +
          `${describeRef(other.users[0])}; this network would need it as ${spec.name}`;
        break;
      }
    }
    if (clash !== undefined) {
      refused.set(key, { ref: d.ref, reason: "Conflict", message: clash, interfaces: names });
      continue;
    }
    for (const spec of d.interfaces) {
      const claimed = interfaces.get(spec.name);
      if (claimed) claimed.users.push(d.ref);
      else {
        interfaces.set(spec.name, { spec, users: [d.ref] });
        identities.set(kernelIdentity(spec), spec.name);
      }
    }
  }
  return { interfaces, refused, demands: byKey };
}
