// The danm API kinds — DanmNet, TenantNetwork, ClusterNetwork, TenantConfig, DanmEp — with DANM's exact JSON field
// names (danm-spec §2), and the ResourceTypes naming them for the Kube port.
//
// What the schemas enforce is what a CRD can: structure, DANM's v4.3.0 CRD formats and ranges (vlan 1–4094,
// rt_tables 0–255, IP/CIDR-or-"" strings) plus ours (vxlan 1–16777215, mtu 68–65535). Semantic rules (CIDR size,
// pools inside the CIDR, vlan XOR vxlan, NetworkID length, TenantConfig vniType/vniRange, AllowedTenants only on
// ClusterNetwork …) are the webhook's (spec §7), so that users get DANM's messages for them.
//
// Two decoding modes:
//   lenient  reading stored objects: unknown fields are dropped (objects written by other DANM versions keep
//            working); this is what the ResourceTypes use.
//   strict   validating user input (webhook, danmctl): any unknown field is refused, like DANM's
//            DisallowUnknownFields. Legacy v3 fields (`spec.Validation`, `spec.Options.dpdk`) fail with a hint.
//            `metadata` stays lenient in both modes: it belongs to the apiserver (managedFields …).
import { Effect, Schema, SchemaIssue, SchemaParser } from "effect";
import type { ResourceType } from "../ports/kube.ts";
import { openApi } from "./crdgen.ts";
import {
  EmptyOrIPv4Address,
  EmptyOrIPv4Cidr,
  EmptyOrIPv6Address,
  EmptyOrIPv6Cidr,
  type Problem,
  problemsOf,
  renderProblems,
} from "./formats.ts";
import { ObjectMeta } from "./meta.ts";

export const DanmGroup = "danm.io";
/** The group of DANM ≤ v4.3.0; still read for migrations. */
export const LegacyDanmGroup = "danm.k8s.io";
export const DanmVersion = "v1";

export const NetworkKinds = ["DanmNet", "TenantNetwork", "ClusterNetwork"] as const;
export type NetworkKind = typeof NetworkKinds[number];
export const DanmKinds = [...NetworkKinds, "TenantConfig", "DanmEp"] as const;
export type DanmKind = typeof DanmKinds[number];

const ApiVersion = Schema.Literals([`${DanmGroup}/${DanmVersion}`, `${LegacyDanmGroup}/${DanmVersion}`]);

const int = (minimum: number, maximum: number, description: string) =>
  Schema.Int.check(Schema.isBetween({ minimum, maximum })).annotate({ description });

export const VlanId = int(
  1,
  4094,
  "VLAN ID of the host interface <NetworkID>.<vlan> netwatcher creates on host_device",
);
/** Upstream's CRD stopped at 16777214; 16777215 is a valid 24-bit VNI, so we allow it. */
export const VxlanId = int(1, 16777215, "VXLAN VNI of the host interface vx_<NetworkID>");
export const RoutingTable = int(0, 255, "routing table receiving the policy routes (proutes) of the network");
/** 68 is IPv4's minimum MTU (IPv6 needs 1280, a webhook rule); 65535 the largest IP packet. */
export const Mtu = int(68, 65535, "MTU of the host and container interfaces");

/** destination CIDR → gateway IP */
export const Routes = Schema.Record(Schema.String, Schema.String);

export const IPv4Pool = Schema.Struct({
  start: Schema.optionalKey(EmptyOrIPv4Address),
  end: Schema.optionalKey(EmptyOrIPv4Address),
  lastIp: Schema.optionalKey(EmptyOrIPv4Cidr.annotate({ description: "last dynamically allocated IP, as a CIDR" })),
}).annotate({ description: "subset of cidr from which IPs are allocated dynamically" });

export const IPv6Pool = Schema.Struct({
  cidr: Schema.optionalKey(EmptyOrIPv6Cidr.annotate({ description: "the part of net6 the allocator tracks" })),
  start: Schema.optionalKey(EmptyOrIPv6Address),
  end: Schema.optionalKey(EmptyOrIPv6Address),
  lastIp: Schema.optionalKey(EmptyOrIPv6Cidr),
}).annotate({ description: "subset of net6 from which IPv6 addresses are allocated dynamically" });

