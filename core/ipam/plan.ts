// What a network's options mean for address allocation, per family: the network CIDR, the dynamic pool,
// the addresses never handed out, and the block geometry the reservations are stored in.
//
// Semantics follow DANM (danm-spec §3) with its bugs fixed:
// - IPv4 pool defaults to cidr+1 … broadcast−1; IPv6 pool to allocation_pool_v6.cidr (default: all of net6)
//   +1 … last−1. There is no size ceiling.
// - The network address, the broadcast/last address and every route gateway inside the CIDR are never handed
//   out, whenever the route was added (DANM reserved gateways only at creation).
// - Static addresses may lie anywhere inside the network CIDR (`cidr` / `net6`), in or out of the pool, and are
//   tracked the same way (DANM did not track static IPv6 outside its pool).
import { contains, formatCidr, lastAddress, makeCidr, parseCidr, parseIp } from "../net/ip.ts";
import type { Cidr, Family } from "../net/ip.ts";

/** The subset of a danm network's `spec.Options` the IPAM reads. */
export interface PoolOptions {
  readonly cidr?: string | undefined;
  readonly allocation_pool?: { readonly start?: string | undefined; readonly end?: string | undefined } | undefined;
  readonly net6?: string | undefined;
  readonly allocation_pool_v6?: {
    readonly cidr?: string | undefined;
    readonly start?: string | undefined;
    readonly end?: string | undefined;
  } | undefined;
  readonly routes?: Readonly<Record<string, string>> | undefined;
  readonly routes6?: Readonly<Record<string, string>> | undefined;
  /** Addresses of the network's ReservedIPs: dynamic allocation skips them, a static request may take them. */
  readonly heldAddresses?: ReadonlyArray<string> | undefined;
}

export interface FamilyPlan {
  readonly family: Family;
  /** The network CIDR: static addresses are valid anywhere inside it, and blocks are aligned to it. */
  readonly network: Cidr;
  /** Inclusive range of the dynamic pool. */
  readonly poolStart: bigint;
  readonly poolEnd: bigint;
  /** Addresses never handed out: network address, broadcast/last address, route gateways. */
  readonly reserved: ReadonlySet<bigint>;
  /** Addresses kept by ReservedIPs: never handed out dynamically, but a pod may ask for them by address. */
  readonly held: ReadonlySet<bigint>;
  /** log2 of the addresses per reservation block. */
  readonly blockBits: number;
}

/** Why a network's options cannot be planned; the webhook refuses such networks up front. */
export interface PlanProblem {
  readonly field: string;
  readonly message: string;
}

/** 64 addresses per block: small objects to rewrite, few blocks to scan even for an IPv4 /8. */
export const defaultBlockBits = 6;

const familyBits = (f: Family) => (f === 4 ? 32 : 128);

function reservedEdges(network: Cidr): bigint[] {
  // A /31 or /32 (IPv4) and /127 or /128 (IPv6) have no network/broadcast address to set aside.
  if (familyBits(network.family) - network.prefix <= 1) return [];
  return [network.base, lastAddress(network)];
}

