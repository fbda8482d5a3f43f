// The IPAM's batch planning, pure: given what a lane knows of its stored blocks, decide for each request of one
// batch which address it gets (choose), where an owner's reservation already sits (locate) and what a release
// frees (free), on working copies of the touched blocks. No I/O: the allocator (allocator.ts) queues the requests,
// commits the working copies with one write per block and retries what lost a race.
import type { IPBlock, Reservation } from "../api/ipam.ts";
import { contains, type Family, formatCidr, formatIp, type Ip } from "../net/ip.ts";
import { AddressInUse, AddressNotAllowed, PoolExhausted } from "./errors.ts";
import { blockIndexOf, type FamilyPlan, lowestFree, offsetInBlock, poolBlockRange, type TakenOffsets } from "./plan.ts";

export interface Owner {
  readonly namespace: string;
  readonly pod: string;
  readonly podUid: string;
  readonly sandbox: string;
  readonly iface: string;
  readonly node: string;
}

export type AddressRequest = { readonly kind: "dynamic" } | { readonly kind: "static"; readonly ip: Ip };

export const ownerKey = (o: { podUid: string; iface: string }) => `${o.podUid}/${o.iface}`;

export function sameOwner(r: Reservation, o: Owner): boolean {
  return r.podUid === o.podUid && r.iface === o.iface;
}

/** Where a reservation sits: its block's index in the pool and its offset in the block. */
export interface Slot {
  readonly index: bigint;
  readonly offset: number;
}

/** What a lane (one network, one family) knows of its stored blocks, kept between batches. */
export interface BlockCache {
  readonly family: Family;
  /** The network as errors name it. */
  readonly label: string;
  readonly blocks: Map<bigint, IPBlock>;
  /** ownerKey → where its reservation sits, for idempotent ADD and DEL without scanning. */
  readonly owners: Map<string, Slot>;
  /**
   * Stored blocks known to have no address left for dynamic allocation from the pool `fullPool`: a busy node
   * has hundreds of full blocks, and rescanning them for every request was most of the allocator's CPU.
   * A block leaves the set whenever it is replaced (a write, a re-read) or the pool changes.
   */
  readonly full: Set<bigint>;
  fullPool: string;
  /** Node name → the stored blocks it opened: a node looks at its own blocks first, without a pass over all. */
  readonly byNode: Map<string, Set<bigint>>;
  /** Block creations this lane lost: each moves the next new block to a fresh position (see chooseDynamic). */
  lostCreates: number;
  /** The pool as last asked for (usage reports its capacity). */
  plan?: FamilyPlan;
}

export const emptyCache = (family: Family, label: string): BlockCache => ({
  family,
  label,
  blocks: new Map(),
  owners: new Map(),
  full: new Set(),
  fullPool: "",
  byNode: new Map(),
  lostCreates: 0,
});

/** Puts the stored `block` (undefined: gone) at `index` of the cache, keeping its indexes in step. */
export function cacheBlock(cache: BlockCache, index: bigint, block: IPBlock | undefined): void {
  cache.full.delete(index);
  const old = cache.blocks.get(index);
  if (old?.spec.node !== block?.spec.node) {
    if (old?.spec.node !== undefined) cache.byNode.get(old.spec.node)?.delete(index);
    if (block?.spec.node !== undefined) {
      const mine = cache.byNode.get(block.spec.node) ?? new Set();
      cache.byNode.set(block.spec.node, mine.add(index));
    }
  }
  // Only entries that changed touch the owner index: after our own write, the unchanged ones are the very
  // objects of the cached block (the store hands back the block as sent), and a block holds up to 2^blockBits.
  const before = old?.spec.reservations ?? {}, after = block?.spec.reservations ?? {};
  for (const off in before) {
    const r = before[off];
    if (after[off] === r) continue;
    const k = ownerKey(r);
    const at = cache.owners.get(k);
    if (at && at.index === index && at.offset === Number(off)) cache.owners.delete(k);
  }
  if (!block) {
    cache.blocks.delete(index);
    return;
  }
  cache.blocks.set(index, block);
  for (const off in after) {
    if (before[off] !== after[off]) cache.owners.set(ownerKey(after[off]), { index, offset: Number(off) });
  }
}

