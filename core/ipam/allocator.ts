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
import { Clock, Context, Deferred, Effect, Layer, Queue, type Scope } from "effect";
import { labels, type NetworkRef, type Reservation } from "../api/ipam.ts";
import type { IPBlock } from "../api/ipam.ts";
import { formatCidr, formatIp, formatWithPrefix, parseIp } from "../net/ip.ts";
import type { Family } from "../net/ip.ts";
import {
  type AddressRequest,
  BatchPlan,
  type BlockCache,
  type BlockWork,
  cacheBlock,
  emptyCache,
  type Owner,
} from "./batch.ts";
import { AddressInUse, InvalidAddressRequest, type IpamError, IpamStorageError, TooMuchContention } from "./errors.ts";
import { blockCidr, type FamilyPlan, planFamily, poolCapacity, type PoolOptions } from "./plan.ts";
import type { IpamMetrics } from "./metrics.ts";
import { BlockRace, BlockStore, type BlockStoreFailure } from "./store.ts";

export interface IpamNetwork {
  readonly ref: NetworkRef;
  readonly options: PoolOptions;
}

export type { AddressRequest, Owner } from "./batch.ts";

/** Per family: an address with the network's prefix ("10.0.0.5/24"), or "none" when asked for none. */
export interface AllocationResult {
  readonly v4?: string;
  readonly v6?: string;
}

export const networkLabel = (ref: NetworkRef): string =>
  ref.namespace ? `${ref.kind} ${ref.namespace}/${ref.name}` : `${ref.kind} ${ref.name}`;

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

/** One network and family: its queue of requests and what it knows of the stored blocks. */
interface Lane extends BlockCache {
  readonly ref: NetworkRef;
  readonly queue: Queue.Queue<Op>;
  loaded: boolean;
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

/** What a lane's worker uses besides the lane: the store, the counters, the clock and the retry policy. */
interface Worker {
  readonly store: BlockStore["Service"];
  readonly stats: IpamStats;
  readonly metrics: IpamMetrics | undefined;
  readonly maxAttempts: number;
  /** The `since` of reservations made now. */
  readonly now: Effect.Effect<string>;
  readonly ownerGone: (r: Reservation) => Effect.Effect<boolean>;
  /** Where delayed retries run. */
  readonly scope: Scope.Scope;
}

const storageError = (lane: Lane, operation: string) => (e: BlockStoreFailure) =>
  new IpamStorageError({ network: lane.label, operation, cause: e.message });

const failOp = (op: Op, e: IpamError): Effect.Effect<boolean> =>
  op.type === "reserve"
    ? Deferred.fail(op.done, e)
    : op.type === "release"
    ? Deferred.fail(op.done, e)
    : Deferred.fail(op.done, e);

/** The address a reservation hands out: with the network's prefix ("10.0.0.5/24"). */
const addressOf = (lane: Lane, op: ReserveOp, value: bigint) =>
  formatWithPrefix({ family: lane.family, value }, op.plan.network.prefix);

const indexOfBlock = (lane: Lane, b: IPBlock): bigint | undefined => {
  const name = b.metadata.name ?? "";
  const prefix = `${lane.ref.uid}-${lane.family}-`;
  return name.startsWith(prefix) ? BigInt(`0x${name.slice(prefix.length)}`) : undefined;
};

const loadLane = (worker: Worker, lane: Lane) =>
  Effect.gen(function* () {
    const all = yield* worker.store.listNetwork(lane.ref.uid).pipe(
      Effect.mapError(storageError(lane, "list IPBlocks")),
    );
    for (const b of all) {
      const index = indexOfBlock(lane, b);
      if (index !== undefined) cacheBlock(lane, index, b);
    }
    lane.loaded = true;
  });

function newBlock(
  lane: Lane,
  index: bigint,
  reservations: Record<string, Reservation>,
  node: string | undefined,
  plan: FamilyPlan | undefined,
): IPBlock {
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
}

/** A batch planned: the blocks to write, and what each request got (pure planning: batch.ts). */
interface Planned {
  readonly work: ReadonlyMap<bigint, BlockWork<WriteOp>>;
  readonly assigned: ReadonlyMap<ReserveOp, bigint>;
  readonly released: ReadonlyMap<ReleaseOp, number>;
}

/** Plans every request of `batch` in queue order; a refused request fails at once. */
const planBatch = (worker: Worker, lane: Lane, batch: ReadonlyArray<Op>) =>
  Effect.gen(function* () {
    const since = yield* worker.now;
    const plan = new BatchPlan<WriteOp>(lane, () => since);
    const assigned = new Map<ReserveOp, bigint>();
    const released = new Map<ReleaseOp, number>();
    for (const op of batch) {
      if (op.type === "load") continue;
      if (op.type === "release") {
        released.set(op, plan.release(op, op.owner));
        continue;
      }
      const step = plan.reserve(op, op.owner, op.request, op.plan);
      if (step._tag === "Assigned") assigned.set(op, step.value);
      else if (step._tag === "Refused") yield* failOp(op, step.error);
      else if (yield* worker.ownerGone(step.holder)) {
        plan.claim(op, op.owner, op.plan, step.value, true);
        assigned.set(op, step.value);
      } else {
        yield* failOp(op, new AddressInUse({ network: lane.label, address: step.address, holder: step.holder.pod }));
      }
    }
    return { work: plan.work, assigned, released } satisfies Planned;
  });

/** How a batch's block writes went, per request. */
interface Commits {
  readonly failed: Set<WriteOp>;
  readonly retry: Set<WriteOp>;
  /** Requests whose block another node created first: no contention on data, the retry just picks another block. */
  readonly lostCreate: Set<WriteOp>;
}

/** Writes one block's working copy; on a lost race the block is re-read and its requests marked for retry. */
const commitBlock = (worker: Worker, lane: Lane, index: bigint, w: BlockWork<WriteOp>, commits: Commits) =>
  Effect.gen(function* () {
    const { store, stats, metrics } = worker;
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
      cacheBlock(lane, index, result.success);
      return;
    }
    const err = result.failure;
    if (err instanceof BlockRace) {
      if (err.kind === "exists") {
        stats.lostCreates++;
        lane.lostCreates++;
      } else stats.conflicts++;
      metrics?.conflicts.inc({ kind: err.kind });
      const fresh = yield* Effect.result(store.get(base?.metadata.name ?? blockName(lane.ref, lane.family, index)));
      // A read that failed (apiserver away) tells nothing: the stale copy stays, so the retry conflicts and
      // reads again. Dropping it would make the block's reservations look gone — a release would then
      // "succeed" freeing nothing.
      if (fresh._tag === "Success") {
        cacheBlock(lane, index, fresh.success);
      }
      for (const op of w.ops) {
        commits.retry.add(op);
        if (err.kind === "exists" && fresh._tag === "Success") {
          commits.lostCreate.add(op);
        }
      }
      return;
    }
    for (const op of w.ops) {
      commits.failed.add(op);
      yield* failOp(op, storageError(lane, `write IPBlock`)(err));
    }
  });

