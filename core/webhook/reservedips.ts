// ReservedIP admission (danm-spec Appendix A): CREATE and UPDATE checked against the network and the TenantConfig,
// DELETE refused while a pod holds one of the addresses.
//
// Rules (each a Problem naming the field):
//   the network exists (TenantNetwork and DanmNet in the ReservedIP's namespace); a ClusterNetwork needs the
//   `reservedIp` privilege for it in the TenantConfig's allowedClusterNetworks; at most one address per family;
//   every address inside the network's cidr (IPv4) or net6 (IPv6) — an L2 network has none to reserve — and not
//   its network, broadcast or route gateway address; no address already kept by another ReservedIP of the network;
//   `shareable` is refused (one pod per address in danm's IPAM).
import { Effect } from "effect";
import type { Network, TenantConfig } from "../api/danm.ts";
import type { IPBlock } from "../api/ipam.ts";
import { type ReservedIP, reservedIpNetwork, ReservedIpPrivilege } from "../api/reservedip.ts";
import { describeNetwork } from "../cni/plan.ts";
import { blockName } from "../ipam/allocator.ts";
import { blockIndexOf, offsetInBlock, planFamily } from "../ipam/plan.ts";
import { contains, formatCidr, formatIp, parseIp } from "../net/ip.ts";
import { type Problem, problem } from "./problems.ts";

export interface ReservedIpContext {
  /** The network the ReservedIP names, if it exists. */
  readonly network: Network | undefined;
  readonly tenantConfig: TenantConfig | undefined;
  /** The other ReservedIPs on the same network. */
  readonly others: ReadonlyArray<ReservedIP>;
}

/** Whether the TenantConfig lets tenants make ReservedIPs on ClusterNetwork `name`. */
export const grantsReservedIp = (tc: TenantConfig | undefined, name: string): boolean =>
  (tc?.allowedClusterNetworks ?? []).some((a) => a.name === name && (a.privileges ?? []).includes(ReservedIpPrivilege));

export function checkReservedIp(r: ReservedIP, c: ReservedIpContext): Problem[] {
  const out: Problem[] = [];
  const target = reservedIpNetwork(r);
  if (c.network === undefined) {
    out.push(problem("spec.network.name", "reservedip-network", `${describeNetwork(target)} does not exist`));
  } else if (target.kind === "ClusterNetwork" && !grantsReservedIp(c.tenantConfig, target.name)) {
    const why = c.tenantConfig
      ? `TenantConfig ${c.tenantConfig.metadata.name ?? ""} does not grant`
      : "there is no TenantConfig to grant";
    out.push(
      problem(
        "spec.network.name",
        "reservedip-privilege",
        `${describeNetwork(target)}: ${why} the ${ReservedIpPrivilege} privilege on it (allowedClusterNetworks)`,
      ),
    );
  }
  const options = c.network?.spec.Options ?? {};
  const seen = new Map<number, number>();
  const taken = new Map<string, string>();
  for (const o of c.others) {
    for (const ip of o.spec.ips) {
      const parsed = parseIp(ip.address);
      if (parsed) taken.set(formatIp(parsed), `${o.metadata.namespace ?? ""}/${o.metadata.name ?? ""}`);
    }
  }
  r.spec.ips.forEach((entry, i) => {
    const field = `spec.ips[${i}]`;
    if (entry.shareable === true) {
      out.push(
        problem(
          `${field}.shareable`,
          "reservedip-shareable",
          "shareable addresses are not supported: danm's IPAM gives an address to one pod at a time",
        ),
      );
    }
    const ip = parseIp(entry.address);
    if (!ip) {
      out.push(problem(`${field}.address`, "reservedip-address", `"${entry.address}" is not an IP address`));
      return;
    }
    const first = seen.get(ip.family);
    if (first !== undefined) {
      out.push(
        problem(
          `${field}.address`,
          "reservedip-family",
          `a second IPv${ip.family} address (spec.ips[${first}] has one): at most one IPv4 and one IPv6`,
        ),
      );
      return;
    }
    seen.set(ip.family, i);
    if (c.network === undefined) return;
    const cidrField = ip.family === 4 ? "cidr" : "net6";
    const { plan } = planFamily(options, ip.family);
    const shown = formatIp(ip);
    if (!plan) {
      out.push(
        problem(
          `${field}.address`,
          "reservedip-l2",
          `${describeNetwork(target)} has no ${cidrField}: it has no IPv${ip.family} address to reserve`,
        ),
      );
    } else if (!contains(plan.network, ip)) {
      out.push(
        problem(
          `${field}.address`,
          "reservedip-outside",
          `${shown} is not inside ${cidrField} ${formatCidr(plan.network)} of ${describeNetwork(target)}`,
        ),
      );
    } else if (plan.reserved.has(ip.value)) {
      out.push(
        problem(
          `${field}.address`,
          "reservedip-reserved",
          `${shown} is the network, broadcast or a route gateway address of ${describeNetwork(target)}`,
        ),
      );
    } else if (taken.has(shown)) {
      out.push(
        problem(
          `${field}.address`,
          "reservedip-taken",
          `${shown} is already kept by ReservedIP ${taken.get(shown)}`,
        ),
      );
    }
  });
  return out;
}

/** "<address> is in use by pod <pod> …" for every address of the ReservedIP a pod holds (its IPBlock reservation). */
export const reservedIpHolders = <E>(
  r: ReservedIP,
  network: Network,
  ipBlocks: (networkUid: string) => Effect.Effect<ReadonlyArray<IPBlock>, E>,
): Effect.Effect<string[], E> =>
  Effect.gen(function* () {
    const uid = network.metadata.uid ?? "";
    const target = reservedIpNetwork(r);
    const ref = { ...target, uid };
    const blocks = new Map((yield* ipBlocks(uid)).map((b) => [b.metadata.name ?? "", b]));
    const out: string[] = [];
    for (const entry of r.spec.ips) {
      const ip = parseIp(entry.address);
      const plan = ip && planFamily(network.spec.Options ?? {}, ip.family).plan;
      if (!ip || !plan || !contains(plan.network, ip)) continue;
      const block = blocks.get(blockName(ref, ip.family, blockIndexOf(plan, ip.value)));
      const holder = block?.spec.reservations[String(offsetInBlock(plan, ip.value))];
      if (holder) {
        out.push(`${formatIp(ip)} is in use by pod ${holder.pod} (interface ${holder.iface}): delete the pod first`);
      }
    }
    return out;
  });
