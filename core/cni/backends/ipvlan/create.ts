// The built-in IPVLAN backend (danm-spec §4.7): an L2 ipvlan on the network's parent, created directly inside the
// pod namespace under its final name (DANM created it on the host under a temporary name, moved and renamed it:
// a move costs the kernel ~30 ms), MTU from the network or the parent, IPv4 and IPv6 (without DAD) addresses,
// DANM's IPv6 sysctls, and a gratuitous ARP for the IPv4 address.
import { Effect } from "effect";
import type { NetnsHandle, NetnsRef } from "../../../ports/netlink.ts";
import { step, StepError } from "../../errors.ts";
import { isV6 } from "../../addresses.ts";
import { configureInterface } from "../../attach/configure.ts";
import { findParent, type ParentDevice } from "../../attach/parent.ts";

export interface IpvlanInput {
  readonly host: NetnsHandle;
  readonly pod: NetnsHandle;
  readonly podRef: NetnsRef;
  readonly ifName: string;
  /** The parent host interface (vx_<id>, <id>.<vlan> or host_device), checked to be the network's. */
  readonly parent: ParentDevice | undefined;
  /** The network's `mtu`; absent = the parent's. */
  readonly mtu: number | undefined;
  /** Addresses with the network prefix. */
  readonly addresses: ReadonlyArray<string>;
}

export interface IpvlanOutcome {
  readonly mac: string | undefined;
  readonly mtu: number;
}

export const createIpvlan = (i: IpvlanInput): Effect.Effect<IpvlanOutcome, StepError> =>
  Effect.gen(function* () {
    if (!i.parent) {
      return yield* new StepError({
        operation: "choose the ipvlan parent",
        reason: "the network has neither host_device, vlan nor vxlan",
      });
    }
    const parent = yield* findParent(i.host, i.parent);
    yield* i.host.createLink({
      kind: "ipvlan",
      name: i.ifName,
      parent: parent.index,
      mode: "l2",
      netns: i.podRef,
      ...(i.mtu !== undefined && i.mtu !== parent.mtu ? { mtu: i.mtu } : {}),
    }).pipe(step(`create ipvlan ${i.ifName} on ${i.parent.name}`));
    yield* configureInterface(i.pod, i.ifName, i.addresses);
    for (const a of i.addresses.filter((a) => !isV6(a))) {
      // Neighbours learn the new address at once; a lost announcement is harmless (DANM ignores errors too).
      yield* i.pod.gratuitousArp(i.ifName, a.split("/")[0]).pipe(
        Effect.catch((e) => Effect.logDebug(`gratuitous ARP for ${a} on ${i.ifName}: ${e.message}`)),
      );
    }
    const link = yield* i.pod.link(i.ifName).pipe(step(`read ${i.ifName}`));
    return { mac: link.mac, mtu: link.mtu };
  });
