// Pure planning: what each attachment of a pod needs (backend, parent device, IPAM, routes), derived from the
// network objects the selection resolved (core/podnetworks/selection.ts). No I/O here; add.ts executes the plans.
//
// DANM rules (danm-spec §4.4–§4.7, §4.9):
// - NetworkType "" or "ipvlan" → the built-in IPVLAN; "macvlan" → the built-in MACVLAN (DANM: the macvlan plugin
//   with a generated config); "sriov" → a delegate with a generated config; anything else → a static delegate
//   configured by <cniDir>/<NetworkID>.conf (or, danm: .conflist); each backend plans its own part
//   (core/cni/backends).
// - The parent of ipvlan/macvlan: vx_<NetworkID> with vxlan, else <NetworkID>.<vlan> with vlan, else host_device.
// - danm's IPAM reserves the addresses for ipvlan, macvlan and sriov always, and for static delegates when the
//   pod asks for "none", or for an address on a network with the matching cidr/net6 (§4.6).
import type { NetworkKind, NetworkSpec } from "../api/danm.ts";
import { danmIpamReserves } from "../podnetworks/addressing.ts";
import { type Attachment, isDanmNetwork } from "../podnetworks/selection.ts";
import type { IpamNetwork } from "../ipam/allocator.ts";
import { parentOf } from "./attach/parent.ts";
import { backendOf, type BackendPlan } from "./backends/kinds.ts";
import { nadPlan } from "./backends/nad/spec.ts";

export type NetworkKindRef = NetworkKind | "NetworkAttachmentDefinition";

export interface NetworkIdentity {
  readonly kind: NetworkKindRef;
  /** Absent for ClusterNetworks. */
  readonly namespace?: string;
  readonly name: string;
  readonly uid: string;
}

export const describeNetwork = (n: { kind: string; namespace?: string; name: string }): string =>
  `${n.kind} ${n.namespace ? `${n.namespace}/` : ""}${n.name}`.trim();

export interface AttachmentPlan {
  /** Sequence index (position in the pod's list); 0 is eth0. */
  readonly index: number;
  readonly ifName: string;
  readonly network: NetworkIdentity;
  /** describeNetwork(network), for messages. */
  readonly label: string;
  /** The network's NetworkType as stored ("ipvlan" when empty); "NetworkAttachmentDefinition" for NADs. */
  readonly networkType: string;
  readonly backend: BackendPlan;
  /** Set when danm's IPAM reserves this interface's addresses (spec §4.6). */
  readonly ipam?: IpamNetwork;
  readonly ip?: string;
  readonly ip6?: string;
  /** The network's `mtu` option. */
  readonly mtu?: number;
  readonly routes: Readonly<Record<string, string>>;
  readonly routes6: Readonly<Record<string, string>>;
  /** The network's rt_tables when non-zero: policy routes go there. */
  readonly rtTable?: number;
  readonly proutes: Readonly<Record<string, string>>;
  readonly proutes6: Readonly<Record<string, string>>;
  readonly device?: string;
  /** The pod's first interface (eth0): marked `default` in network-status. */
  readonly isDefault: boolean;
  /** The `name` of the interface's network-status entry. */
  readonly statusName: string;
  /** NPWG `cni-args`, handed to the delegate as `args.cni` (as Multus does). */
  readonly cniArgs?: Readonly<Record<string, unknown>>;
}

/** DANM's DetermineHostDeviceName: vx_<NetworkID>, <NetworkID>.<vlan> or host_device. */
export const parentDevice = (spec: NetworkSpec): string | undefined => parentOf(spec)?.name;

/** The plan of one resolved attachment of a pod in `podNamespace`. */
export function planAttachment(a: Attachment, podNamespace: string): AttachmentPlan {
  const base = {
    index: a.index,
    ifName: a.ifName,
    isDefault: a.index === 0,
    proutes: a.proutes,
    proutes6: a.proutes6,
    ...(a.device === undefined ? {} : { device: a.device }),
    ...(a.npwg?.["cni-args"] ? { cniArgs: a.npwg["cni-args"] } : {}),
  };
  if (!isDanmNetwork(a.network)) {
    const nad = a.network.object;
    const namespace = nad.metadata.namespace ?? podNamespace;
    const name = nad.metadata.name ?? "";
    const network: NetworkIdentity = {
      kind: "NetworkAttachmentDefinition",
      namespace,
      name,
      uid: nad.metadata.uid ?? "",
    };
    return {
      ...base,
      network,
      label: describeNetwork(network),
      networkType: "NetworkAttachmentDefinition",
      backend: nadPlan(nad.spec?.config),
      routes: {},
      routes6: {},
      statusName: `${namespace}/${name}`,
    };
  }
  const kind = a.network.kind;
  const object = a.network.object;
  const spec = object.spec;
  const name = object.metadata.name ?? "";
  const namespace = kind === "ClusterNetwork" ? undefined : (object.metadata.namespace ?? podNamespace);
  const network: NetworkIdentity = {
    kind,
    ...(namespace === undefined ? {} : { namespace }),
    name,
    uid: object.metadata.uid ?? "",
  };
  const backend = backendOf(spec);
  const options = spec.Options ?? {};
  const ipam: IpamNetwork | undefined = danmIpamReserves(spec, a.ip, a.ip6)
    ? {
      ref: { kind, ...(namespace === undefined ? {} : { namespace }), name, uid: network.uid },
      options,
    }
    : undefined;
  const rtTable = options.rt_tables ? options.rt_tables : undefined;
  return {
    ...base,
    network,
    label: describeNetwork(network),
    networkType: spec.NetworkType || "ipvlan",
    backend,
    ...(ipam ? { ipam } : {}),
    ...(a.ip === undefined ? {} : { ip: a.ip }),
    ...(a.ip6 === undefined ? {} : { ip6: a.ip6 }),
    ...(options.mtu === undefined ? {} : { mtu: options.mtu }),
    routes: options.routes ?? {},
    routes6: options.routes6 ?? {},
    ...(rtTable === undefined ? {} : { rtTable }),
    statusName: namespace === undefined ? name : `${namespace}/${name}`,
  };
}

/** True when the attachment asks danm's IPAM for at least one address (dynamic or static), not only "none". */
export const asksForAddress = (plan: Pick<AttachmentPlan, "ip" | "ip6">): boolean =>
  [plan.ip, plan.ip6].some((a) => a !== undefined && a !== "" && a !== "none");
