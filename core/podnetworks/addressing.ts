// Who gives an attachment its addresses (danm-spec §4.4, §4.6), shared by the CNI, which reserves them, and the
// webhook, which refuses at admission exactly the requests the CNI would fail.
//
// danm's IPAM reserves the addresses of ipvlan, macvlan and sriov attachments always. A static delegate (flannel,
// calico, bridge … configured by <NetworkID>.conf) keeps its own IPAM unless the pod asks danm for something that
// makes sense on the network: "none", or an address of a family the network has a cidr/net6 for. So `ip: dynamic`
// on a flannel network without a cidr is flannel's host-local giving the address, not an error. Once danm's IPAM
// takes over, it does so for both families (DANM: "it takes over for both IPv4, and IPv6").
import type { NetworkSpec } from "../api/danm.ts";
import { backendForType } from "../cni/backends/kinds.ts";

/** A NetworkType danm neither handles itself nor generates a delegate config for (core/cni/backends). */
export const isStaticDelegate = (spec: Pick<NetworkSpec, "NetworkType">): boolean =>
  !backendForType(spec.NetworkType).generated;

const realRequest = (v: string | undefined) => v !== undefined && v !== "" && v !== "none";

/** IsDanmIpamNeededForDelegation for static delegates, with net6 as the IPv6 side (danm's pool6 default). */
export function staticDelegateUsesDanmIpam(
  ip: string | undefined,
  ip6: string | undefined,
  options: NetworkSpec["Options"],
): boolean {
  return ip === "none" || ip6 === "none" || (realRequest(ip) && !!options?.cidr) ||
    (realRequest(ip6) && !!(options?.net6 || options?.allocation_pool_v6?.cidr));
}

/** True when danm's IPAM reserves the attachment's `ip`/`ip6`; false when the delegate's own IPAM addresses it. */
export const danmIpamReserves = (spec: NetworkSpec, ip: string | undefined, ip6: string | undefined): boolean =>
  !isStaticDelegate(spec) || staticDelegateUsesDanmIpam(ip, ip6, spec.Options);