export const NetworkOptions = Schema.Struct({
  host_device: Schema.optionalKey(Schema.String.annotate({ description: "parent host NIC" })),
  device_pool: Schema.optionalKey(
    Schema.String.annotate({ description: "device-plugin resource name, e.g. nokia.k8s.io/sriov_ens1f0" }),
  ),
  vlan: Schema.optionalKey(VlanId),
  vxlan: Schema.optionalKey(VxlanId),
  container_prefix: Schema.optionalKey(Schema.String.annotate({ description: "in-pod interface name prefix" })),
  cidr: Schema.optionalKey(EmptyOrIPv4Cidr.annotate({ description: "IPv4 subnet of the network" })),
  allocation_pool: Schema.optionalKey(IPv4Pool),
  net6: Schema.optionalKey(EmptyOrIPv6Cidr.annotate({ description: "IPv6 subnet of the network" })),
  allocation_pool_v6: Schema.optionalKey(IPv6Pool),
  routes: Schema.optionalKey(Routes.annotate({ description: "IPv4 routes (destination CIDR: gateway)" })),
  routes6: Schema.optionalKey(Routes.annotate({ description: "IPv6 routes (destination CIDR: gateway)" })),
  rt_tables: Schema.optionalKey(RoutingTable),
  mtu: Schema.optionalKey(Mtu),
  alloc: Schema.optionalKey(Schema.String.annotate({ description: "IPv4 allocation bitmask (base64), IPAM-owned" })),
  alloc6: Schema.optionalKey(Schema.String.annotate({ description: "IPv6 allocation bitmask (base64), IPAM-owned" })),
});
export type NetworkOptions = typeof NetworkOptions.Type;

/** Shared by the three network kinds (upstream: one Go type). */
export const NetworkSpec = Schema.Struct({
  NetworkID: Schema.optionalKey(
    Schema.String.annotate({ description: "second identifier: static CNI config name, host interface names" }),
  ),
  NetworkType: Schema.optionalKey(
    Schema.String.annotate({ description: "backend: ipvlan (default), macvlan, sriov or a static delegate" }),
  ),
  AllowedTenants: Schema.optionalKey(
    Schema.Array(Schema.String).annotate({ description: "namespaces allowed to attach (ClusterNetwork only)" }),
  ),
  Options: Schema.optionalKey(NetworkOptions),
});
export type NetworkSpec = typeof NetworkSpec.Type;

/** The condition netwatcher maintains; its message reads "N/M nodes". */
export const HostInterfacesReady = "HostInterfacesReady";

export function hostInterfacesMessage(ready: number, total: number): string {
  return `${ready}/${total} nodes`;
}

/** metav1.Condition, with what the CRD needs to know about it (format, list-map key). */
export const NetworkCondition = Schema.Struct({
  type: Schema.String,
  status: Schema.Literals(["True", "False", "Unknown"]),
  observedGeneration: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  lastTransitionTime: Schema.String.annotate(openApi({ format: "date-time" })),
  reason: Schema.String,
  message: Schema.String,
});
export type NetworkCondition = typeof NetworkCondition.Type;

/** One node's view of the network's host interfaces, written by that node's netwatcher. */
export const HostInterfacesRecord = Schema.Struct({
  node: Schema.String,
  ready: Schema.Boolean,
  interfaces: Schema.optionalKey(
    Schema.Array(Schema.String).annotate({ description: "host interfaces the network needs on this node" }),
  ),
  message: Schema.optionalKey(Schema.String.annotate({ description: "why the node is not ready, or a summary" })),
});
export type HostInterfacesRecord = typeof HostInterfacesRecord.Type;

/** Ours (DANM networks had no status): what the controllers observed of the network. */
export const NetworkStatus = Schema.Struct({
  observedGeneration: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  conditions: Schema.optionalKey(
    Schema.Array(NetworkCondition).annotate(
      openApi({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] }),
    ),
  ),
  hostInterfaces: Schema.optionalKey(
    Schema.Array(HostInterfacesRecord).annotate({
      description: "per-node host interface state, one record per node (netwatcher)",
      ...openApi({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["node"] }),
    }),
  ),
});
export type NetworkStatus = typeof NetworkStatus.Type;

