// Self-healing for the IPAM: frees reservations whose owner is gone, and the blocks of deleted networks.
//
// Owners are identified by pod UID and sandbox, never by name alone: a pod recreated under the same name
// has a new UID, so the old reservation is reclaimable while the new pod's is not. Reservations younger than
// the grace period are left alone, which covers the window where a pod's ADD races the reclaimer's view.
// A node agent reclaims what was reserved on its own node, and what was reserved on nodes that no longer exist
// (a node removed for good has no agent left to do it; every agent may, compare-and-swap keeps them apart).
import { Clock, type Duration, Effect } from "effect";
import type { IPBlock, Reservation } from "../api/ipam.ts";
import type { IpamMetrics } from "./metrics.ts";
import { BlockRace, BlockStore, type BlockStoreFailure } from "./store.ts";

export interface OwnerDirectory {
  /** The UID of pod namespace/name if it exists and is not finished, else undefined. */
  readonly podUid: (namespace: string, name: string) => Effect.Effect<string | undefined, BlockStoreFailure>;
  /** Whether a network with this UID still exists. */
  readonly networkExists: (
    ref: IPBlock["spec"]["network"],
  ) => Effect.Effect<boolean, BlockStoreFailure>;
  /** The names of the Nodes that exist. */
  readonly liveNodes: Effect.Effect<ReadonlySet<string>, BlockStoreFailure>;
}

export interface ReclaimReport {
  /** "<block>/<offset> <pod> (<reason>)" per freed reservation. */
  readonly freed: ReadonlyArray<string>;
  readonly deletedBlocks: ReadonlyArray<string>;
  /** Writes that lost a race; the next round retries them. */
  readonly raced: number;
}

const ageSeconds = (r: Reservation, nowMs: number) => (nowMs - Date.parse(r.since)) / 1000;

/** Removes the selected reservations from a block with one compare-and-swap write (deleting it when empty). */
const prune = (block: IPBlock, drop: ReadonlySet<string>) =>
  Effect.gen(function* () {
    const store = yield* BlockStore;
    const kept = Object.fromEntries(Object.entries(block.spec.reservations).filter(([off]) => !drop.has(off)));
    if (Object.keys(kept).length === 0) {
      yield* store.remove(block);
      return "deleted" as const;
    }
    yield* store.update({ ...block, spec: { ...block.spec, reservations: kept } });
    return "updated" as const;
  });

/** One round's bookkeeping: prunes blocks, counts what was freed and which writes lost a race. */
const makeRound = () => {
  const freed: string[] = [], deletedBlocks: string[] = [];
  let raced = 0;
  const book = <A>(
    write: Effect.Effect<A, BlockRace | BlockStoreFailure, BlockStore>,
    onSuccess: (a: A) => void,
  ) =>
    Effect.gen(function* () {
      const r = yield* Effect.result(write);
      if (r._tag === "Success") onSuccess(r.success);
      else if (r.failure instanceof BlockRace) raced++;
      else return yield* r.failure;
    });
  return {
    /** Removes `drop` from the block (deleting it when empty), noting `reasons` as freed. */
    prune: (block: IPBlock, drop: ReadonlySet<string>, reasons: ReadonlyArray<string>) =>
      drop.size === 0 ? Effect.void : book(prune(block, drop), (outcome) => {
        freed.push(...reasons);
        if (outcome === "deleted") deletedBlocks.push(block.metadata.name ?? "");
      }),
    /** Deletes a whole block (its network is gone). */
    remove: (block: IPBlock) =>
      book(
        Effect.gen(function* () {
          yield* (yield* BlockStore).remove(block);
        }),
        () => {
          deletedBlocks.push(block.metadata.name ?? "");
        },
      ),
    report: (): ReclaimReport => ({ freed, deletedBlocks, raced }),
  };
};

/**
 * One reclaim round over every block: reservations of pods that no longer exist (or exist with another UID)
 * and every block of a network that no longer exists.
 */
