// danm's cluster-wide IPAM: one allocator per node process, reservations stored as IPBlock objects.
//
// Order of allocation (documented behaviour): a node fills the blocks it opened, lowest address first; when
// they are full it opens the lowest block of the pool that does not exist yet (with n nodes active on the
// network: the first missing block from a position derived from the node's name, to avoid create races); when every block exists it takes the lowest
// free address of another node's block. A freed address is reused by the next request. On a single node this
// is plain lowest-free-first, DANM's effective order.
// Reserved addresses (network, broadcast, gateways) are never handed out.
//
// Throughput: requests for one network and family queue on a lane; its worker takes everything queued and
// commits it with one compare-and-swap write per touched block (group commit), so 16 concurrent ADDs on a
// node cost about one apiserver write. Conflicting writes (another node touched the block) re-read that block
// and retry the affected requests, at most `maxAttempts` times, with jittered backoff.
//
// Safety: every reservation carries its owner (pod UID, sandbox, interface). A retried ADD of the same pod
// UID and interface gets the same address; a DEL frees only what its own sandbox holds; a crash after the
// write leaves a reservation the reclaimer can attribute and free.
import { Context, Deferred, Effect, Layer, Queue } from "effect";
import { labels, type NetworkRef, type Reservation } from "../api/ipam.ts";
import type { IPBlock } from "../api/ipam.ts";
import { contains, formatCidr, formatIp, formatWithPrefix, type Ip, parseIp } from "../net/ip.ts";
import type { Family } from "../net/ip.ts";
import {
  AddressInUse,
  AddressNotAllowed,
  InvalidAddressRequest,
  type IpamError,
  IpamStorageError,
  PoolExhausted,
  TooMuchContention,
} from "./errors.ts";
import {
  blockCidr,
  blockIndexOf,
  type FamilyPlan,
  lowestFree,
  offsetInBlock,
  planFamily,
  poolBlockRange,
  poolCapacity,
  type PoolOptions,
  type TakenOffsets,
} from "./plan.ts";
import type { IpamMetrics } from "./metrics.ts";
import { BlockRace, BlockStore, type BlockStoreFailure } from "./store.ts";

export interface IpamNetwork {
  readonly ref: NetworkRef;
  readonly options: PoolOptions;
}

export interface Owner {
  readonly namespace: string;
  readonly pod: string;
  readonly podUid: string;
  readonly sandbox: string;
  readonly iface: string;
  readonly node: string;
}

export type AddressRequest = { readonly kind: "dynamic" } | { readonly kind: "static"; readonly ip: Ip };

/** Per family: an address with the network's prefix ("10.0.0.5/24"), or "none" when asked for none. */
export interface AllocationResult {
  readonly v4?: string;
  readonly v6?: string;
}

export const networkLabel = (ref: NetworkRef): string =>
  ref.namespace ? `${ref.kind} ${ref.namespace}/${ref.name}` : `${ref.kind} ${ref.name}`;

const ownerKey = (o: { podUid: string; iface: string }) => `${o.podUid}/${o.iface}`;

export function blockName(ref: NetworkRef, family: Family, index: bigint): string {
  return `${ref.uid}-${family}-${index.toString(16)}`;
}

/**
 * Decodes a pod's `ip` / `ip6` value: undefined or "" → nothing asked; "none" → "none"; "dynamic";
 * or a static address, with or without a prefix (DANM ignores the prefix and uses the network's).
 */
export function parseAddressRequest(
  network: string,
  field: "ip" | "ip6",
  text: string | undefined,
): AddressRequest | "none" | undefined | InvalidAddressRequest {
  if (text === undefined || text === "") return undefined;
  if (text === "none") return "none";
  if (text === "dynamic") return { kind: "dynamic" };
  const family: Family = field === "ip" ? 4 : 6;
  const ip = parseIp(text.split("/")[0]);
  if (!ip || ip.family !== family) {
    return new InvalidAddressRequest({
      network,
      field,
      value: text,
      reason: `expected "dynamic", "none" or an IPv${family} address`,
    });
  }
  return { kind: "static", ip };
}

interface ReserveOp {
  readonly type: "reserve";
  readonly owner: Owner;
  readonly request: AddressRequest;
  readonly plan: FamilyPlan;
  attempts: number;
  readonly done: Deferred.Deferred<string, IpamError>;
}

