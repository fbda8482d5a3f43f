// An attachment's addresses as the CNI handles them ("10.0.0.5/24", "2001:db8::5/64"), and the fakeipam section that
// carries them to a delegate (spec §4.6). A leaf: the backends use it, and plan.ts (which imports the backend table)
// must not be on their import path.
import { formatCidr, parseCidr } from "../net/ip.ts";

/** An address with its network's prefix ("10.0.0.5/24") → the policy rule source ("10.0.0.0/24"). */
export function ruleSource(address: string): string | undefined {
  const parsed = parseCidr(address);
  return parsed ? formatCidr(parsed.cidr) : undefined;
}

/** "10.0.0.5/24" → "10.0.0.5". */
export const plainIp = (address: string): string => address.split("/")[0];

export const isV6 = (address: string): boolean => address.includes(":");

/** A fakeipam section whose addresses the daemon gives once the reservation behind `ticket` is made. */
export const ticketFakeIpamSection = (ticket: string): Record<string, unknown> => ({ type: "fakeipam", ticket });

/** The fakeipam section carrying danm's addresses to a delegate (spec §4.6). */
export function fakeIpamSection(addresses: ReadonlyArray<string>): Record<string, unknown> {
  return {
    type: "fakeipam",
    ips: addresses.map((a) => ({ ipcidr: a, version: isV6(a) ? 6 : 4 })),
  };
}