export function planFamily(
  options: PoolOptions,
  family: Family,
  blockBits = defaultBlockBits,
): { plan?: FamilyPlan; problem?: PlanProblem } {
  const cidrField = family === 4 ? "cidr" : "net6";
  const cidrText = family === 4 ? options.cidr : options.net6;
  if (!cidrText) return {};
  const parsed = parseCidr(cidrText);
  if (!parsed || parsed.cidr.family !== family) {
    return { problem: { field: `spec.Options.${cidrField}`, message: `"${cidrText}" is not an IPv${family} CIDR` } };
  }
  const network = parsed.cidr;
  const poolField = family === 4 ? "allocation_pool" : "allocation_pool_v6";
  const pool = family === 4 ? options.allocation_pool : options.allocation_pool_v6;
  let poolCidr = network;
  if (family === 6 && options.allocation_pool_v6?.cidr) {
    const p = parseCidr(options.allocation_pool_v6.cidr);
    if (!p || p.cidr.family !== 6) {
      return {
        problem: {
          field: `spec.Options.${poolField}.cidr`,
          message: `"${options.allocation_pool_v6.cidr}" is not an IPv6 CIDR`,
        },
      };
    }
    if (p.cidr.base < network.base || lastAddress(p.cidr) > lastAddress(network)) {
      return {
        problem: {
          field: `spec.Options.${poolField}.cidr`,
          message: `${formatCidr(p.cidr)} is not inside net6 ${formatCidr(network)}`,
        },
      };
    }
    poolCidr = p.cidr;
  }
  const edges = reservedEdges(poolCidr);
  let poolStart = edges.length ? poolCidr.base + 1n : poolCidr.base;
  let poolEnd = edges.length ? lastAddress(poolCidr) - 1n : lastAddress(poolCidr);
  for (
    const [key, setter] of [["start", (v: bigint) => (poolStart = v)], ["end", (v: bigint) => (poolEnd = v)]] as const
  ) {
    const text = pool?.[key];
    if (!text) continue;
    const ip = parseIp(text);
    if (!ip || ip.family !== family || !contains(poolCidr, ip)) {
      return {
        problem: {
          field: `spec.Options.${poolField}.${key}`,
          message: `"${text}" is not an IPv${family} address inside ${formatCidr(poolCidr)}`,
        },
      };
    }
    setter(ip.value);
  }
  if (poolEnd < poolStart) {
    return {
      problem: { field: `spec.Options.${poolField}`, message: `pool end is before its start` },
    };
  }
  const reserved = new Set<bigint>(reservedEdges(network));
  const routes = family === 4 ? options.routes : options.routes6;
  for (const gw of Object.values(routes ?? {})) {
    const ip = parseIp(gw);
    if (ip && contains(network, ip)) reserved.add(ip.value);
  }
  const held = new Set<bigint>();
  for (const text of options.heldAddresses ?? []) {
    const ip = parseIp(text);
    if (ip && ip.family === family && contains(network, ip) && !reserved.has(ip.value)) held.add(ip.value);
  }
  const effectiveBlockBits = Math.min(blockBits, familyBits(family) - network.prefix);
  return { plan: { family, network, poolStart, poolEnd, reserved, held, blockBits: effectiveBlockBits } };
}

export function blockIndexOf(plan: FamilyPlan, value: bigint): bigint {
  return (value - plan.network.base) >> BigInt(plan.blockBits);
}

export function blockCidr(plan: FamilyPlan, index: bigint): Cidr {
  return makeCidr(
    plan.family,
    plan.network.base + (index << BigInt(plan.blockBits)),
    familyBits(plan.family) - plan.blockBits,
  );
}

/** Inclusive range of block indexes that hold at least one pool address. */
export function poolBlockRange(plan: FamilyPlan): { first: bigint; last: bigint } {
  return { first: blockIndexOf(plan, plan.poolStart), last: blockIndexOf(plan, plan.poolEnd) };
}

/** Number of addresses dynamic allocation can hand out (the pool minus reserved and held addresses inside it). */
export function poolCapacity(plan: FamilyPlan): bigint {
  let n = plan.poolEnd - plan.poolStart + 1n;
  for (const r of plan.reserved) if (r >= plan.poolStart && r <= plan.poolEnd) n--;
  for (const r of plan.held) if (r >= plan.poolStart && r <= plan.poolEnd) n--;
  return n;
}

/** Offsets inside a block that are taken: a Set, or a view over a block's reservations. */
export interface TakenOffsets {
  readonly has: (offset: number) => boolean;
}

/**
 * The lowest address of block `index` that dynamic allocation may hand out and that is not taken.
 * `taken` holds offsets inside the block. Called for every dynamic request: the scan runs on plain numbers,
 * the pool bounds and reserved addresses turned into offsets once (bigint steps were most of its cost).
 */
export function lowestFree(plan: FamilyPlan, index: bigint, taken: TakenOffsets): bigint | undefined {
  const first = plan.network.base + (index << BigInt(plan.blockBits));
  const last = first + BigInt((1 << plan.blockBits) - 1);
  if (plan.poolStart > last || plan.poolEnd < first) return undefined;
  const from = plan.poolStart > first ? Number(plan.poolStart - first) : 0;
  const to = plan.poolEnd < last ? Number(plan.poolEnd - first) : (1 << plan.blockBits) - 1;
  const reserved = new Set<number>();
  for (const set of [plan.reserved, plan.held]) {
    for (const r of set) if (r >= first && r <= last) reserved.add(Number(r - first));
  }
  for (let off = from; off <= to; off++) {
    if (!taken.has(off) && !reserved.has(off)) return first + BigInt(off);
  }
  return undefined;
}

export function offsetInBlock(plan: FamilyPlan, value: bigint): number {
  return Number((value - plan.network.base) & ((1n << BigInt(plan.blockBits)) - 1n));
}