export const reclaimOrphans = (
  directory: OwnerDirectory,
  /**
   * `node`: only reservations made on that node or on nodes that no longer exist (each node agent reclaims its own
   * and the dead's; a cluster tool all).
   */
  opts: { graceSeconds: number; nowMs?: number; node?: string },
) =>
  Effect.gen(function* () {
    const store = yield* BlockStore;
    const nowMs = opts.nowMs ?? (yield* Clock.currentTimeMillis);
    const round = makeRound();
    const uidCache = new Map<string, string | undefined>();
    // One list per round, and only once another node's reservation comes up.
    let liveNodes: ReadonlySet<string> | undefined;
    const mine = (node: string) =>
      Effect.gen(function* () {
        if (opts.node === undefined || node === opts.node) return true;
        liveNodes ??= yield* directory.liveNodes;
        return !liveNodes.has(node);
      });
    for (const block of yield* store.listAll()) {
      const name = block.metadata.name ?? "";
      if (!(yield* directory.networkExists(block.spec.network))) {
        yield* round.remove(block);
        continue;
      }
      const drop = new Set<string>();
      const reasons: string[] = [];
      for (const [off, r] of Object.entries(block.spec.reservations)) {
        if (ageSeconds(r, nowMs) < opts.graceSeconds) continue;
        if (!(yield* mine(r.node))) continue;
        if (!uidCache.has(r.pod)) {
          const [ns, pod] = r.pod.split("/");
          uidCache.set(r.pod, yield* directory.podUid(ns, pod));
        }
        const current = uidCache.get(r.pod);
        if (current === r.podUid) continue;
        drop.add(off);
        reasons.push(`${name}/${off} ${r.pod} (${current ? "pod recreated with another UID" : "pod gone"})`);
      }
      yield* round.prune(block, drop, reasons);
    }
    return round.report();
  });

/**
 * CNI GC (spec 1.1): on `node`, frees reservations whose sandbox is not among the runtime's valid
 * attachments. Only sandboxes of this node are considered; young reservations are left alone.
 */
export const reclaimSandboxes = (
  node: string,
  validSandboxes: ReadonlySet<string>,
  opts: { graceSeconds: number; nowMs?: number },
) =>
  Effect.gen(function* () {
    const store = yield* BlockStore;
    const nowMs = opts.nowMs ?? (yield* Clock.currentTimeMillis);
    const round = makeRound();
    for (const block of yield* store.listAll()) {
      const name = block.metadata.name ?? "";
      const drop = new Set<string>();
      const reasons: string[] = [];
      for (const [off, r] of Object.entries(block.spec.reservations)) {
        if (r.node !== node || validSandboxes.has(r.sandbox) || ageSeconds(r, nowMs) < opts.graceSeconds) continue;
        drop.add(off);
        reasons.push(`${name}/${off} ${r.pod} (sandbox ${r.sandbox.slice(0, 12)} no longer valid)`);
      }
      yield* round.prune(block, drop, reasons);
    }
    return round.report();
  });

/**
 * The node agent's reclaim loop: every `period`, frees the reservations of `node`'s pods that are gone (a missed
 * DEL; CNI GC covers what the runtime knows) and of removed nodes' pods, and the blocks of deleted networks. Runs
 * until interrupted.
 */
export const reclaimLoop = (
  directory: OwnerDirectory,
  options: { readonly node: string; readonly period: Duration.Input; readonly graceSeconds: number },
  metrics?: IpamMetrics,
) =>
  Effect.gen(function* () {
    const round = reclaimOrphans(directory, { graceSeconds: options.graceSeconds, node: options.node }).pipe(
      Effect.tap((r) =>
        Effect.gen(function* () {
          metrics?.reclaimRuns.inc({ result: "success" });
          if (r.freed.length > 0) metrics?.reclaimed.inc({ kind: "reservation" }, r.freed.length);
          if (r.deletedBlocks.length > 0) metrics?.reclaimed.inc({ kind: "block" }, r.deletedBlocks.length);
          if (r.freed.length || r.deletedBlocks.length) {
            yield* Effect.logInfo(`reclaimed ${r.freed.length} reservation(s), ${r.deletedBlocks.length} block(s)`)
              .pipe(Effect.annotateLogs({ freed: r.freed.join("; ") }));
          }
        })
      ),
      Effect.catch((e) =>
        Effect.andThen(
          Effect.sync(() => metrics?.reclaimRuns.inc({ result: "error" })),
          Effect.logWarning(`reclaim: ${e.message}`),
        )
      ),
    );
    return yield* Effect.sleep(options.period).pipe(Effect.andThen(round), Effect.forever);
  });