/** One block's working copy in a batch: the reservations it will hold and the requests waiting on its write. */
export interface BlockWork<Op> {
  readonly base: IPBlock | undefined;
  readonly reservations: Record<string, Reservation>;
  readonly ops: Op[];
  /** The node opening it (a block this batch creates). */
  node?: string;
}

/** What planning a reservation came to. */
export type ReserveStep =
  | { readonly _tag: "Assigned"; readonly value: bigint }
  | { readonly _tag: "Refused"; readonly error: AddressNotAllowed | AddressInUse | PoolExhausted }
  /**
   * The static address is held by another reservation of the same pod (namespace/name, another UID): the caller
   * asks whether that owner is gone, then `claim`s the address or refuses it as in use.
   */
  | {
    readonly _tag: "HeldBySamePod";
    readonly holder: Reservation;
    readonly value: bigint;
    readonly address: string;
  };

const compareBigint = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/** FNV-1a: a stable spread of node names over a pool's blocks. */
function nodeHash(node: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < node.length; i++) h = Math.imul(h ^ node.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** What decides which addresses of a block dynamic allocation may use. */
const poolKey = (p: FamilyPlan) =>
  `${p.poolStart}-${p.poolEnd}/${p.blockBits} ${[...p.reserved].join(",")} ${[...p.held].join(",")}`;

/** poolKey(a) === poolKey(b), without building the strings (every request brings its own plan object). */
function samePool(a: FamilyPlan, b: FamilyPlan): boolean {
  if (a === b) return true;
  if (a.poolStart !== b.poolStart || a.poolEnd !== b.poolEnd || a.blockBits !== b.blockBits) return false;
  const same = (x: ReadonlySet<bigint>, y: ReadonlySet<bigint>) => {
    if (x.size !== y.size) return false;
    const rx = [...x], ry = [...y];
    return rx.every((r, i) => r === ry[i]);
  };
  return same(a.reserved, b.reserved) && same(a.held, b.held);
}

/**
 * One batch's plan over `cache`: `release` and `reserve` each request in turn (in queue order), then `work` holds
 * the blocks to write, each with the requests waiting on it. The cache itself is only changed in its `full` set
 * (blocks found full stay known as such) and `plan`.
 */
export class BatchPlan<Op> {
  readonly work = new Map<bigint, BlockWork<Op>>();
  /** Reservations made in this batch: not in `cache.owners` until their block is written. */
  private readonly batchOwners = new Map<string, Slot>();
  /** Blocks of this batch's working copies with nothing left; a release in the batch takes its block out. */
  private readonly fullInBatch = new Set<bigint>();
  /** Per node and pool: its blocks that may have room, lowest first, built once per batch (not per op). */
  private readonly openBlocks = new Map<string, bigint[]>();
  private lastPlan: FamilyPlan | undefined;
  private lastPool = "";

  constructor(private readonly cache: BlockCache, private readonly now: () => string) {}

  /** Frees what `owner`'s sandbox holds; 1 if something, 0 if nothing (or another sandbox's). */
  release(op: Op, owner: Owner): number {
    const at = this.locate(owner);
    if (!at || at.r.sandbox !== owner.sandbox) return 0;
    this.unset(at.index, at.offset);
    this.attach(op, at.index);
    return 1;
  }

  /** Plans `request` for `owner`: the address it already holds, the static one it asks for, or a free one. */
  reserve(op: Op, owner: Owner, request: AddressRequest, plan: FamilyPlan): ReserveStep {
    this.cache.plan = plan;
    const existing = this.locate(owner);
    if (existing) {
      const existingValue = plan.network.base + (existing.index << BigInt(plan.blockBits)) + BigInt(existing.offset);
      if (request.kind === "dynamic" || request.ip.value === existingValue) {
        if (existing.r.sandbox !== owner.sandbox || existing.r.node !== owner.node) {
          this.put(existing.index, existing.offset, { ...existing.r, sandbox: owner.sandbox, node: owner.node });
          this.attach(op, existing.index);
        }
        return { _tag: "Assigned", value: existingValue };
      }
      // The pod now asks for another static address: give up the old one in the same commit.
      this.unset(existing.index, existing.offset);
      this.attach(op, existing.index);
    }
    if (request.kind === "static") {
      const refused = this.staticRefusal(request.ip, plan);
      if (refused) return { _tag: "Refused", error: refused };
      const value = request.ip.value;
      const holder = this.reservationsOf(blockIndexOf(plan, value))[offsetInBlock(plan, value)];
      if (holder && !sameOwner(holder, owner)) {
        if (holder.pod !== `${owner.namespace}/${owner.pod}`) {
          return {
            _tag: "Refused",
            error: new AddressInUse({ network: this.cache.label, address: formatIp(request.ip), holder: holder.pod }),
          };
        }
        return { _tag: "HeldBySamePod", holder, value, address: formatIp(request.ip) };
      }
      this.claim(op, owner, plan, value, true);
      return { _tag: "Assigned", value };
    }
    const value = this.chooseDynamic(owner.node, plan);
    if (value === undefined) {
      return { _tag: "Refused", error: new PoolExhausted({ network: this.cache.label, family: this.cache.family }) };
    }
    this.claim(op, owner, plan, value, false);
    return { _tag: "Assigned", value };
  }

  /** Reserves `value` for `owner` in this batch. */
  claim(op: Op, owner: Owner, plan: FamilyPlan, value: bigint, isStatic: boolean): void {
    const index = blockIndexOf(plan, value);
    this.put(index, offsetInBlock(plan, value), {
      pod: `${owner.namespace}/${owner.pod}`,
      podUid: owner.podUid,
      sandbox: owner.sandbox,
      iface: owner.iface,
      node: owner.node,
      ...(isStatic ? { static: true } : {}),
      since: this.now(),
    });
    this.attach(op, index);
  }

  private staticRefusal(ip: Ip, plan: FamilyPlan): AddressNotAllowed | undefined {
    const address = formatIp(ip);
    if (!contains(plan.network, ip)) {
      return new AddressNotAllowed({
        network: this.cache.label,
        address,
        reason: `outside the network ${formatCidr(plan.network)}`,
      });
    }
    if (plan.reserved.has(ip.value)) {
      return new AddressNotAllowed({
        network: this.cache.label,
        address,
        reason: "it is the network or broadcast address or a route gateway",
      });
    }
    return undefined;
  }

  private getWork(index: bigint): BlockWork<Op> {
    let w = this.work.get(index);
    if (!w) {
      const base = this.cache.blocks.get(index);
      w = { base, reservations: { ...(base?.spec.reservations ?? {}) }, ops: [] };
      this.work.set(index, w);
    }
    return w;
  }

  /** Block `index`'s reservations as this batch sees them. */
  private reservationsOf(index: bigint): Record<string, Reservation> {
    return this.work.get(index)?.reservations ?? this.cache.blocks.get(index)?.spec.reservations ?? {};
  }

  private taken(index: bigint): TakenOffsets {
    const rs = this.reservationsOf(index);
    return { has: (offset) => rs[offset] !== undefined };
  }

  private put(index: bigint, offset: number, r: Reservation): void {
    this.getWork(index).reservations[offset] = r;
    this.batchOwners.set(ownerKey(r), { index, offset });
  }

  private unset(index: bigint, offset: number): void {
    delete this.getWork(index).reservations[offset];
    this.fullInBatch.delete(index);
    this.openBlocks.clear(); // a full block may have room again
  }

  private attach(op: Op, index: bigint): void {
    const w = this.getWork(index);
    if (!w.ops.includes(op)) w.ops.push(op);
  }

  private locate(o: Owner): (Slot & { r: Reservation }) | undefined {
    const k = ownerKey(o);
    const candidates = [this.batchOwners.get(k), this.cache.owners.get(k)].filter((c) => c !== undefined);
    for (const c of candidates) {
      const r = this.reservationsOf(c.index)[c.offset];
      if (r && sameOwner(r, o)) return { ...c, r };
    }
    return undefined;
  }

  private poolOf(plan: FamilyPlan): string {
    if (!this.lastPlan || !samePool(this.lastPlan, plan)) [this.lastPlan, this.lastPool] = [plan, poolKey(plan)];
    return this.lastPool;
  }

  /** The lowest free pool address of block i, skipping blocks already known to be full. */
  private freeIn(plan: FamilyPlan, pool: string, i: bigint): bigint | undefined {
    if (this.work.has(i)) {
      if (this.fullInBatch.has(i)) return undefined;
      const v = lowestFree(plan, i, this.taken(i));
      if (v === undefined) this.fullInBatch.add(i);
      return v;
    }
    const cache = this.cache;
    if (cache.fullPool !== pool) {
      cache.full.clear();
      cache.fullPool = pool;
    }
    if (cache.full.has(i)) return undefined;
    const v = lowestFree(plan, i, this.taken(i));
    if (v === undefined) cache.full.add(i);
    return v;
  }

  /** `node`'s blocks that may have room, lowest first. */
  private openBlocksOf(node: string, pool: string, first: bigint, last: bigint): bigint[] {
    const openKey = `${node}\n${pool}`;
    let open = this.openBlocks.get(openKey);
    if (!open) {
      const cache = this.cache;
      // Full blocks are skipped without sorting them in: a busy node has hundreds.
      const mine = new Set(cache.byNode.get(node));
      for (const [i, w] of this.work) if ((w.node ?? w.base?.spec.node) === node) mine.add(i);
      open = [];
      for (const i of mine) {
        if (i < first || i > last) continue;
        if (this.work.has(i) ? !this.fullInBatch.has(i) : !(cache.fullPool === pool && cache.full.has(i))) {
          open.push(i);
        }
      }
      open.sort(compareBigint);
      this.openBlocks.set(openKey, open);
    }
    return open;
  }

  /**
   * A free address for `node`: in its own blocks, lowest first; else in a block nobody opened yet; else in another
   * node's block.
   */
  private chooseDynamic(node: string, plan: FamilyPlan): bigint | undefined {
    const pool = this.poolOf(plan);
    const { first, last } = poolBlockRange(plan);
    const open = this.openBlocksOf(node, pool, first, last);
    for (const i of open) {
      const v = this.freeIn(plan, pool, i);
      if (v !== undefined) return v;
    }
    const fresh = this.freshBlock(node, plan, first, last);
    if (fresh) {
      const [i, v] = fresh;
      this.getWork(i).node = node;
      open.push(i); // every block before it is full: the list stays lowest-first among those with room
      return v;
    }
    const nodeOf = (i: bigint) => this.work.get(i)?.node ?? this.cache.blocks.get(i)?.spec.node;
    const known = new Set<bigint>(this.cache.blocks.keys());
    for (const i of this.work.keys()) known.add(i);
    const sorted = [...known].filter((i) => i >= first && i <= last && nodeOf(i) !== node);
    for (const i of sorted.sort(compareBigint)) {
      const v = this.freeIn(plan, pool, i);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  /**
   * A block that does not exist yet and its lowest free address. Alone on the network, a node takes the lowest
   * (DANM's lowest-first order). Once other nodes are known to allocate here, it starts looking at a position
   * derived from its name, so nodes filling up at the same moment do not race for one block.
   */
  private freshBlock(node: string, plan: FamilyPlan, first: bigint, last: bigint): [bigint, bigint] | undefined {
    const cache = this.cache;
    const others = [...cache.byNode].some(([n, blocks]) => n !== node && blocks.size > 0);
    // The spread covers the pool but at most 4096 blocks (256 Ki addresses): room enough to keep racing
    // nodes apart, and addresses in a huge IPv6 pool stay near its start.
    const window = last - first + 1n < 4096n ? last - first + 1n : 4096n;
    // After a lost create, jump to a fresh position rather than walking into the winner's region, where every
    // step would lose again (the lane only learns of other nodes' blocks by losing).
    const start = others ? first + (BigInt(nodeHash(`${node}#${cache.lostCreates}`)) % window) : first;
    for (const [from, to] of [[start, last], [first, start - 1n]] as const) {
      for (let i = from; i <= to; i++) {
        if (cache.blocks.has(i) || this.work.has(i)) continue;
        const v = lowestFree(plan, i, new Set());
        if (v !== undefined) return [i, v];
      }
    }
    return undefined;
  }
}
