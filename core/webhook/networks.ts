// The rules for DanmNet, TenantNetwork and ClusterNetwork objects (danm-spec §7.3), as pure functions of decoded
// objects, with DANM's documentation errors fixed and its limits lifted:
//
//   V1/V4   routes (routes6) need cidr (net6): a gateway cannot be reached on an L2 network.
//   V2/V9   cidr must be an IPv4 CIDR; any prefix (no /9 floor: reservations live in IPBlocks, not a bitmask).
//   V3/V6   every route gateway is an address of the family inside cidr (net6); ours: destinations are CIDRs.
//   V7      alloc/alloc6 are refused (danm's IPAM keeps its state in IPBlocks); a value a migrated DANM object
//           already carries may stay unchanged on UPDATE.
//   V8/V11  allocation_pool needs cidr, allocation_pool_v6 needs net6 (the user guide wrongly said cidr).
//   V10/V12 pools inside their CIDR, end strictly after start (the guide said "smaller"); pool6 cidr inside net6,
//           of any size (no 8M budget).
//   V13     vlan and vxlan are mutually exclusive.
//   V14     NetworkID is required; at most 10 characters when a dynamic type uses vlan/vxlan (host interface
//           names `<NetworkID>.<vlan>` and `vx_<NetworkID>` must fit 15 bytes).
//   V15     AllowedTenants only on ClusterNetwork.
//   V16     TenantNetwork: no vlan/vxlan from the user at CREATE; afterwards nothing the webhook assigned changes.
//   V17     sriov needs device_pool and no host_device; otherwise host_device and device_pool exclude each other
//           (each backend's validate, core/cni/backends).
//   V18     while a pod is attached: vlan, vxlan, host_device, device_pool (and, ours, NetworkType and NetworkID,
//           which name the host interface or the delegate's config) do not change. DANM only checked this with a
//           VLAN/VXLAN set and never ran it (UPDATE was unregistered, #144).
//   ours    mtu ≥ 1280 with net6 (IPv6 minimum); container_prefix must be able to form interface names;
//           AllowedTenants are namespace names; cidr/net6/pool changes must not strand existing reservations.
//
// Defaults (mutation): NetworkType "" → ipvlan; allocation_pool start/end → cidr+1 … broadcast−1; for IPv6,
// allocation_pool_v6.cidr → net6 itself (DANM took the first /105 or /106 because of its 8M bitmask ceiling,
// which danm does not have), start/end → its first+1 … last−1.
import type { IPBlock } from "../api/ipam.ts";
import type { Network, NetworkKind, NetworkOptions } from "../api/danm.ts";
import { prefixProblem } from "../podnetworks/naming.ts";
import { backendForType } from "../cni/backends/kinds.ts";
import { type FamilyPlan, planFamily } from "../ipam/plan.ts";
import { contains, formatCidr, formatIp, parseCidr, parseIp } from "../net/ip.ts";
import { demandOf, networkDemandInput, type NetworkRef, planInterfaces, refKey, sameSpec } from "../netwatcher/plan.ts";
import { type Problem, problem } from "./problems.ts";

export const DefaultNetworkType = "ipvlan";
export const MaxDynamicNetworkIdLength = 10;
/** Annotation carrying the VNI claim of a TenantNetwork (see claims.ts). */
export const VniClaimAnnotation = "danm.io/vni-claim";

/** A NetworkType whose CNI config danm generates (everything else is a static delegate configured by NetworkID). */
export const isDynamicType = (t: string | undefined): boolean => backendForType(t).generated;

const opts = (n: Network): NetworkOptions => n.spec.Options ?? {};
const nonEmpty = (s: string | undefined): s is string => s !== undefined && s !== "";
const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

// ---- Defaults -----------------------------------------------------------------------------------------------------

const addr = (plan: FamilyPlan, v: bigint) => formatIp({ family: plan.family, value: v });