interface ReleaseOp {
  readonly type: "release";
  readonly owner: Owner;
  attempts: number;
  readonly done: Deferred.Deferred<number, IpamError>;
}

/** Only loads the lane's blocks (usage of a network this node has not allocated on since it started). */
interface LoadOp {
  readonly type: "load";
  readonly done: Deferred.Deferred<void, IpamError>;
}

/** What goes into a block write. */
type WriteOp = ReserveOp | ReleaseOp;
type Op = WriteOp | LoadOp;

interface Lane {
  readonly ref: NetworkRef;
  readonly family: Family;
  readonly label: string;
  readonly queue: Queue.Queue<Op>;
  readonly blocks: Map<bigint, IPBlock>;
  /** ownerKey → where its reservation sits, for idempotent ADD and DEL without scanning. */
  readonly owners: Map<string, { index: bigint; offset: number }>;
  /**
   * Stored blocks known to have no address left for dynamic allocation from the pool `fullPool`: a busy node
   * has hundreds of full blocks, and rescanning them for every request was most of the allocator's CPU.
   * A block leaves the set whenever it is replaced (a write, a re-read) or the pool changes.
   */
  readonly full: Set<bigint>;
  fullPool: string;
  /** Node name → the stored blocks it opened: a node looks at its own blocks first, without a pass over all. */
  readonly byNode: Map<string, Set<bigint>>;
  loaded: boolean;
  /** Block creations this lane lost: each moves the next new block to a fresh position (see chooseDynamic). */
  lostCreates: number;
  /** The pool as last asked for (usage reports its capacity). */
  plan?: FamilyPlan;
}

export interface IpamOptions {
  /** Decides whether a reservation's pod is really gone (static address take-over). Default: never. */
  readonly ownerGone?: (r: Reservation) => Effect.Effect<boolean>;
  readonly maxAttempts?: number;
  readonly now?: () => string;
  /** Where allocations, releases, block writes and conflicts are counted. */
  readonly metrics?: IpamMetrics;
}

/** One network and family the allocator works on, as `usage` reports it. */
export interface PoolUsage {
  readonly ref: NetworkRef;
  readonly family: Family;
  /** Addresses dynamic allocation can hand out. */
  readonly capacity: bigint;
  /** Reservations held for pods of the node asked about. */
  readonly reserved: number;
}

export class Ipam extends Context.Service<Ipam, {
  /** Reserves what the pod asked for on this network, both families or neither. */
  readonly allocate: (
    network: IpamNetwork,
    owner: Owner,
    ip: string | undefined,
    ip6: string | undefined,
  ) => Effect.Effect<AllocationResult, IpamError>;
  /** Frees whatever `owner` (pod UID + interface + sandbox) holds on this network. Returns how many. */
  readonly release: (network: IpamNetwork, owner: Owner) => Effect.Effect<number, IpamError>;
  /** Counters since start, for metrics and benchmarks. */
  readonly stats: () => IpamStats;
  /**
   * Loads the network's blocks if this allocator has not yet (after a restart, before the first request on it), so
   * that `usage` covers it.
   */
  readonly track: (network: IpamNetwork) => Effect.Effect<void, IpamError>;
  /** Per network and family this allocator has loaded: capacity and the reservations `node`'s pods hold. */
  readonly usage: (node: string) => ReadonlyArray<PoolUsage>;
}>()("danm/core/ipam/Ipam") {}

export interface IpamStats {
  /** Batches committed by the lane workers. */
  batches: number;
  /** Operations (reserve + release) in those batches. */
  ops: number;
  /** Block writes that succeeded. */
  writes: number;
  /** Block writes that lost a compare-and-swap race against another writer. */
  conflicts: number;
  /** Block creations another node won first. */
  lostCreates: number;
}

const familyLabel = (f: Family) => (f === 4 ? "IPv4" : "IPv6");

