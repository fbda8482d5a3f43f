// What every built-in backend does to the interface it created in the pod, in the order the kernel needs it (the
// reference plugins' ipam.ConfigureIface): DANM's IPv6 sysctls first (an IPv6 address needs disable_ipv6=0, and
// autoconf/accept_ra must be off before the link is up), then the addresses (IPv6 without DAD), then up.
import { Effect } from "effect";
import type { NetnsHandle } from "../../ports/netlink.ts";
import { step, type StepError } from "../errors.ts";
import { interfaceSysctls } from "../postprocess.ts";
import { isV6 } from "../addresses.ts";
import { formatIp, lastAddress, parseCidr } from "../../net/ip.ts";

/**
 * The subnet's broadcast address of an IPv4 address, as the Go netlink library sets it for the reference plugins
 * (`ip addr` shows `brd`; none for /31 and /32); undefined otherwise.
 */
export const broadcastOf = (cidr: string): string | undefined => {
  const parsed = parseCidr(cidr);
  if (!parsed || parsed.cidr.family !== 4 || parsed.cidr.prefix >= 31) return undefined;
  return formatIp({ family: 4, value: lastAddress(parsed.cidr) });
};

export const configureInterface = (
  pod: NetnsHandle,
  ifName: string,
  addresses: ReadonlyArray<string>,
  /** Set with `up` (a DPDK stand-in carries its VF's PCI address). */
  link: { readonly alias?: string } = {},
  /** IPv4 addresses with their subnet's broadcast address, as the reference plugins add them (MACVLAN). */
  addressing: { readonly broadcast?: boolean } = {},
): Effect.Effect<void, StepError> =>
  Effect.gen(function* () {
    const v4 = addresses.filter((a) => !isV6(a)), v6 = addresses.filter(isV6);
    yield* interfaceSysctls(pod, ifName, v6.length > 0);
    for (const a of v4) {
      const broadcast = addressing.broadcast ? broadcastOf(a) : undefined;
      yield* pod.addAddress({ link: ifName, cidr: a, ...(broadcast ? { broadcast } : {}) }).pipe(
        step(`add ${a} to ${ifName}`),
      );
    }
    for (const a of v6) {
      yield* pod.addAddress({ link: ifName, cidr: a, nodad: true }).pipe(step(`add ${a} to ${ifName}`));
    }
    yield* pod.setLink(ifName, { up: true, ...link }).pipe(step(`set ${ifName} up`));
  });
