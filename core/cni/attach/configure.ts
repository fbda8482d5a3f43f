// What every built-in backend does to the interface it created in the pod, in the order the kernel needs it (the
// reference plugins' ipam.ConfigureIface): DANM's IPv6 sysctls first (an IPv6 address needs disable_ipv6=0, and
// autoconf/accept_ra must be off before the link is up), then the addresses (IPv6 without DAD), then up.
import { Effect } from "effect";
import type { NetnsHandle } from "../../ports/netlink.ts";
import { step, type StepError } from "../errors.ts";
import { interfaceSysctls } from "../postprocess.ts";
import { isV6 } from "../addresses.ts";

export const configureInterface = (
  pod: NetnsHandle,
  ifName: string,
  addresses: ReadonlyArray<string>,
  /** Set with `up` (a DPDK stand-in carries its VF's PCI address). */
  link: { readonly alias?: string } = {},
): Effect.Effect<void, StepError> =>
  Effect.gen(function* () {
    const v4 = addresses.filter((a) => !isV6(a)), v6 = addresses.filter(isV6);
    yield* interfaceSysctls(pod, ifName, v6.length > 0);
    for (const a of v4) yield* pod.addAddress({ link: ifName, cidr: a }).pipe(step(`add ${a} to ${ifName}`));
    for (const a of v6) {
      yield* pod.addAddress({ link: ifName, cidr: a, nodad: true }).pipe(step(`add ${a} to ${ifName}`));
    }
    yield* pod.setLink(ifName, { up: true, ...link }).pipe(step(`set ${ifName} up`));
  });