export const IfaceProfile = Schema.Struct({
  name: Schema.String.annotate({ description: "host NIC name, or a device pool (contains '/')" }),
  vniType: Schema.optionalKey(Schema.String.annotate({ description: "vlan or vxlan" })),
  vniRange: Schema.optionalKey(
    Schema.String.annotate({ description: "VNIs in cpuset list form, e.g. 2000-2500,2601" }),
  ),
  alloc: Schema.optionalKey(Schema.String.annotate({ description: "VNI allocation bitmask (base64), webhook-owned" })),
});
export type IfaceProfile = typeof IfaceProfile.Type;

/** What tenants may do with a ClusterNetwork (danm-spec Appendix A): today only `reservedIp`. */
export const AllowedClusterNetwork = Schema.Struct({
  name: Schema.String.annotate({ description: "a ClusterNetwork" }),
  privileges: Schema.optionalKey(
    Schema.Array(Schema.String).annotate({ description: "reservedIp: ReservedIPs may be made on it" }),
  ),
});
export type AllowedClusterNetwork = typeof AllowedClusterNetwork.Type;

export const DanmEpInterface = Schema.Struct({
  Name: Schema.String,
  Address: Schema.optionalKey(Schema.String.annotate({ description: 'IPv4 with prefix, "none" or ""' })),
  AddressIPv6: Schema.optionalKey(Schema.String.annotate({ description: 'IPv6 with prefix, "none" or ""' })),
  MacAddress: Schema.optionalKey(Schema.String),
  // DANM's Go type has no omitempty here, so objects it wrote carry null.
  proutes: Schema.optionalKey(Schema.NullOr(Routes)),
  proutes6: Schema.optionalKey(Schema.NullOr(Routes)),
  DeviceID: Schema.optionalKey(Schema.String.annotate({ description: "PCI address of the allocated device" })),
  Mtu: Schema.optionalKey(Mtu),
});
export type DanmEpInterface = typeof DanmEpInterface.Type;

export const DanmEpSpec = Schema.Struct({
  NetworkName: Schema.String,
  NetworkType: Schema.optionalKey(Schema.String),
  EndpointID: Schema.String,
  Interface: DanmEpInterface,
  Host: Schema.optionalKey(Schema.String),
  Pod: Schema.String,
  PodUID: Schema.optionalKey(Schema.String),
  CID: Schema.optionalKey(Schema.String.annotate({ description: "sandbox (infra container) ID" })),
  netns: Schema.optionalKey(Schema.String),
  // "" on DanmEps written before the kinds existed; it means DanmNet.
  apiType: Schema.optionalKey(Schema.Literals([...NetworkKinds, ""])),
});
export type DanmEpSpec = typeof DanmEpSpec.Type;

/**
 * DanmEp labels under this prefix are the CNI's own bookkeeping (node, sandbox, pod UID); every other label is a
 * copy of the pod's labels, which svcwatcher keeps in step with the pod.
 */
export const DanmEpSystemLabelPrefix = "cni.danm.io/";

/**
 * ObjectMeta decoded leniently even inside a strict decode: the apiserver adds fields danm does not model
 * (managedFields, selfLink …) and those are no user error.
 */
const OpenObjectMeta = Schema.declareConstructor<typeof ObjectMeta.Type, typeof ObjectMeta.Encoded>()(
  [ObjectMeta],
  ([meta]) => (input, _ast, options) =>
    SchemaParser.decodeUnknownEffect(meta)(input, { ...options, onExcessProperty: "ignore" }),
  openApi({ type: "object" }),
);

type Meta = typeof ObjectMeta | typeof OpenObjectMeta;

const networkObject = <K extends NetworkKind, M extends Meta>(kind: K, metadata: M) =>
  Schema.Struct({
    apiVersion: Schema.optionalKey(ApiVersion),
    kind: Schema.optionalKey(Schema.Literal(kind)),
    metadata,
    spec: NetworkSpec,
    status: Schema.optionalKey(NetworkStatus),
  });