/** FNV-1a: a stable spread of node names over a pool's blocks. */
function nodeHash(node: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < node.length; i++) h = Math.imul(h ^ node.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

const compareBigint = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

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

function sameOwner(r: Reservation, o: Owner): boolean {
  return r.podUid === o.podUid && r.iface === o.iface;
}

export const makeIpam = (options: IpamOptions = {}) =>
  Effect.gen(function* () {
    const store = yield* BlockStore;
    const maxAttempts = options.maxAttempts ?? 12;
    // Whole seconds: the reclaimer's grace period needs no more, and every reservation line carries it.
    const now = options.now ?? (() => new Date().toISOString().replace(/\.\d+Z$/, "Z"));
    const ownerGone = options.ownerGone ?? (() => Effect.succeed(false));
    const lanes = new Map<string, Lane>();
    const stats: IpamStats = { batches: 0, ops: 0, writes: 0, conflicts: 0, lostCreates: 0 };
    const metrics = options.metrics;
    const scope = yield* Effect.scope;

    const setBlock = (lane: Lane, index: bigint, block: IPBlock | undefined) => {
      lane.full.delete(index);
      const old = lane.blocks.get(index);
      if (old?.spec.node !== block?.spec.node) {
        if (old?.spec.node !== undefined) lane.byNode.get(old.spec.node)?.delete(index);
        if (block?.spec.node !== undefined) {
          const mine = lane.byNode.get(block.spec.node) ?? new Set();
          lane.byNode.set(block.spec.node, mine.add(index));
        }
      }
      // Only entries that changed touch the owner index: after our own write, the unchanged ones are the very
      // objects of the cached block (the store hands back the block as sent), and a block holds up to 2^blockBits.
      const before = old?.spec.reservations ?? {}, after = block?.spec.reservations ?? {};
      for (const off in before) {
        const r = before[off];
        if (after[off] === r) continue;
        const k = ownerKey(r);
        const at = lane.owners.get(k);
        if (at && at.index === index && at.offset === Number(off)) lane.owners.delete(k);
      }
      if (!block) {
        lane.blocks.delete(index);
        return;
      }
      lane.blocks.set(index, block);
      for (const off in after) {
        if (before[off] !== after[off]) lane.owners.set(ownerKey(after[off]), { index, offset: Number(off) });
      }
    };

    /**
     * planFamily per network options object: the daemon's networks come from informer caches, so the same options
     * object serves every ADD on a network, and parsing its CIDRs per request was a tenth of the allocator's garbage.
     */
    const plans = new WeakMap<PoolOptions, Map<Family, ReturnType<typeof planFamily>>>();
    const planOf = (options: PoolOptions, family: Family) => {
      let byFamily = plans.get(options);
      if (!byFamily) plans.set(options, byFamily = new Map());
      let planned = byFamily.get(family);
      if (!planned) byFamily.set(family, planned = planFamily(options, family));
      return planned;
    };

    const storageError = (lane: Lane, operation: string) => (e: BlockStoreFailure) =>
      new IpamStorageError({ network: lane.label, operation, cause: e.message });

    const indexOfBlock = (lane: Lane, b: IPBlock): bigint | undefined => {
      const name = b.metadata.name ?? "";
      const prefix = `${lane.ref.uid}-${lane.family}-`;
      return name.startsWith(prefix) ? BigInt(`0x${name.slice(prefix.length)}`) : undefined;
    };

    const load = (lane: Lane) =>
      Effect.gen(function* () {
        const all = yield* store.listNetwork(lane.ref.uid).pipe(Effect.mapError(storageError(lane, "list IPBlocks")));
        for (const b of all) {
          const index = indexOfBlock(lane, b);
          if (index !== undefined) setBlock(lane, index, b);
        }
        lane.loaded = true;
      });

    /** One batch: plan every op against a working copy of the touched blocks, then write each block once. */
    const processBatch = (lane: Lane, batch: ReadonlyArray<Op>) =>
      Effect.gen(function* () {
        stats.batches++;
        stats.ops += batch.length;
        if (!lane.loaded) {
          const loaded = yield* Effect.result(load(lane));
          if (loaded._tag === "Failure") {
            for (const op of batch) yield* failOp(op, loaded.failure);
            return;
          }
        }
        interface Work {
          readonly base: IPBlock | undefined;
          readonly reservations: Record<string, Reservation>;
          readonly ops: WriteOp[];
          node?: string;
        }
        const work = new Map<bigint, Work>();
        const getWork = (index: bigint): Work => {
          let w = work.get(index);
          if (!w) {
            const base = lane.blocks.get(index);
            w = { base, reservations: { ...(base?.spec.reservations ?? {}) }, ops: [] };
            work.set(index, w);
          }
          return w;
        };
        const taken = (index: bigint): TakenOffsets => {
          const rs = work.get(index)?.reservations ?? lane.blocks.get(index)?.spec.reservations ?? {};
          return { has: (offset) => rs[offset] !== undefined };
        };
        /** Reservations made in this batch: not in `lane.owners` until their block is written. */
        const batchOwners = new Map<string, { index: bigint; offset: number }>();
        const put = (index: bigint, offset: number, r: Reservation) => {
          getWork(index).reservations[offset] = r;
          batchOwners.set(ownerKey(r), { index, offset });
        };
        /** Blocks of this batch's working copies with nothing left; a release in the batch takes its block out. */
        const fullInBatch = new Set<bigint>();
        const unset = (index: bigint, offset: number) => {
          delete getWork(index).reservations[offset];
          fullInBatch.delete(index);
          openBlocks.clear(); // a full block may have room again
        };
        /** The lowest free pool address of block i, skipping blocks already known to be full. */
        const freeIn = (plan: FamilyPlan, pool: string, i: bigint): bigint | undefined => {
          if (work.has(i)) {
            if (fullInBatch.has(i)) return undefined;
            const v = lowestFree(plan, i, taken(i));
            if (v === undefined) fullInBatch.add(i);
            return v;
          }
          if (lane.fullPool !== pool) {
            lane.full.clear();
            lane.fullPool = pool;
          }
          if (lane.full.has(i)) return undefined;
          const v = lowestFree(plan, i, taken(i));
          if (v === undefined) lane.full.add(i);
          return v;
        };
        const locate = (o: Owner): { index: bigint; offset: number; r: Reservation } | undefined => {
          const k = ownerKey(o);
          const candidates = [batchOwners.get(k), lane.owners.get(k)].filter((c) => c !== undefined);
          for (const c of candidates) {
            const r = (work.get(c.index)?.reservations ?? lane.blocks.get(c.index)?.spec.reservations ?? {})[c.offset];
            if (r && sameOwner(r, o)) return { ...c, r };
          }
          return undefined;
        };
        const attach = (op: WriteOp, index: bigint) => {
          const w = getWork(index);
          if (!w.ops.includes(op)) w.ops.push(op);
        };
        const assigned = new Map<ReserveOp, bigint>();
        const released = new Map<ReleaseOp, number>();
        const reservation = (o: Owner, isStatic: boolean): Reservation => ({
          pod: `${o.namespace}/${o.pod}`,
          podUid: o.podUid,
          sandbox: o.sandbox,
          iface: o.iface,
          node: o.node,
          ...(isStatic ? { static: true } : {}),
          since: now(),
        });

        /** Per node and pool: its blocks that may have room, lowest first, built once per batch (not per op). */
        const openBlocks = new Map<string, bigint[]>();
        let lastPlan: FamilyPlan | undefined, lastPool = "";
        const poolOf = (plan: FamilyPlan) => {
          if (!lastPlan || !samePool(lastPlan, plan)) [lastPlan, lastPool] = [plan, poolKey(plan)];
          return lastPool;
        };

        const chooseDynamic = (op: ReserveOp): bigint | undefined => {
          const plan = op.plan;
          const pool = poolOf(plan);
          const { first, last } = poolBlockRange(plan);
          const nodeOf = (i: bigint) => work.get(i)?.node ?? lane.blocks.get(i)?.spec.node;
          const openKey = `${op.owner.node}\n${pool}`;
          let open = openBlocks.get(openKey);
          if (!open) {
            // Full blocks are skipped without sorting them in: a busy node has hundreds.
            const mine = new Set(lane.byNode.get(op.owner.node));
            for (const [i, w] of work) if ((w.node ?? w.base?.spec.node) === op.owner.node) mine.add(i);
            open = [];
            for (const i of mine) {
              if (i < first || i > last) continue;
              if (work.has(i) ? !fullInBatch.has(i) : !(lane.fullPool === pool && lane.full.has(i))) open.push(i);
            }
            open.sort(compareBigint);
            openBlocks.set(openKey, open);
          }
          for (const i of open) {
            const v = freeIn(plan, pool, i);
            if (v !== undefined) return v;
          }
          // Open a new block. Alone on the network, a node takes the lowest block that does not exist yet
          // (DANM's lowest-first order). Once other nodes are known to allocate here, it starts looking at a
          // position derived from its name, so nodes filling up at the same moment do not race for one block.
          const others = [...lane.byNode].some(([node, blocks]) => node !== op.owner.node && blocks.size > 0);
          // The spread covers the pool but at most 4096 blocks (256 Ki addresses): room enough to keep racing
          // nodes apart, and addresses in a huge IPv6 pool stay near its start.
          const window = last - first + 1n < 4096n ? last - first + 1n : 4096n;
          // After a lost create, jump to a fresh position rather than walking into the winner's region, where every
          // step would lose again (the lane only learns of other nodes' blocks by losing).
          const start = others ? first + (BigInt(nodeHash(`${op.owner.node}#${lane.lostCreates}`)) % window) : first;
          const fresh: Array<[bigint, bigint]> = [];
          for (const [from, to] of [[start, last], [first, start - 1n]] as const) {
            for (let i = from; i <= to && fresh.length === 0; i++) {
              if (lane.blocks.has(i) || work.has(i)) continue;
              const v = lowestFree(plan, i, new Set());
              if (v !== undefined) fresh.push([i, v]);
            }
          }
          if (fresh.length > 0) {
            const [i, v] = fresh[0];
            getWork(i).node = op.owner.node;
            open.push(i); // every block before it is full: the list stays lowest-first among those with room
            return v;
          }
          const known = new Set<bigint>(lane.blocks.keys());
          for (const i of work.keys()) known.add(i);
          const sorted = [...known].filter((i) => i >= first && i <= last && nodeOf(i) !== op.owner.node);
          for (const i of sorted.sort(compareBigint)) {
            const v = freeIn(plan, pool, i);
            if (v !== undefined) return v;
          }
          return undefined;
        };

        for (const op of batch) {
          if (op.type === "load") continue;
          if (op.type === "release") {
            const at = locate(op.owner);
            if (!at || at.r.sandbox !== op.owner.sandbox) {
              released.set(op, 0);
              continue;
            }
            unset(at.index, at.offset);
            attach(op, at.index);
            released.set(op, 1);
            continue;
          }
          const plan = op.plan;
          lane.plan = plan;
          const existing = locate(op.owner);
          if (existing) {
            const existingValue = plan.network.base + (existing.index << BigInt(plan.blockBits)) +
              BigInt(existing.offset);
            if (op.request.kind === "dynamic" || op.request.ip.value === existingValue) {
              if (existing.r.sandbox !== op.owner.sandbox || existing.r.node !== op.owner.node) {
                put(existing.index, existing.offset, {
                  ...existing.r,
                  sandbox: op.owner.sandbox,
                  node: op.owner.node,
                });
                attach(op, existing.index);
              }
              assigned.set(op, existingValue);
              continue;
            }
            // The pod now asks for another static address: give up the old one in the same commit.
            unset(existing.index, existing.offset);
            attach(op, existing.index);
          }
          let value: bigint | undefined;
          if (op.request.kind === "static") {
            const ip = op.request.ip;
            const text = formatIp(ip);
            if (!contains(plan.network, ip)) {
              yield* failOp(
                op,
                new AddressNotAllowed({
                  network: lane.label,
                  address: text,
                  reason: `outside the network ${formatCidr(plan.network)}`,
                }),
              );
              continue;
            }
            if (plan.reserved.has(ip.value)) {
              yield* failOp(
                op,
                new AddressNotAllowed({
                  network: lane.label,
                  address: text,
                  reason: "it is the network or broadcast address or a route gateway",
                }),
              );
              continue;
            }
            const index = blockIndexOf(plan, ip.value), offset = offsetInBlock(plan, ip.value);
            const holder = (work.get(index)?.reservations ?? lane.blocks.get(index)?.spec.reservations ?? {})[offset];
            if (holder && !sameOwner(holder, op.owner)) {
              const samePod = holder.pod === `${op.owner.namespace}/${op.owner.pod}`;
              if (!(samePod && (yield* ownerGone(holder)))) {
                yield* failOp(op, new AddressInUse({ network: lane.label, address: text, holder: holder.pod }));
                continue;
              }
            }
            value = ip.value;
          } else {
            value = chooseDynamic(op);
            if (value === undefined) {
              yield* failOp(op, new PoolExhausted({ network: lane.label, family: lane.family }));
              continue;
            }
          }
          const index = blockIndexOf(plan, value);
          put(index, offsetInBlock(plan, value), reservation(op.owner, op.request.kind === "static"));
          attach(op, index);
          assigned.set(op, value);
        }

        // Ops that needed no write are done now.
        const waiting = new Set<WriteOp>();
        for (const w of work.values()) for (const op of w.ops) waiting.add(op);
        for (const [op, value] of assigned) {
          if (!waiting.has(op)) {
            yield* Deferred.succeed(op.done, formatWithPrefix({ family: lane.family, value }, op.plan.network.prefix));
          }
        }
        for (const [op, n] of released) {
          if (!waiting.has(op)) yield* Deferred.succeed(op.done, n);
        }
        for (const op of batch) if (op.type === "load") yield* Deferred.succeed(op.done, undefined);

        const failedOps = new Set<WriteOp>();
        const retryOps = new Set<WriteOp>();
        // Ops whose block another node created first: no contention on data, the retry just picks another block.
        const lostCreate = new Set<WriteOp>();
        yield* Effect.forEach([...work.entries()].filter(([, w]) => w.ops.length > 0), ([index, w]) =>
          Effect.gen(function* () {
            const plan = (w.ops.find((o): o is ReserveOp => o.type === "reserve")?.plan) ?? undefined;
            const base = w.base;
            // A block whose last reservation goes is deleted, so released pools leave no objects behind.
            const write: Effect.Effect<IPBlock | undefined, BlockRace | BlockStoreFailure> = !base
              ? store.create(newBlock(lane, index, w.reservations, w.node, plan))
              : Object.keys(w.reservations).length === 0
              ? Effect.as(store.remove(base), undefined)
              : store.update({ ...base, spec: { ...base.spec, reservations: w.reservations } });
            const result = yield* Effect.result(write);
            if (result._tag === "Success") {
              stats.writes++;
              metrics?.blockWrites.inc();
              setBlock(lane, index, result.success);
              return;
            }
            const err = result.failure;
            if (err instanceof BlockRace) {
              if (err.kind === "exists") {
                stats.lostCreates++;
                lane.lostCreates++;
              } else stats.conflicts++;
              metrics?.conflicts.inc({ kind: err.kind });
              const fresh = yield* Effect.result(
                store.get(base?.metadata.name ?? blockName(lane.ref, lane.family, index)),
              );
              // A read that failed (apiserver away) tells nothing: the stale copy stays, so the retry conflicts and
              // reads again. Dropping it would make the block's reservations look gone — a release would then
              // "succeed" freeing nothing.
              if (fresh._tag === "Success") {
                setBlock(lane, index, fresh.success);
              }
              for (const op of w.ops) {
                retryOps.add(op);
                if (err.kind === "exists" && fresh._tag === "Success") {
                  lostCreate.add(op);
                }
              }
              return;
            }
            for (const op of w.ops) {
              failedOps.add(op);
              yield* failOp(op, storageError(lane, `write IPBlock`)(err));
            }
          }), { concurrency: "unbounded", discard: true });

        for (const op of waiting) {
          if (failedOps.has(op)) {
            continue;
          }
          if (lostCreate.has(op)) {
            // Not counted against maxAttempts: every lost create adds a block to the cache, so it is bounded.
            yield* Queue.offer(lane.queue, op);
            continue;
          }
          if (retryOps.has(op)) {
            op.attempts++;
            if (op.attempts >= maxAttempts) {
              yield* failOp(op, new TooMuchContention({ network: lane.label, attempts: op.attempts }));
            } else {
              // Jittered backoff so that racing nodes spread out, then back into the lane.
              const delay = Math.min(200, 2 ** op.attempts) * (0.5 + Math.random());
              yield* Effect.forkIn(Effect.delay(Queue.offer(lane.queue, op), `${delay} millis`), scope);
            }
            continue;
          }
          if (op.type === "reserve") {
            const value = assigned.get(op)!;
            yield* Deferred.succeed(op.done, formatWithPrefix({ family: lane.family, value }, op.plan.network.prefix));
          } else {
            yield* Deferred.succeed(op.done, released.get(op) ?? 0);
          }
        }
      });

    const failOp = (op: Op, e: IpamError): Effect.Effect<boolean> =>
      op.type === "reserve"
        ? Deferred.fail(op.done, e)
        : op.type === "release"
        ? Deferred.fail(op.done, e)
        : Deferred.fail(op.done, e);

    const newBlock = (
      lane: Lane,
      index: bigint,
      reservations: Record<string, Reservation>,
      node: string | undefined,
      plan: FamilyPlan | undefined,
    ): IPBlock => {
      const p = plan ?? planFamily({}, lane.family).plan;
      const cidr = p ? formatCidr(blockCidr(p, index)) : "";
      const blockLabels: Record<string, string> = {
        [labels.networkUid]: lane.ref.uid,
        [labels.networkKind]: lane.ref.kind,
        [labels.family]: familyLabel(lane.family),
      };
      if (lane.ref.name.length <= 63) {
        blockLabels[labels.networkName] = lane.ref.name;
      }
      if (lane.ref.namespace) {
        blockLabels[labels.networkNamespace] = lane.ref.namespace;
      }
      return {
        apiVersion: "danm.io/v1",
        kind: "IPBlock",
        metadata: { name: blockName(lane.ref, lane.family, index), labels: blockLabels },
        spec: {
          network: lane.ref,
          family: familyLabel(lane.family),
          cidr,
          ...(node ? { node } : {}),
          reservations,
        },
      };
    };

    const laneFor = (ref: NetworkRef, family: Family): Effect.Effect<Lane> => {
      const existing = lanes.get(`${ref.uid}/${family}`);
      return existing ? Effect.succeed(existing) : openLane(ref, family);
    };

    const openLane = (ref: NetworkRef, family: Family) =>
      Effect.gen(function* () {
        const key = `${ref.uid}/${family}`;
        const lane: Lane = {
          ref,
          family,
          label: networkLabel(ref),
          queue: yield* Queue.unbounded<Op>(),
          blocks: new Map(),
          owners: new Map(),
          full: new Set(),
          fullPool: "",
          byNode: new Map(),
          lostCreates: 0,
          loaded: false,
        };
        lanes.set(key, lane);
        yield* Effect.forkIn(
          Effect.forever(Effect.flatMap(Queue.takeAll(lane.queue), (batch) =>
            processBatch(lane, batch))),
          scope,
        );
        return lane;
      });

    const reserveFamily = (network: IpamNetwork, owner: Owner, family: Family, request: AddressRequest) =>
      Effect.gen(function* () {
        const label = networkLabel(network.ref);
        const { plan, problem } = planOf(network.options, family);
        if (problem) {
          return yield* new InvalidAddressRequest({
            network: label,
            field: problem.field,
            value: "",
            reason: problem.message,
          });
        }
        if (!plan) {
          return yield* new InvalidAddressRequest({
            network: label,
            field: family === 4 ? "ip" : "ip6",
            value: request.kind === "dynamic" ? "dynamic" : formatIp(request.ip),
            reason: `the network has no ${
              family === 4 ? "cidr" : "net6"
            }: an IPv${family} address cannot be allocated on an L2 network`,
          });
        }
        const lane = yield* laneFor(network.ref, family);
        const done = yield* Deferred.make<string, IpamError>();
        yield* Queue.offer(lane.queue, { type: "reserve", owner, request, plan, attempts: 0, done });
        const address = yield* Deferred.await(done);
        metrics?.allocations.inc({ family: String(family) });
        return address;
      });

    const releaseFamily = (network: IpamNetwork, owner: Owner, family: Family) =>
      Effect.gen(function* () {
        const lane = yield* laneFor(network.ref, family);
        const done = yield* Deferred.make<number, IpamError>();
        yield* Queue.offer(lane.queue, { type: "release", owner, attempts: 0, done });
        const n = yield* Deferred.await(done);
        if (n > 0) metrics?.releases.inc({ family: String(family) }, n);
        return n;
      });

    const release = (network: IpamNetwork, owner: Owner) =>
      Effect.all([releaseFamily(network, owner, 4), releaseFamily(network, owner, 6)], { concurrency: 2 }).pipe(
        Effect.map(([a, b]) => a + b),
      );

    const allocateTimed = (network: IpamNetwork, owner: Owner, ip: string | undefined, ip6: string | undefined) => {
      if (!metrics) return allocate(network, owner, ip, ip6);
      const started = performance.now();
      return allocate(network, owner, ip, ip6).pipe(
        Effect.onExit((exit) =>
          Effect.sync(() =>
            metrics.allocationDuration.observe((performance.now() - started) / 1000, {
              result: exit._tag === "Success"
                ? "success"
                : exit.cause.reasons.find((r) => r._tag === "Fail")?.error._tag ?? "interrupted",
            })
          )
        ),
      );
    };

    const track = (network: IpamNetwork) =>
      Effect.forEach([4, 6] as const, (family) =>
        Effect.gen(function* () {
          const { plan } = planOf(network.options, family);
          if (!plan) return;
          const lane = yield* laneFor(network.ref, family);
          lane.plan ??= plan;
          if (lane.loaded) return;
          const done = yield* Deferred.make<void, IpamError>();
          yield* Queue.offer(lane.queue, { type: "load", done });
          yield* Deferred.await(done);
        }), { discard: true });

    const usage = (node: string): PoolUsage[] => {
      const out: PoolUsage[] = [];
      for (const lane of lanes.values()) {
        if (!lane.loaded || !lane.plan) continue;
        let reserved = 0;
        for (const b of lane.blocks.values()) {
          const rs = b.spec.reservations;
          for (const off in rs) if (rs[off].node === node) reserved++;
        }
        out.push({ ref: lane.ref, family: lane.family, capacity: poolCapacity(lane.plan), reserved });
      }
      return out;
    };

    const allocate = (network: IpamNetwork, owner: Owner, ip: string | undefined, ip6: string | undefined) =>
      Effect.gen(function* () {
        const label = networkLabel(network.ref);
        const r4 = parseAddressRequest(label, "ip", ip), r6 = parseAddressRequest(label, "ip6", ip6);
        if (r4 instanceof InvalidAddressRequest) return yield* r4;
        if (r6 instanceof InvalidAddressRequest) return yield* r6;
        const asked4 = r4 !== undefined && r4 !== "none", asked6 = r6 !== undefined && r6 !== "none";
        if (!asked4 || !asked6) {
          // At most one family to reserve (the common case): nothing to give back if it fails, no fibers to fork.
          const result: { v4?: string; v6?: string } = {};
          if (r4 !== undefined) result.v4 = asked4 ? yield* reserveFamily(network, owner, 4, r4) : "none";
          if (r6 !== undefined) result.v6 = asked6 ? yield* reserveFamily(network, owner, 6, r6) : "none";
          return result as AllocationResult;
        }
        const want = (r: AddressRequest | "none" | undefined, f: Family) =>
          r === undefined
            ? Effect.succeed(undefined)
            : r === "none"
            ? Effect.succeed("none")
            : reserveFamily(network, owner, f, r);
        const [a4, a6] = yield* Effect.all([Effect.result(want(r4, 4)), Effect.result(want(r6, 6))], {
          concurrency: 2,
        });
        if (a4._tag === "Failure" || a6._tag === "Failure") {
          // Both families or neither: give back what the other family got.
          if (a4._tag === "Success" && a4.success && a4.success !== "none") {
            yield* Effect.ignore(releaseFamily(network, owner, 4));
          }
          if (a6._tag === "Success" && a6.success && a6.success !== "none") {
            yield* Effect.ignore(releaseFamily(network, owner, 6));
          }
          return yield* (a4._tag === "Failure" ? a4.failure : (a6 as { failure: IpamError }).failure);
        }
        const result: { v4?: string; v6?: string } = {};
        if (a4.success !== undefined) result.v4 = a4.success;
        if (a6.success !== undefined) result.v6 = a6.success;
        return result as AllocationResult;
      });

    return Ipam.of({ allocate: allocateTimed, release, stats: () => ({ ...stats }), track, usage });
  });

export const ipamLayer = (options: IpamOptions = {}): Layer.Layer<Ipam, never, BlockStore> =>
  Layer.effect(Ipam, makeIpam(options));
