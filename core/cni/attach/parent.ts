// The host interface an ipvlan or macvlan attachment hangs off (DANM's DetermineHostDeviceName: vx_<NetworkID>,
// <NetworkID>.<vlan> or host_device), checked to be this network's before a pod goes on it.
//
// The name alone does not say whose it is: two networks with the same NetworkID but another VNI, VLAN or
// host_device name the same vx_<NetworkID> / <NetworkID>.<vlan>, and netwatcher creates it only for the older one.
// DANM put the younger network's pods on the older network's segment (danm-spec §5.6, a tenant-isolation hole); the
// webhook refuses such a network, and here ADD refuses to attach to an interface whose VNI, VLAN ID or underlay is
// not the network's.
import { Effect } from "effect";
import type { NetworkSpec } from "../../api/danm.ts";
import type { Link, LinkSpec, NetnsHandle, NetnsRef } from "../../ports/netlink.ts";
import { step, StepError } from "../errors.ts";

/** What the host interface must be: the network's VLAN or VXLAN on its host_device. */
export type ParentIdentity =
  | { readonly kind: "vlan"; readonly id: number; readonly device?: string }
  | { readonly kind: "vxlan"; readonly vni: number; readonly device?: string };

export interface ParentDevice {
  readonly name: string;
  /** Absent when the parent is host_device itself. */
  readonly identity?: ParentIdentity;
}

/** DANM's DetermineHostDeviceName, with what the interface of that name must carry. */
export function parentOf(spec: NetworkSpec): ParentDevice | undefined {
  const options = spec.Options ?? {};
  const id = spec.NetworkID ?? "";
  const device = options.host_device || undefined;
  const on = device === undefined ? {} : { device };
  if (options.vxlan) return { name: `vx_${id}`, identity: { kind: "vxlan", vni: options.vxlan, ...on } };
  if (options.vlan) return { name: `${id}.${options.vlan}`, identity: { kind: "vlan", id: options.vlan, ...on } };
  return device === undefined ? undefined : { name: device };
}

const describeLink = (l: Link, underlay: string | undefined) =>
  l.kind === "vxlan"
    ? `VXLAN ${l.vxlan?.vni ?? "?"}${underlay ? ` on ${underlay}` : ""}`
    : l.kind === "vlan"
    ? `VLAN ${l.vlan?.id ?? "?"}${underlay ? ` on ${underlay}` : ""}`
    : `a ${l.kind} link`;

const describeIdentity = (i: ParentIdentity) =>
  `${i.kind === "vxlan" ? `VXLAN ${i.vni}` : `VLAN ${i.id}`}${i.device ? ` on ${i.device}` : ""}`;

/** The parent link, refused when it is not the network's (another network with the same NetworkID made it). */
export const findParent = (host: NetnsHandle, parent: ParentDevice): Effect.Effect<Link, StepError> =>
  Effect.gen(function* () {
    const link = yield* host.link(parent.name).pipe(
      Effect.catchTag("NetlinkNotFound", () =>
        Effect.fail(
          new StepError({
            operation: `find host device ${parent.name}`,
            reason: "it does not exist on this node (netwatcher creates VLAN and VXLAN host interfaces)",
          }),
        )),
      step(`find host device ${parent.name}`),
    );
    const want = parent.identity;
    if (want === undefined) return link;
    const underlayIndex = link.kind === "vxlan" ? link.vxlan?.dev : link.parent;
    const underlay = underlayIndex === undefined ? undefined : yield* host.link(underlayIndex).pipe(
      Effect.map((l) => l.name),
      Effect.orElseSucceed(() => `ifindex ${underlayIndex}`),
    );
    const matches = want.kind === "vxlan"
      ? link.kind === "vxlan" && link.vxlan?.vni === want.vni
      : link.kind === "vlan" && link.vlan?.id === want.id;
    if (!matches || (want.device !== undefined && underlay !== undefined && underlay !== want.device)) {
      return yield* new StepError({
        operation: `check host interface ${parent.name}`,
        reason: `it is ${describeLink(link, underlay)}, this network needs ${describeIdentity(want)}: another ` +
          "network with the same NetworkID owns it, and its segment is not this network's",
      });
    }
    return link;
  });

/** What an ipvlan or macvlan link adds to its parent and place: its kind, mode and (macvlan) MAC. */
export type SubLinkKind =
  | Pick<Extract<LinkSpec, { kind: "ipvlan" }>, "kind" | "mode">
  | Pick<Extract<LinkSpec, { kind: "macvlan" }>, "kind" | "mode" | "mac">;

export interface SubLinkPlace {
  readonly host: NetnsHandle;
  readonly podRef: NetnsRef;
  readonly ifName: string;
  /** The parent host interface (vx_<id>, <id>.<vlan> or host_device), checked to be the network's. */
  readonly parent: ParentDevice | undefined;
  /** The network's `mtu`; absent = the parent's. */
  readonly mtu: number | undefined;
}

/**
 * Creates an ipvlan or macvlan link on the network's parent directly inside the pod namespace under its final name
 * (no move: a move costs the kernel ~30 ms), with the network's MTU when it differs from the parent's.
 */
export const createOnParent = (place: SubLinkPlace, link: SubLinkKind): Effect.Effect<void, StepError> =>
  Effect.gen(function* () {
    if (!place.parent) {
      return yield* new StepError({
        operation: `choose the ${link.kind} parent`,
        reason: "the network has neither host_device, vlan nor vxlan",
      });
    }
    const parent = yield* findParent(place.host, place.parent);
    yield* place.host.createLink({
      ...link,
      name: place.ifName,
      parent: parent.index,
      netns: place.podRef,
      ...(place.mtu !== undefined && place.mtu !== parent.mtu ? { mtu: place.mtu } : {}),
    }).pipe(step(`create ${link.kind} ${place.ifName} on ${place.parent.name}`));
  });