const tenantConfigObject = <M extends Meta>(metadata: M) =>
  Schema.Struct({
    apiVersion: Schema.optionalKey(ApiVersion),
    kind: Schema.optionalKey(Schema.Literal("TenantConfig")),
    metadata,
    hostDevices: Schema.optionalKey(Schema.Array(IfaceProfile)),
    networkIds: Schema.optionalKey(
      Schema.Record(Schema.String, Schema.String).annotate({
        description: "NetworkType → NetworkID overrides for TenantNetworks",
      }),
    ),
    allowedClusterNetworks: Schema.optionalKey(Schema.Array(AllowedClusterNetwork)),
  });

const danmEpObject = <M extends Meta>(metadata: M) =>
  Schema.Struct({
    apiVersion: Schema.optionalKey(ApiVersion),
    kind: Schema.optionalKey(Schema.Literal("DanmEp")),
    metadata,
    spec: DanmEpSpec,
  });

export const DanmNet = networkObject("DanmNet", ObjectMeta);
export type DanmNet = typeof DanmNet.Type;
export const TenantNetwork = networkObject("TenantNetwork", ObjectMeta);
export type TenantNetwork = typeof TenantNetwork.Type;
export const ClusterNetwork = networkObject("ClusterNetwork", ObjectMeta);
export type ClusterNetwork = typeof ClusterNetwork.Type;
export const TenantConfig = tenantConfigObject(ObjectMeta);
export type TenantConfig = typeof TenantConfig.Type;
export const DanmEp = danmEpObject(ObjectMeta);
export type DanmEp = typeof DanmEp.Type;

export type Network = DanmNet | TenantNetwork | ClusterNetwork;

/** The Type of each kind, for generic code. */
export interface DanmObjects {
  readonly DanmNet: DanmNet;
  readonly TenantNetwork: TenantNetwork;
  readonly ClusterNetwork: ClusterNetwork;
  readonly TenantConfig: TenantConfig;
  readonly DanmEp: DanmEp;
}
export type DanmObject = DanmObjects[DanmKind];

// Same shapes with an open metadata, for strict decoding (the parse option makes the rest strict).
const strictCodecs = {
  DanmNet: networkObject("DanmNet", OpenObjectMeta),
  TenantNetwork: networkObject("TenantNetwork", OpenObjectMeta),
  ClusterNetwork: networkObject("ClusterNetwork", OpenObjectMeta),
  TenantConfig: tenantConfigObject(OpenObjectMeta),
  DanmEp: danmEpObject(OpenObjectMeta),
};
const lenientCodecs = { DanmNet, TenantNetwork, ClusterNetwork, TenantConfig, DanmEp };

export type DecodeMode = "strict" | "lenient";

export class DanmObjectError extends Schema.TaggedError<DanmObjectError>()("DanmObjectError", {
  kind: Schema.String,
  name: Schema.optionalKey(Schema.String),
  mode: Schema.Literals(["strict", "lenient"]),
  problems: Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String })),
}) {
  override get message(): string {
    const what = this.name ? `${this.kind} "${this.name}"` : this.kind;
    return `decoding ${what} (${this.mode}): ${renderProblems(this.problems)}`;
  }
}

/** Fields of DANM v3 that v4 refused on CREATE (spec §2.2); named so the fix is obvious. */
const legacyFields: Record<string, string> = {
  "spec.Validation": "DANM v3 field, no longer supported: remove it (validation state is not part of the spec)",
  "spec.Options.dpdk": "DANM v3 field, no longer supported: remove it (DPDK is detected from the device driver)",
};

function nameOf(input: unknown): string | undefined {
  if (typeof input !== "object" || input === null) return undefined;
  const meta = (input as { metadata?: unknown }).metadata;
  if (typeof meta !== "object" || meta === null) return undefined;
  const name = (meta as { name?: unknown }).name;
  return typeof name === "string" ? name : undefined;
}