/** After the writes: each waiting request answered, or queued again (lost create), or retried after a backoff. */
const settle = (worker: Worker, lane: Lane, waiting: ReadonlySet<WriteOp>, planned: Planned, commits: Commits) =>
  Effect.gen(function* () {
    for (const op of waiting) {
      if (commits.failed.has(op)) {
        continue;
      }
      if (commits.lostCreate.has(op)) {
        // Not counted against maxAttempts: every lost create adds a block to the cache, so it is bounded.
        yield* Queue.offer(lane.queue, op);
        continue;
      }
      if (commits.retry.has(op)) {
        op.attempts++;
        if (op.attempts >= worker.maxAttempts) {
          yield* failOp(op, new TooMuchContention({ network: lane.label, attempts: op.attempts }));
        } else {
          // Jittered backoff so that racing nodes spread out, then back into the lane.
          const delay = Math.min(200, 2 ** op.attempts) * (0.5 + Math.random());
          yield* Effect.forkIn(Effect.delay(Queue.offer(lane.queue, op), `${delay} millis`), worker.scope);
        }
        continue;
      }
      if (op.type === "reserve") {
        yield* Deferred.succeed(op.done, addressOf(lane, op, planned.assigned.get(op)!));
      } else {
        yield* Deferred.succeed(op.done, planned.released.get(op) ?? 0);
      }
    }
  });

/** One batch: plan every op against a working copy of the touched blocks, then write each block once. */
const processBatch = (worker: Worker, lane: Lane, batch: ReadonlyArray<Op>) =>
  Effect.gen(function* () {
    worker.stats.batches++;
    worker.stats.ops += batch.length;
    if (!lane.loaded) {
      const loaded = yield* Effect.result(loadLane(worker, lane));
      if (loaded._tag === "Failure") {
        for (const op of batch) yield* failOp(op, loaded.failure);
        return;
      }
    }
    const planned = yield* planBatch(worker, lane, batch);

    // Ops that needed no write are done now.
    const waiting = new Set<WriteOp>();
    for (const w of planned.work.values()) for (const op of w.ops) waiting.add(op);
    for (const [op, value] of planned.assigned) {
      if (!waiting.has(op)) yield* Deferred.succeed(op.done, addressOf(lane, op, value));
    }
    for (const [op, n] of planned.released) {
      if (!waiting.has(op)) yield* Deferred.succeed(op.done, n);
    }
    for (const op of batch) if (op.type === "load") yield* Deferred.succeed(op.done, undefined);

    const commits: Commits = { failed: new Set(), retry: new Set(), lostCreate: new Set() };
    yield* Effect.forEach(
      [...planned.work].filter(([, w]) => w.ops.length > 0),
      ([index, w]) => commitBlock(worker, lane, index, w, commits),
      { concurrency: "unbounded", discard: true },
    );
    yield* settle(worker, lane, waiting, planned, commits);
  });

