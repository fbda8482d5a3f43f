// ReservedIP (danm-spec Appendix A, from the danm-cni continuation of DANM): addresses of a network set aside for
// the pods that ask for them by name — dynamic allocation never hands them out, a pod's static `ip`/`ip6` may
// take them. At most one IPv4 and one IPv6 per object. A reservation on a ClusterNetwork needs the `reservedIp`
// privilege for that network in the TenantConfig's `allowedClusterNetworks` (tenants cannot fence off addresses of
// an administrator's network otherwise).
//
// `shareable` (several pods on one address, for load balancers and live migration) is part of the upstream API;
// danm's IPAM keeps one owner per address, so the webhook refuses `shareable: true` until it can honour it.
import { Schema } from "effect";
import type { ResourceType } from "../ports/kube.ts";
import { DanmGroup, DanmVersion, type NetworkKind, NetworkKinds } from "./danm.ts";
import { IPAddress } from "./formats.ts";
import { ObjectMeta } from "./meta.ts";

/** The privilege `allowedClusterNetworks` grants for ReservedIPs on a ClusterNetwork. */
export const ReservedIpPrivilege = "reservedIp";

export const ReservedIpSpec = Schema.Struct({
  network: Schema.Struct({
    name: Schema.String.annotate({ description: "the network the addresses belong to" }),
    type: Schema.optionalKey(
      Schema.Literals(NetworkKinds).annotate({
        description: "its kind: TenantNetwork (the default), ClusterNetwork, or DanmNet (danm's addition)",
      }),
    ),
  }),
  ips: Schema.Array(
    Schema.Struct({
      address: IPAddress.annotate({ description: "an address inside the network's cidr or net6" }),
      shareable: Schema.optionalKey(
        Schema.Boolean.annotate({ description: "several pods may use the address (not supported by danm yet)" }),
      ),
    }),
  ).check(Schema.isMinLength(1), Schema.isMaxLength(2)).annotate({
    description: "at most one IPv4 and one IPv6 address",
  }),
  description: Schema.optionalKey(Schema.String),
});
export type ReservedIpSpec = typeof ReservedIpSpec.Type;

export const ReservedIP = Schema.Struct({
  apiVersion: Schema.optionalKey(Schema.String),
  kind: Schema.optionalKey(Schema.String),
  metadata: ObjectMeta,
  spec: ReservedIpSpec,
});
export type ReservedIP = typeof ReservedIP.Type;

export const reservedIpResource: ResourceType<ReservedIP, typeof ReservedIP.Encoded> = {
  group: DanmGroup,
  version: DanmVersion,
  kind: "ReservedIP",
  plural: "reservedips",
  namespaced: true,
  schema: ReservedIP,
};

/** The network a ReservedIP names; namespaced kinds live in the ReservedIP's own namespace. */
export function reservedIpNetwork(r: ReservedIP): { kind: NetworkKind; namespace?: string; name: string } {
  const kind = r.spec.network.type ?? "TenantNetwork";
  return {
    kind,
    ...(kind === "ClusterNetwork" ? {} : { namespace: r.metadata.namespace ?? "" }),
    name: r.spec.network.name,
  };
}