/** The network with DANM's defaults filled in; fields that are set, or invalid, are left for the checks. */
export function withDefaults<N extends Network>(net: N): N {
  const o = opts(net);
  let options: NetworkOptions = o;
  if (nonEmpty(o.cidr) && (!nonEmpty(o.allocation_pool?.start) || !nonEmpty(o.allocation_pool?.end))) {
    const { plan } = planFamily(o, 4);
    if (plan) {
      options = {
        ...options,
        allocation_pool: {
          ...o.allocation_pool,
          start: nonEmpty(o.allocation_pool?.start) ? o.allocation_pool.start : addr(plan, plan.poolStart),
          end: nonEmpty(o.allocation_pool?.end) ? o.allocation_pool.end : addr(plan, plan.poolEnd),
        },
      };
    }
  }
  const p6 = o.allocation_pool_v6;
  if (nonEmpty(o.net6) && (!nonEmpty(p6?.cidr) || !nonEmpty(p6?.start) || !nonEmpty(p6?.end))) {
    const parsed = parseCidr(o.net6);
    if (parsed && parsed.cidr.family === 6) {
      const cidr = nonEmpty(p6?.cidr) ? p6.cidr : formatCidr(parsed.cidr);
      const { plan } = planFamily({ ...o, allocation_pool_v6: { ...p6, cidr } }, 6);
      options = {
        ...options,
        allocation_pool_v6: plan
          ? {
            ...p6,
            cidr,
            start: nonEmpty(p6?.start) ? p6.start : addr(plan, plan.poolStart),
            end: nonEmpty(p6?.end) ? p6.end : addr(plan, plan.poolEnd),
          }
          : { ...p6, cidr },
      };
    }
  }
  const spec = {
    ...net.spec,
    ...(nonEmpty(net.spec.NetworkType) ? {} : { NetworkType: DefaultNetworkType }),
    ...(options === o ? {} : { Options: options }),
  };
  return { ...net, spec };
}

/**
 * On UPDATE: when cidr (net6) changed and the stored pool was the default of the old CIDR and is sent back
 * unchanged (kubectl apply keeps fields it did not set), the pool follows the new CIDR instead of being refused.
 */
export function followDefaultPools<N extends Network>(next: N, old: Network): N {
  const o = opts(next), prev = opts(old);
  let options = o;
  if (nonEmpty(o.cidr) && o.cidr !== prev.cidr && nonEmpty(prev.cidr)) {
    const prevDefault = opts(withDefaults({ ...old, spec: { ...old.spec, Options: { cidr: prev.cidr } } }))
      .allocation_pool;
    if (
      o.allocation_pool?.start === prevDefault?.start && o.allocation_pool?.end === prevDefault?.end &&
      prev.allocation_pool?.start === prevDefault?.start && prev.allocation_pool?.end === prevDefault?.end
    ) {
      const { allocation_pool: _drop, ...rest } = options;
      options = rest;
    }
  }
  if (nonEmpty(o.net6) && o.net6 !== prev.net6 && nonEmpty(prev.net6)) {
    const prevDefault = opts(withDefaults({ ...old, spec: { ...old.spec, Options: { net6: prev.net6 } } }))
      .allocation_pool_v6;
    const same = (a: NetworkOptions["allocation_pool_v6"], b: NetworkOptions["allocation_pool_v6"]) =>
      a?.cidr === b?.cidr && a?.start === b?.start && a?.end === b?.end;
    if (same(o.allocation_pool_v6, prevDefault) && same(prev.allocation_pool_v6, prevDefault)) {
      const { allocation_pool_v6: _drop, ...rest } = options;
      options = rest;
    }
  }
  return options === o ? next : withDefaults({ ...next, spec: { ...next.spec, Options: options } });
}

// ---- Static rules -------------------------------------------------------------------------------------------------

