// IPBlock: where danm's IPAM keeps reservations, instead of DANM's bitmask inside the network object.
//
// A network's address space is cut into aligned blocks (64 addresses by default); a block object exists
// only once something in it is reserved. Every reservation names its owner (pod UID, sandbox, interface),
// so it is usable by a retried ADD and reclaimable when the owner is gone. Writes are compare-and-swap on
// the block's resourceVersion; blocks are created with a deterministic name, so two creators cannot both win.
import { Schema } from "effect";
import { openApi } from "./crdgen.ts";
import { ObjectMeta } from "./meta.ts";
import type { ResourceType } from "../ports/kube.ts";

export const NetworkKind = Schema.Literals(["DanmNet", "TenantNetwork", "ClusterNetwork"]);
export type NetworkKind = typeof NetworkKind.Type;

export const NetworkRef = Schema.Struct({
  kind: NetworkKind,
  namespace: Schema.optionalKey(Schema.String),
  name: Schema.String,
  uid: Schema.String,
});
export type NetworkRef = typeof NetworkRef.Type;

export const Reservation = Schema.Struct({
  /** "<namespace>/<pod name>" */
  pod: Schema.String,
  podUid: Schema.String,
  /** CNI_CONTAINERID of the sandbox the address was reserved for. */
  sandbox: Schema.String,
  /** Interface name inside the pod. */
  iface: Schema.String,
  node: Schema.String,
  /** True when the pod asked for this exact address. */
  static: Schema.optionalKey(Schema.Boolean),
  /** RFC 3339 time of reservation; the reclaimer leaves very young reservations alone. */
  since: Schema.String,
});
export type Reservation = typeof Reservation.Type;

export const IPBlockSpec = Schema.Struct({
  network: NetworkRef,
  family: Schema.Literals(["IPv4", "IPv6"]),
  /** The block's own address range, e.g. "10.0.0.64/26". */
  cidr: Schema.String,
  /** Node whose allocator opened the block; others use it only when the pool has no other room. */
  node: Schema.optionalKey(Schema.String),
  /**
   * Offset inside the block (decimal string) → owner. An atomic map: the apiserver's field manager then
   * tracks it as one field instead of one per reservation member, which made writes of a full block ~20×
   * slower.
   */
  reservations: Schema.Record(Schema.String, Reservation).annotate(openApi({ "x-kubernetes-map-type": "atomic" })),
});
export type IPBlockSpec = typeof IPBlockSpec.Type;

export const IPBlock = Schema.Struct({
  apiVersion: Schema.optionalKey(Schema.String),
  kind: Schema.optionalKey(Schema.String),
  metadata: ObjectMeta,
  spec: IPBlockSpec,
});
export type IPBlock = typeof IPBlock.Type;

export const ipBlockResource: ResourceType<IPBlock, typeof IPBlock.Encoded> = {
  group: "danm.io",
  version: "v1",
  kind: "IPBlock",
  plural: "ipblocks",
  namespaced: false,
  schema: IPBlock,
};

export const labels = {
  networkUid: "danm.io/network-uid",
  networkKind: "danm.io/network-kind",
  networkName: "danm.io/network-name",
  networkNamespace: "danm.io/network-namespace",
  family: "danm.io/family",
} as const;
