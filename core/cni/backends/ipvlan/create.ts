// The built-in IPVLAN backend (danm-spec §4.7): an L2 ipvlan on the network's parent, created directly inside the
// pod namespace under its final name (DANM created it on the host under a temporary name, moved and renamed it:
// a move costs the kernel ~30 ms), MTU from the network or the parent, IPv4 and IPv6 (without DAD) addresses,
// DANM's IPv6 sysctls, and a gratuitous ARP for the IPv4 address.
import { Effect } from "effect";
import type { NetnsHandle } from "../../../ports/netlink.ts";
import { step, type StepError } from "../../errors.ts";
import { isV6 } from "../../addresses.ts";
import { configureInterface } from "../../attach/configure.ts";
import { createOnParent, type SubLinkPlace } from "../../attach/parent.ts";

export interface IpvlanInput extends SubLinkPlace {
  readonly pod: NetnsHandle;
  /** Addresses with the network prefix. */
  readonly addresses: ReadonlyArray<string>;
}

export interface IpvlanOutcome {
  readonly mac: string | undefined;
  readonly mtu: number;
}

export const createIpvlan = (i: IpvlanInput): Effect.Effect<IpvlanOutcome, StepError> =>
  Effect.gen(function* () {
    yield* createOnParent(i, { kind: "ipvlan", mode: "l2" });
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