function routeProblems(o: NetworkOptions, family: 4 | 6): Problem[] {
  const routesField = family === 4 ? "routes" : "routes6";
  const cidrField = family === 4 ? "cidr" : "net6";
  const routes = (family === 4 ? o.routes : o.routes6) ?? {};
  const cidrText = family === 4 ? o.cidr : o.net6;
  const out: Problem[] = [];
  if (Object.keys(routes).length === 0) return out;
  const base = `spec.Options.${routesField}`;
  if (!nonEmpty(cidrText)) {
    return [
      problem(
        base,
        `${routesField}-need-${cidrField}`,
        `IP routes cannot be defined for an L2 network: set spec.Options.${cidrField}`,
      ),
    ];
  }
  const network = parseCidr(cidrText);
  for (const [dst, gw] of Object.entries(routes)) {
    const at = `${base}[${JSON.stringify(dst)}]`;
    const d = parseCidr(dst);
    if (!d || d.cidr.family !== family) {
      out.push(problem(at, "route-destination", `destination "${dst}" is not an IPv${family} CIDR`));
    }
    const g = parseIp(gw);
    if (!g || g.family !== family) {
      out.push(problem(at, "route-gateway", `gateway "${gw}" is not an IPv${family} address`));
    } else if (network && network.cidr.family === family && !contains(network.cidr, g)) {
      out.push(
        problem(at, "route-gateway", `gateway ${gw} is not inside ${cidrField} ${formatCidr(network.cidr)}`),
      );
    }
  }
  return out;
}

function poolProblems(o: NetworkOptions, family: 4 | 6): Problem[] {
  const cidrField = family === 4 ? "cidr" : "net6";
  const poolField = family === 4 ? "allocation_pool" : "allocation_pool_v6";
  const cidrText = family === 4 ? o.cidr : o.net6;
  const pool: { readonly cidr?: string; readonly start?: string; readonly end?: string } | undefined = family === 4
    ? o.allocation_pool
    : o.allocation_pool_v6;
  const poolSet = ["cidr", "start", "end"].filter((k) => nonEmpty((pool as Record<string, string> | undefined)?.[k]));
  if (!nonEmpty(cidrText)) {
    return poolSet.length === 0 ? [] : [
      problem(
        `spec.Options.${poolField}.${poolSet[0]}`,
        `${poolField}-needs-${cidrField}`,
        `an allocation pool needs spec.Options.${cidrField}`,
      ),
    ];
  }
  const { plan, problem: p } = planFamily(o, family);
  if (p && p.field === `spec.Options.${poolField}`) {
    // planFamily's only whole-pool problem: the bounds are in the wrong order.
    return [
      problem(
        `spec.Options.${poolField}.end`,
        "pool-end-after-start",
        `must be greater than start ${pool?.start ?? ""}`,
      ),
    ];
  }
  if (p) return [problem(p.field, `${poolField}-inside-${cidrField}`, p.message)];
  if (plan && nonEmpty(pool?.start) && nonEmpty(pool?.end) && plan.poolEnd <= plan.poolStart) {
    return [
      problem(`spec.Options.${poolField}.end`, "pool-end-after-start", `must be greater than start ${pool.start}`),
    ];
  }
  if (plan && plan.poolEnd <= plan.poolStart) {
    return [
      problem(
        `spec.Options.${cidrField}`,
        "pool-end-after-start",
        `${formatCidr(plan.network)} leaves no room for an allocation pool of at least two addresses`,
      ),
    ];
  }
  return [];
}

export interface CheckOptions {
  readonly kind: NetworkKind;
  readonly operation: "CREATE" | "UPDATE";
  /** The stored object, on UPDATE. */
  readonly old?: Network;
  /**
   * True when `net` is what the user sent (mutating phase), false for the object after mutation. Only the
   * TenantNetwork "no vlan/vxlan at CREATE" rule differs: after mutation they are the webhook's.
   */
  readonly userInput: boolean;
}