/** Per network and family the allocator has loaded: capacity and the reservations `node`'s pods hold. */
function usageOf(lanes: Iterable<Lane>, node: string): PoolUsage[] {
  const out: PoolUsage[] = [];
  for (const lane of lanes) {
    if (!lane.loaded || !lane.plan) continue;
    let reserved = 0;
    for (const b of lane.blocks.values()) {
      const rs = b.spec.reservations;
      for (const off in rs) if (rs[off].node === node) reserved++;
    }
    out.push({ ref: lane.ref, family: lane.family, capacity: poolCapacity(lane.plan), reserved });
  }
  return out;
}

/**
 * Both families or neither: what the pod asked for on `ip` / `ip6`, each reserved with `reserve`; when one fails,
 * what the other got is given back with `release`.
 */
const allocateFamilies = (
  network: IpamNetwork,
  ip: string | undefined,
  ip6: string | undefined,
  reserve: (family: Family, request: AddressRequest) => Effect.Effect<string, IpamError>,
  release: (family: Family) => Effect.Effect<number, IpamError>,
) =>
  Effect.gen(function* () {
    const label = networkLabel(network.ref);
    const r4 = parseAddressRequest(label, "ip", ip), r6 = parseAddressRequest(label, "ip6", ip6);
    if (r4 instanceof InvalidAddressRequest) return yield* r4;
    if (r6 instanceof InvalidAddressRequest) return yield* r6;
    const asked4 = r4 !== undefined && r4 !== "none", asked6 = r6 !== undefined && r6 !== "none";
    if (!asked4 || !asked6) {
      // At most one family to reserve (the common case): nothing to give back if it fails, no fibers to fork.
      const result: { v4?: string; v6?: string } = {};
      if (r4 !== undefined) result.v4 = asked4 ? yield* reserve(4, r4) : "none";
      if (r6 !== undefined) result.v6 = asked6 ? yield* reserve(6, r6) : "none";
      return result as AllocationResult;
    }
    const want = (r: AddressRequest | "none" | undefined, f: Family) =>
      r === undefined ? Effect.succeed(undefined) : r === "none" ? Effect.succeed("none") : reserve(f, r);
    const [a4, a6] = yield* Effect.all([Effect.result(want(r4, 4)), Effect.result(want(r6, 6))], {
      concurrency: 2,
    });
    if (a4._tag === "Failure" || a6._tag === "Failure") {
      // Both families or neither: give back what the other family got.
      if (a4._tag === "Success" && a4.success && a4.success !== "none") {
        yield* Effect.ignore(release(4));
      }
      if (a6._tag === "Success" && a6.success && a6.success !== "none") {
        yield* Effect.ignore(release(6));
      }
      return yield* (a4._tag === "Failure" ? a4.failure : (a6 as { failure: IpamError }).failure);
    }
    const result: { v4?: string; v6?: string } = {};
    if (a4.success !== undefined) result.v4 = a4.success;
    if (a6.success !== undefined) result.v6 = a6.success;
    return result as AllocationResult;
  });

/** Whole seconds: the reclaimer's grace period needs no more, and every reservation line carries it. */
const secondsIso = (millis: number) => new Date(millis).toISOString().replace(/\.\d+Z$/, "Z");

export const makeIpam = (options: IpamOptions = {}) =>
  Effect.gen(function* () {
    const lanes = new Map<string, Lane>();
    const stats: IpamStats = { batches: 0, ops: 0, writes: 0, conflicts: 0, lostCreates: 0 };
    const metrics = options.metrics;
    const custom = options.now;
    const worker: Worker = {
      store: yield* BlockStore,
      stats,
      metrics,
      maxAttempts: options.maxAttempts ?? 12,
      now: custom ? Effect.sync(custom) : Effect.map(Clock.currentTimeMillis, secondsIso),
      ownerGone: options.ownerGone ?? (() => Effect.succeed(false)),
      scope: yield* Effect.scope,
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

    const laneFor = (ref: NetworkRef, family: Family): Effect.Effect<Lane> => {
      const existing = lanes.get(`${ref.uid}/${family}`);
      return existing ? Effect.succeed(existing) : openLane(ref, family);
    };

    const openLane = (ref: NetworkRef, family: Family) =>
      Effect.gen(function* () {
        const lane: Lane = {
          ...emptyCache(family, networkLabel(ref)),
          ref,
          queue: yield* Queue.unbounded<Op>(),
          loaded: false,
        };
        lanes.set(`${ref.uid}/${family}`, lane);
        yield* Effect.forkIn(
          Effect.forever(Effect.flatMap(Queue.takeAll(lane.queue), (batch) => processBatch(worker, lane, batch))),
          worker.scope,
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

    const allocate = (network: IpamNetwork, owner: Owner, ip: string | undefined, ip6: string | undefined) =>
      allocateFamilies(
        network,
        ip,
        ip6,
        (family, request) => reserveFamily(network, owner, family, request),
        (family) => releaseFamily(network, owner, family),
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

    return Ipam.of({
      allocate: allocateTimed,
      release,
      stats: () => ({ ...stats }),
      track,
      usage: (node) => usageOf(lanes.values(), node),
    });
  });

export const ipamLayer = (options: IpamOptions = {}): Layer.Layer<Ipam, never, BlockStore> =>
  Layer.effect(Ipam, makeIpam(options));
