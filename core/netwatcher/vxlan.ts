// VXLAN parameters that follow from the network and the underlay: DANM's multicast group, the encapsulation
// overhead, the UDP port.
import { type Family, formatIp } from "../net/ip.ts";

/** IANA's VXLAN port; DANM always used it (the kernel's default, 8472, predates the assignment). */
export const VxlanPort = 4789;

/**
 * Bytes VXLAN adds in front of the inner Ethernet frame's payload: outer IP (20 / 40) + UDP (8) + VXLAN (8) + inner
 * Ethernet (14) = 50 over an IPv4 underlay, 70 over IPv6 (danm-cni's pkg/mtu, spec Appendix A).
 */
export const vxlanOverhead = (family: Family): number => family === 4 ? 50 : 70;

/** DANM's group: 239.0.0.0/8 host #VNI, e.g. VNI 600 → 239.0.2.88 (a 24-bit VNI always fits the /8). */
export const multicastGroupV4 = (vni: number): string => formatIp({ family: 4, value: (239n << 24n) + BigInt(vni) });

/** DANM's IPv6 fallback: ff02::/16 host #VNI, e.g. VNI 600 → ff02::258. */
export const multicastGroupV6 = (vni: number): string =>
  formatIp({ family: 6, value: (0xff02n << 112n) + BigInt(vni) });

export const multicastGroup = (family: Family, vni: number): string =>
  family === 4 ? multicastGroupV4(vni) : multicastGroupV6(vni);