/** Every rule a single network object must satisfy; all problems are reported, not only the first. */
export function checkNetwork(net: Network, c: CheckOptions): Problem[] {
  const o = opts(net);
  const out: Problem[] = [];
  const oldOptions = c.old ? opts(c.old) : undefined;
  for (const key of ["alloc", "alloc6"] as const) {
    const v = o[key];
    if (!nonEmpty(v)) continue;
    if (c.operation === "UPDATE" && oldOptions?.[key] === v) continue;
    out.push(
      problem(
        `spec.Options.${key}`,
        "no-manual-allocation",
        "allocation state cannot be set: danm's IPAM keeps reservations in IPBlock objects, not in the network",
      ),
    );
  }
  out.push(...routeProblems(o, 4), ...routeProblems(o, 6), ...poolProblems(o, 4), ...poolProblems(o, 6));
  if (o.vlan !== undefined && o.vxlan !== undefined) {
    out.push(problem("spec.Options.vxlan", "vlan-xor-vxlan", "vlan and vxlan are mutually exclusive"));
  }
  const type = net.spec.NetworkType ?? "";
  if (!nonEmpty(net.spec.NetworkID)) {
    out.push(problem("spec.NetworkID", "network-id-required", "must be set"));
  } else if (
    isDynamicType(type) && (o.vlan !== undefined || o.vxlan !== undefined) &&
    net.spec.NetworkID.length > MaxDynamicNetworkIdLength
  ) {
    out.push(
      problem(
        "spec.NetworkID",
        "network-id-length",
        `"${net.spec.NetworkID}" is longer than ${MaxDynamicNetworkIdLength} characters, too long for the host ` +
          `interface name of a ${o.vlan !== undefined ? "VLAN" : "VXLAN"} network of type ${
            type || DefaultNetworkType
          }`,
      ),
    );
  }
  const tenants = net.spec.AllowedTenants ?? [];
  if (c.kind !== "ClusterNetwork" && tenants.length > 0) {
    out.push(problem("spec.AllowedTenants", "allowed-tenants-cluster-only", "only valid for the ClusterNetwork API"));
  }
  tenants.forEach((t, i) => {
    if (!dnsLabel.test(t) || t.length > 63) {
      out.push(problem(`spec.AllowedTenants[${i}]`, "allowed-tenants-names", `"${t}" is not a namespace name`));
    }
  });
  out.push(...backendForType(type).validate(net));
  if (o.mtu !== undefined && nonEmpty(o.net6) && o.mtu < 1280) {
    out.push(problem("spec.Options.mtu", "mtu-ipv6", `${o.mtu} is below 1280, the minimum MTU of IPv6 (net6 is set)`));
  }
  if (nonEmpty(o.container_prefix)) {
    const bad = prefixProblem(o.container_prefix);
    if (bad) out.push(problem("spec.Options.container_prefix", "container-prefix", bad));
  }
  if (c.kind === "TenantNetwork" && c.operation === "CREATE" && c.userInput) {
    for (const key of ["vlan", "vxlan"] as const) {
      if (o[key] !== undefined) {
        out.push(
          problem(
            `spec.Options.${key}`,
            "tenant-no-vni",
            "cannot be set on a TenantNetwork: the webhook assigns it from the TenantConfig",
          ),
        );
      }
    }
  }
  return out;
}

// ---- UPDATE rules -------------------------------------------------------------------------------------------------

type Field = { readonly path: string; readonly get: (n: Network) => string | number | undefined };

const specField = (path: string, get: (n: Network) => string | number | undefined): Field => ({ path, get });

const physicalFields: ReadonlyArray<Field> = [
  specField("spec.Options.vlan", (n) => opts(n).vlan),
  specField("spec.Options.vxlan", (n) => opts(n).vxlan),
  specField("spec.Options.host_device", (n) => opts(n).host_device),
  specField("spec.Options.device_pool", (n) => opts(n).device_pool),
  specField("spec.NetworkType", (n) => n.spec.NetworkType),
  specField("spec.NetworkID", (n) => n.spec.NetworkID),
];

const tenantAssignedFields: ReadonlyArray<Field> = [
  ...physicalFields,
  specField(
    `metadata.annotations[${JSON.stringify(VniClaimAnnotation)}]`,
    (n) => n.metadata.annotations?.[VniClaimAnnotation],
  ),
];

/** "" and absent mean the same to DANM. */
const norm = (v: string | number | undefined) => (v === "" ? undefined : v);
const show = (v: string | number | undefined) => (v === undefined ? "unset" : JSON.stringify(v));

export interface UpdateContext {
  readonly kind: NetworkKind;
  /** A pod attached to the network ("namespace/name"), if any. */
  readonly attachedPod?: string;
}