function toError(kind: string, mode: DecodeMode, input: unknown, issue: SchemaIssue.Issue): DanmObjectError {
  const problems: Problem[] = problemsOf(issue).map((p) =>
    // Own keys only: a field named like an Object.prototype member ("toString") is just an unknown field.
    p.message === "unknown field" && Object.hasOwn(legacyFields, p.path)
      ? { path: p.path, message: legacyFields[p.path] }
      : p
  );
  const name = nameOf(input);
  return new DanmObjectError({ kind, mode, problems, ...(name === undefined ? {} : { name }) });
}

/** Decodes one object of a known kind; every problem is reported, not only the first. */
export function decodeDanmObject<K extends DanmKind>(
  kind: K,
  input: unknown,
  mode: DecodeMode = "lenient",
): Effect.Effect<DanmObjects[K], DanmObjectError> {
  const codec = (mode === "strict" ? strictCodecs : lenientCodecs)[kind] as unknown as Schema.Codec<DanmObjects[K]>;
  return SchemaParser.decodeUnknownEffect(codec)(input, {
    errors: "all",
    onExcessProperty: mode === "strict" ? "error" : "ignore",
    reportInput: true,
  }).pipe(Effect.mapError((issue) => toError(kind, mode, input, issue)));
}

/** Decodes an object of whichever danm kind its `kind` field names (the webhook receives all of them). */
export function decodeAnyDanmObject(
  input: unknown,
  mode: DecodeMode = "lenient",
): Effect.Effect<DanmObject, DanmObjectError> {
  const kind = typeof input === "object" && input !== null ? (input as { kind?: unknown }).kind : undefined;
  if (typeof kind === "string" && (DanmKinds as ReadonlyArray<string>).includes(kind)) {
    return decodeDanmObject(kind as DanmKind, input, mode);
  }
  const name = nameOf(input);
  return Effect.fail(
    new DanmObjectError({
      kind: typeof kind === "string" ? kind : "<no kind>",
      mode,
      problems: [{ path: "kind", message: `not a danm kind (expected one of ${DanmKinds.join(", ")})` }],
      ...(name === undefined ? {} : { name }),
    }),
  );
}

export function isNetworkKind(kind: string): kind is NetworkKind {
  return (NetworkKinds as ReadonlyArray<string>).includes(kind);
}

// ---- ResourceTypes ----------------------------------------------------------------------------------------------

const resource = <A, I>(
  kind: string,
  plural: string,
  namespaced: boolean,
  schema: Schema.Codec<A, I>,
): { readonly current: ResourceType<A, I>; readonly legacy: ResourceType<A, I> } => ({
  current: { group: DanmGroup, version: DanmVersion, kind, plural, namespaced, schema },
  legacy: { group: LegacyDanmGroup, version: DanmVersion, kind, plural, namespaced, schema },
});

const danmNets = resource("DanmNet", "danmnets", true, DanmNet);
const tenantNetworks = resource("TenantNetwork", "tenantnetworks", true, TenantNetwork);
const clusterNetworks = resource("ClusterNetwork", "clusternetworks", false, ClusterNetwork);
const tenantConfigs = resource("TenantConfig", "tenantconfigs", false, TenantConfig);
const danmEps = resource("DanmEp", "danmeps", true, DanmEp);

export const DanmNetResource = danmNets.current;
export const TenantNetworkResource = tenantNetworks.current;
export const ClusterNetworkResource = clusterNetworks.current;
export const TenantConfigResource = tenantConfigs.current;
export const DanmEpResource = danmEps.current;

/** `danm.k8s.io` (DANM ≤ v4.3.0): read when migrating an existing installation; never written. */
export const LegacyDanmNetResource = danmNets.legacy;
export const LegacyTenantNetworkResource = tenantNetworks.legacy;
export const LegacyClusterNetworkResource = clusterNetworks.legacy;
export const LegacyTenantConfigResource = tenantConfigs.legacy;
export const LegacyDanmEpResource = danmEps.legacy;

/** The ResourceType of each network kind, for code that is handed a kind name. */
export const networkResources: { readonly [K in NetworkKind]: ResourceType<DanmObjects[K]> } = {
  DanmNet: DanmNetResource,
  TenantNetwork: TenantNetworkResource,
  ClusterNetwork: ClusterNetworkResource,
};