/** The rules comparing the stored object with the new one (V16 UPDATE, V18). */
export function checkNetworkUpdate(old: Network, next: Network, c: UpdateContext): Problem[] {
  const out: Problem[] = [];
  const fields = c.kind === "TenantNetwork" ? tenantAssignedFields : physicalFields;
  for (const f of fields) {
    const was = norm(f.get(old)), is = norm(f.get(next));
    if (was === is) continue;
    if (c.kind === "TenantNetwork") {
      out.push(
        problem(
          f.path,
          "tenant-assigned-immutable",
          `must not change (${show(was)} → ${show(is)}): a TenantNetwork's physical parameters are assigned from ` +
            `the TenantConfig; delete and re-create the TenantNetwork instead`,
        ),
      );
    } else if (c.attachedPod !== undefined) {
      out.push(
        problem(
          f.path,
          "immutable-while-attached",
          `must not change while pods are attached (pod ${c.attachedPod})`,
        ),
      );
    }
  }
  return out;
}

/** True when the fields the IPAM plans from differ (then reservations must be checked against the new plan). */
export function addressingChanged(old: Network, next: Network): boolean {
  const a = opts(old), b = opts(next);
  const pick = (o: NetworkOptions) =>
    JSON.stringify([
      o.cidr ?? "",
      o.allocation_pool?.start ?? "",
      o.allocation_pool?.end ?? "",
      o.net6 ?? "",
      o.allocation_pool_v6?.cidr ?? "",
      o.allocation_pool_v6?.start ?? "",
      o.allocation_pool_v6?.end ?? "",
      o.routes ?? {},
      o.routes6 ?? {},
    ]);
  return pick(a) !== pick(b);
}

/**
 * The reservations (IPBlocks of the network) the new addressing would strand: an address outside the new cidr
 * (net6), one that would become the network/broadcast address or a gateway, a dynamically allocated one outside
 * the new pool, or a block whose range no longer lines up with the new network's block grid.
 */
export function strandingProblems(next: Network, blocks: ReadonlyArray<IPBlock>): Problem[] {
  const o = opts(next);
  const out: Problem[] = [];
  const plans = { 4: planFamily(o, 4).plan, 6: planFamily(o, 6).plan };
  for (const block of blocks) {
    const family = block.spec.family === "IPv4" ? 4 : 6;
    const field = family === 4 ? "spec.Options.cidr" : "spec.Options.net6";
    const poolField = family === 4 ? "spec.Options.allocation_pool" : "spec.Options.allocation_pool_v6";
    const blockCidr = parseCidr(block.spec.cidr);
    if (!blockCidr) continue;
    const plan = plans[family];
    for (const [offset, r] of Object.entries(block.spec.reservations)) {
      const value = blockCidr.cidr.base + BigInt(offset);
      const address = formatIp({ family, value });
      const holder = `pod ${r.pod}, interface ${r.iface}`;
      if (!plan) {
        out.push(problem(field, "strands-reservations", `must stay set: ${address} is reserved (${holder})`));
      } else if (!contains(plan.network, { family, value })) {
        out.push(
          problem(
            field,
            "strands-reservations",
            `${formatCidr(plan.network)} would strand the reservation of ${address} (${holder})`,
          ),
        );
      } else if (plan.reserved.has(value)) {
        out.push(
          problem(
            field,
            "strands-reservations",
            `${address} would become the network, broadcast or a gateway address but is reserved (${holder})`,
          ),
        );
      } else if (!r.static && (value < plan.poolStart || value > plan.poolEnd)) {
        out.push(
          problem(
            poolField,
            "strands-reservations",
            `the new pool would leave the dynamically allocated ${address} outside it (${holder})`,
          ),
        );
      } else {
        // Blocks are named by their index in the network's grid (allocator.ts blockName): the new grid must put
        // this address in the same block under the same index, or the allocator would not find it.
        const index = (value - plan.network.base) >> BigInt(plan.blockBits);
        const grid = plan.network.base + (index << BigInt(plan.blockBits));
        const named = /-([0-9a-f]+)$/.exec(block.metadata.name ?? "")?.[1];
        if (
          grid !== blockCidr.cidr.base || blockCidr.cidr.prefix !== (family === 4 ? 32 : 128) - plan.blockBits ||
          (named !== undefined && BigInt(`0x${named}`) !== index)
        ) {
          out.push(
            problem(
              field,
              "strands-reservations",
              `${formatCidr(plan.network)} would move the reservation of ${address} (${holder}) out of its ` +
                `block ${block.spec.cidr}`,
            ),
          );
        }
      }
      if (out.length >= 5) return out; // enough to act on; the list could be long
    }
  }
  return out;
}

// ---- Usage keys ---------------------------------------------------------------------------------------------------

/** The device a network's VLAN/VXLAN lives on: its device_pool or host_device. */
export const deviceOf = (n: Network): string | undefined => {
  const o = opts(n);
  return nonEmpty(o.device_pool) ? o.device_pool : nonEmpty(o.host_device) ? o.host_device : undefined;
};

// ---- Host interfaces shared by NetworkID ---------------------------------------------------------------------------

/**
 * A network's identity for the host-interface plan. One being created counts as the youngest whatever its timestamp
 * says (the apiserver sets it before validation, and ties at its 1 s resolution would fall back to kind and name);
 * so does one whose update asks for other host interfaces: its claim on them is new, and its age must not take
 * an interface from a younger network whose pods use it.
 */
const demandRef = (kind: NetworkKind, n: Network, creating = false): NetworkRef => ({
  kind,
  ...(kind === "ClusterNetwork" ? {} : { namespace: n.metadata.namespace ?? "" }),
  name: n.metadata.name ?? "",
  ...(creating || n.metadata.creationTimestamp === undefined
    ? {}
    : { creationTimestamp: n.metadata.creationTimestamp }),
});

/** Whether an update leaves the network's host interfaces as they were. */
function sameDemand(kind: NetworkKind, old: Network, next: Network): boolean {
  const a = demandOfNetwork(demandRef(kind, old), old)?.interfaces ?? [];
  const b = demandOfNetwork(demandRef(kind, next), next)?.interfaces ?? [];
  return a.length === b.length && a.every((s, i) => sameSpec(s, b[i]));
}

// The vxlan-mode annotation is left out on both sides: which mode an unannotated network gets is the agents' flag,
// unknown here; a mode clash alone is not an isolation problem (netwatcher still refuses it on the nodes).
const demandOfNetwork = (ref: NetworkRef, n: Network) =>
  demandOf(networkDemandInput(ref, n.spec, undefined), "multicast");

/**
 * ours (DANM's isolation bug, danm-spec §5.6): a network whose host interface (vx_<NetworkID>, <NetworkID>.<vlan>)
 * would be another network's with another VNI, VLAN or host_device — or whose VLAN/VNI on its host_device another
 * interface already carries — is refused: netwatcher would keep the older network's interface and DANM put the new
 * network's pods on the other segment. The same interface with the same parameters is shared, as in DANM.
 */
export function hostInterfaceConflicts(
  net: Network,
  kind: NetworkKind,
  others: ReadonlyArray<{ readonly kind: NetworkKind; readonly object: Network }>,
  /** The stored object on UPDATE; absent on CREATE. */
  old?: Network,
): Problem[] {
  const newcomer = old === undefined || !sameDemand(kind, old, net);
  const mine = demandOfNetwork(demandRef(kind, net, newcomer), net);
  if (mine === undefined || mine.problem !== undefined) return [];
  const self = refKey(mine.ref);
  const theirs = others
    .filter((o) => !(o.kind === kind && refKey(demandRef(o.kind, o.object)) === self))
    .flatMap((o) => demandOfNetwork(demandRef(o.kind, o.object), o.object) ?? []);
  const refusal = planInterfaces([...theirs, mine]).refused.get(self);
  if (refusal?.reason !== "Conflict") return [];
  const o = opts(net);
  const field = o.vxlan !== undefined ? "spec.Options.vxlan" : "spec.Options.vlan";
  return [
    problem(
      nonEmpty(net.spec.NetworkID) && refusal.message.startsWith("host interface") ? "spec.NetworkID" : field,
      "host-interface-conflict",
      `${refusal.message}: pods of both would share one segment; choose another NetworkID (or VLAN/VNI)`,
    ),
  ];
}
