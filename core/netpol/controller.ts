// The node agent's MultiNetworkPolicy controller (#22): keeps `table inet danm_netpol` in the netns of every pod of
// its node in line with the policies, level-triggered. On every relevant change (MultiNetworkPolicies, Pods,
// Namespaces, DanmEps — the whole cluster's: peers on other nodes count) and every resync period it renders each
// local pod's ruleset, applies the ones that differ from what it last applied, and on resync also reads the kernel's
// table back and reprograms a pod whose table someone changed. A new process has applied nothing yet, so its first
// pass programs every local pod (and removes tables no policy asks for any more). The CNI ADD programs a new pod
// through `programPod` before it reports success, so a pod never runs unpoliced.
import { Cause, Clock, Context, Deferred, Duration, Effect, Layer, Queue, Scope, Semaphore, Stream } from "effect";
import { DanmEpResource } from "../api/danm.ts";
import { NamespaceResource, PodResource } from "../api/k8s.ts";
import { MultiNetworkPolicyResource } from "../api/netpol.ts";
import { type Informer, type InformerOptions, Kube, type KubeError, type ResourceType } from "../ports/kube.ts";
import { nodeSelector } from "../cni/endpoints.ts";
import { PolicyTables, type PolicyTablesError } from "../ports/policy_tables.ts";
import type { ReadinessCheck } from "../observability/metrics.ts";
import { allReady, cachesSynced, informerSynced } from "../observability/readiness.ts";
import { NetwatcherFailed } from "../netwatcher/errors.ts";
import { type CompileCache, compilePod, newCompileCache } from "./compile.ts";
import { affectedPods } from "./affected.ts";
import { emptyWorld, type PodKey, type PolicyWorld } from "./model.ts";
import { renderNft } from "./nft.ts";
import { type LocalPod, nodeWorld, type PodOverride, type WorldInputs } from "./world.ts";
import { type NetpolMetrics, netpolMetrics } from "./controller_metrics.ts";
import { PodEvents, PolicyProgramFailed } from "./controller_events.ts";

/** A pod's complete ruleset (`table inet danm_netpol { … }`), or undefined when no policy applies to it. */
export type PolicyRenderer = (
  world: PolicyWorld,
  pod: PodKey,
) => Effect.Effect<string | undefined, { readonly message: string }>;

/** Compiled peers shared by the pods rendered from one world snapshot (the engine's batch cache). */
const compileCaches = new WeakMap<PolicyWorld, CompileCache>();

/** The engine's renderer: the pod's compiled rules as one nft table (core/netpol/compile.ts, nft.ts). */
export const engineRenderer: PolicyRenderer = (world, pod) => {
  let cache = compileCaches.get(world);
  if (!cache) compileCaches.set(world, cache = newCompileCache());
  const rules = compilePod(world, pod, cache);
  return rules.interfaces.length === 0 ? Effect.succeed(undefined) : renderNft(rules);
};

export interface NetpolControllerConfig {
  readonly nodeName: string;
  readonly render: PolicyRenderer;
  /** Every local pod's table is read back and compared at least this often. Default 60 s. */
  readonly resyncPeriod?: Duration.Input;
  /** How long `programPod` waits for the caches' first list before failing. Default 30 s. */
  readonly syncTimeout?: Duration.Input;
  /** Pods programmed at once (each an nsenter + nft process). Default 8. */
  readonly concurrency?: number;
  /** First retry of a pod that failed; doubles per failure up to `maxBackoffMs`. Default 500 ms / 30 s. */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
}

/** What one pass did, by pod key. */
export interface NetpolPassReport {
  readonly applied: ReadonlyArray<PodKey>;
  readonly removed: ReadonlyArray<PodKey>;
  readonly failed: ReadonlyMap<PodKey, string>;
  readonly policed: number;
}

export interface NetpolControllerService {
  /** Programs a pod being set up (CNI ADD), from the caches plus what the ADD knows; fails closed. */
  readonly programPod: (pod: PodOverride) => Effect.Effect<void, PolicyProgramFailed>;
  /** A pass now, with the kernel read back (serialised with the background loop). */
  readonly syncNow: Effect.Effect<NetpolPassReport>;
  readonly metrics: Effect.Effect<string>;
  readonly notReady: ReadinessCheck;
  /** Never succeeds: fails when a watch dies for good. */
  readonly join: Effect.Effect<never, NetwatcherFailed>;
}

export class NetpolController
  extends Context.Service<NetpolController, NetpolControllerService>()("danm/core/netpol/NetpolController") {}

/**
 * What the controller last put into a pod's netns. `listing` is nft's own reading of it, taken at the first resync
 * after the apply (reading a big table back costs about as much as applying it, so a change pass does not).
 */
interface Applied {
  readonly netns: string;
  readonly script: string | undefined;
  readonly listing: string | undefined;
}

type Outcome = "applied" | "removed" | "unchanged" | "gone";

/**
 * How much a pass trusts what it applied before: "changed" touches only pods whose script differs, "verify" also
 * reads every table back (the resync), "new" is a pod being set up by the CNI ADD (a fresh netns: its table is
 * applied whatever the bookkeeping says, and a pod without policy costs no nft run at all).
 */
type Mode = "changed" | "verify" | "new";

/** Makes one pod's table what `script` says. */
const convergePod = (
  tables: PolicyTables["Service"],
  applied: Map<PodKey, Applied>,
  pod: LocalPod,
  script: string | undefined,
  mode: Mode,
): Effect.Effect<Outcome, PolicyTablesError> =>
  Effect.gen(function* () {
    const prev = mode === "new" ? undefined : applied.get(pod.key);
    const known = prev !== undefined && prev.netns === pod.netns;
    if (script === undefined) {
      // Unknown (a restart, a new netns) or policed before: make sure no table of ours is left.
      if (mode === "new" || (known && prev.script === undefined && mode !== "verify")) {
        applied.set(pod.key, { netns: pod.netns, script: undefined, listing: undefined });
        return "unchanged";
      }
      // Without nft no table of ours can be there either: a node that polices nothing needs no nft.
      const present = yield* tables.read(pod.netns).pipe(
        Effect.catchTag("PolicyToolMissing", () => Effect.succeed(undefined)),
      );
      if (present !== undefined) yield* tables.remove(pod.netns);
      applied.set(pod.key, { netns: pod.netns, script: undefined, listing: undefined });
      return present !== undefined ? "removed" : "unchanged";
    }
    if (known && prev.script === script) {
      if (mode !== "verify") return "unchanged";
      if (prev.listing !== undefined) {
        if ((yield* tables.read(pod.netns)) === prev.listing) return "unchanged";
        yield* Effect.logWarning(`netpol: the table in ${pod.netns} (pod ${pod.key}) was changed by someone else`);
      }
      // Not read back since it was applied: apply it again (idempotent, one transaction) and keep nft's reading,
      // which later resyncs compare with.
      yield* tables.apply(pod.netns, script);
      applied.set(pod.key, { netns: pod.netns, script, listing: yield* tables.read(pod.netns) });
      return prev.listing === undefined ? "unchanged" : "applied";
    }
    yield* tables.apply(pod.netns, script);
    const listing = mode === "verify" ? yield* tables.read(pod.netns) : undefined;
    applied.set(pod.key, { netns: pod.netns, script, listing });
    return "applied";
  }).pipe(
    Effect.catchTag("PolicyNetnsGone", (e) =>
      mode === "new" ? Effect.fail(e) : Effect.sync(() =>
        applied.delete(pod.key)
      ).pipe(Effect.as("gone" as const))),
  );

/** The cluster-wide caches policies need (peers anywhere): opened once the first policy exists. */
interface ClusterCaches {
  readonly pods: Informer<WorldInputs["pods"][number]>;
  readonly namespaces: Informer<WorldInputs["namespaces"][number]>;
  readonly danmEps: Informer<WorldInputs["danmEps"][number]>;
}

interface Caches {
  /** Undefined when the MultiNetworkPolicy CRD is not installed: no policies, nothing enforced. */
  readonly policies: Informer<WorldInputs["policies"][number]> | undefined;
  /** This node's DanmEps (the CNI daemon's own cache when it runs in the process): which pods are local. */
  readonly local: Informer<WorldInputs["danmEps"][number]>;
  /** Opens the cluster-wide caches (once) and waits for their first list. */
  readonly cluster: Effect.Effect<ClusterCaches, KubeError>;
}

/** What a pass works from: without policies only the policies and this node's DanmEps (cheap, no cluster caches). */
const snapshot = (c: Caches): Effect.Effect<WorldInputs, KubeError> =>
  Effect.gen(function* () {
    const policies = c.policies ? yield* c.policies.list : [];
    if (policies.length === 0) return { policies, pods: [], namespaces: [], danmEps: yield* c.local.list };
    const cl = yield* c.cluster;
    return {
      policies,
      pods: yield* cl.pods.list,
      namespaces: yield* cl.namespaces.list,
      danmEps: yield* cl.danmEps.list,
    };
  });

/** The per-pod bookkeeping of one controller: what is applied, what failed and when to retry. */
class PodLedger {
  readonly applied = new Map<PodKey, Applied>();
  readonly failures = new Map<PodKey, { attempts: number; retryAt: number }>();
  constructor(private readonly backoffMs: number, private readonly maxBackoffMs: number) {}
  failed(key: PodKey, now: number): void {
    const attempts = (this.failures.get(key)?.attempts ?? 0) + 1;
    const delay = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (attempts - 1));
    this.failures.set(key, { attempts, retryAt: now + delay });
  }
  /** The earliest retry due, if any. */
  nextRetry(): number | undefined {
    const times = [...this.failures.values()].map((f) => f.retryAt);
    return times.length === 0 ? undefined : Math.min(...times);
  }
  forget(keep: ReadonlySet<PodKey>): void {
    for (const k of [...this.applied.keys()]) if (!keep.has(k)) this.applied.delete(k);
    for (const k of [...this.failures.keys()]) if (!keep.has(k)) this.failures.delete(k);
  }
}

interface PassContext {
  /** Pods programmed at once. */
  readonly concurrency: number;
  /** The world the previous pass rendered from: a change pass re-renders only the pods the difference affects. */
  previous: PolicyWorld;
  readonly node: string;
  readonly render: PolicyRenderer;
  readonly tables: PolicyTables["Service"];
  readonly ledger: PodLedger;
  readonly metrics: NetpolMetrics;
  readonly events: PodEvents;
}

/**
 * One pass over the local pods. `changedSince` (the arrival of the oldest change it answers) makes every pod it
 * applies count in the convergence histogram; `verify` reads every table back (the resync).
 */
const runPass = (ctx: PassContext, inputs: WorldInputs, verify: boolean, changedSince: number | undefined) =>
  Effect.gen(function* () {
    const { world, local } = nodeWorld(inputs, ctx.node);
    const now = yield* Clock.currentTimeMillis;
    const applied: PodKey[] = [], removed: PodKey[] = [];
    const failed = new Map<PodKey, string>();
    // Which local pods to look at: all on a resync; else those the change affects (the engine's affectedPods),
    // pods not yet handled in this netns and pods whose retry is due.
    const affected = verify ? undefined : affectedPods(ctx.previous, world, local.keys());
    yield* Effect.logDebug(
      `netpol ${ctx.node}: ${verify ? "resync" : "change"} pass over ${local.size} local pod(s)` +
        (affected ? `, affected: ${[...affected].join(" ") || "none"}` : ""),
    );
    ctx.previous = world;
    const due = (pod: LocalPod) =>
      affected === undefined || affected.has(pod.key) || ctx.ledger.failures.has(pod.key) ||
      ctx.ledger.applied.get(pod.key)?.netns !== pod.netns;
    // Pods are independent (an nsenter + nft process each): several at once, as many as `concurrency`.
    yield* Effect.forEach([...local.values()].filter(due), (pod) =>
      Effect.gen(function* () {
        const retry = ctx.ledger.failures.get(pod.key);
        if (retry && retry.retryAt > now) {
          failed.set(pod.key, "waiting to retry");
          return;
        }
        const r = yield* Effect.result(
          Effect.flatMap(
            ctx.render(world, pod.key),
            (script) => convergePod(ctx.tables, ctx.ledger.applied, pod, script, verify ? "verify" : "changed"),
          ),
        );
        if (r._tag === "Failure") {
          ctx.ledger.failed(pod.key, now);
          failed.set(pod.key, r.failure.message);
          ctx.metrics.applies.inc({ result: "error" });
          return yield* ctx.events.failure(pod.key, r.failure.message);
        }
        ctx.ledger.failures.delete(pod.key);
        ctx.events.clear(pod.key);
        if (r.success === "unchanged" || r.success === "gone") return;
        yield* Effect.logDebug(`netpol ${ctx.node}: pod ${pod.key}: table ${r.success}`);
        (r.success === "applied" ? applied : removed).push(pod.key);
        ctx.metrics.applies.inc({ result: r.success });
        if (changedSince !== undefined) {
          ctx.metrics.convergeSeconds.observe(((yield* Clock.currentTimeMillis) - changedSince) / 1000);
        }
      }), { concurrency: ctx.concurrency, discard: true });
    ctx.ledger.forget(new Set(local.keys()));
    ctx.events.retain(new Set(local.keys()));
    const policed = [...ctx.ledger.applied.values()].filter((a) => a.script !== undefined).length;
    ctx.metrics.policedPods.set(policed);
    ctx.metrics.failingPods.set(ctx.ledger.failures.size);
    return { applied, removed, failed, policed } satisfies NetpolPassReport;
  });

/** The caches, each feeding `wake` with the arrival time of every change. */
const openCaches = (node: string, wake: Queue.Queue<number>, failure: Deferred.Deferred<never, NetwatcherFailed>) =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const scope = yield* Effect.scope;
    const watched = <A, I>(rt: ResourceType<A, I>, options?: InformerOptions) =>
      Effect.gen(function* () {
        const inf = yield* kube.informer(rt, options);
        yield* inf.changes.pipe(
          Stream.runForEach((ev) =>
            ev._tag === "Synced" ? Effect.void : Effect.flatMap(Clock.currentTimeMillis, (t) => Queue.offer(wake, t))
          ),
          Effect.catch((e: KubeError) =>
            Deferred.fail(failure, new NetwatcherFailed({ operation: "watch", object: rt.kind, reason: e.message }))
          ),
          Effect.forkIn(scope),
        );
        return inf;
      });
    // A cluster without the CRD has no policies to enforce; installing it later takes an agent restart.
    const crd = yield* Effect.result(kube.list(MultiNetworkPolicyResource));
    const missing = crd._tag === "Failure" && crd.failure._tag === "KubeNotFound";
    if (missing) yield* Effect.logWarning("netpol: the MultiNetworkPolicy API is not installed: no policy enforced");
    const open = yield* Effect.cached(
      Effect.gen(function* () {
        const cl = {
          pods: yield* watched(PodResource),
          namespaces: yield* watched(NamespaceResource),
          danmEps: yield* watched(DanmEpResource),
        };
        return cl;
      }).pipe(Scope.provide(scope)),
    );
    const cluster = Effect.tap(open, (cl) => Effect.all([cl.pods.synced, cl.namespaces.synced, cl.danmEps.synced]));
    return {
      policies: missing ? undefined : yield* watched(MultiNetworkPolicyResource),
      local: yield* watched(DanmEpResource, { labelSelector: nodeSelector(node) }),
      cluster,
    } satisfies Caches;
  });

export const make = (
  config: NetpolControllerConfig,
): Effect.Effect<NetpolControllerService, never, Kube | PolicyTables | Scope.Scope> =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const tables = yield* PolicyTables;
    const node = config.nodeName;
    const metrics = netpolMetrics(node);
    const ledger = new PodLedger(config.backoffMs ?? 500, config.maxBackoffMs ?? 30_000);
    const ctx: PassContext = {
      concurrency: config.concurrency ?? 8,
      previous: emptyWorld,
      node,
      render: config.render,
      tables,
      ledger,
      metrics,
      events: new PodEvents(node, kube),
    };
    const failure = yield* Deferred.make<never, NetwatcherFailed>();
    const wake = yield* Queue.unbounded<number>();
    const caches = yield* openCaches(node, wake, failure);
    const synced = Effect.all([caches.policies ? caches.policies.synced : Effect.void, caches.local.synced]);
    const lock = yield* Semaphore.make(1);

    const pass = (verify: boolean, changedSince?: number) =>
      lock.withPermit(
        Effect.flatMap(Effect.orDie(snapshot(caches)), (inputs) => runPass(ctx, inputs, verify, changedSince)),
      );

    const programPod = (o: PodOverride) =>
      Effect.gen(function* () {
        const key = `${o.pod.metadata.namespace ?? ""}/${o.pod.metadata.name ?? ""}`;
        const fail = (reason: string) => new PolicyProgramFailed({ pod: key, reason });
        yield* Effect.timeoutOrElse(Effect.mapError(synced, (e) => fail(`policy caches: ${e.message}`)), {
          duration: config.syncTimeout ?? "30 seconds",
          orElse: () => Effect.fail(fail("the policy caches have not synced yet")),
        });
        // No policy anywhere (the common case on the CNI hot path): nothing to build, nothing to run.
        if (caches.policies === undefined || (yield* caches.policies.list).length === 0) return;
        yield* lock.withPermit(Effect.gen(function* () {
          const inputs = yield* Effect.timeoutOrElse(
            Effect.mapError(snapshot(caches), (e) => fail(`policy caches: ${e.message}`)),
            {
              duration: config.syncTimeout ?? "30 seconds",
              orElse: () => Effect.fail(fail("the policy caches have not synced yet")),
            },
          );
          const { world } = nodeWorld(inputs, node, o);
          const script = yield* Effect.mapError(config.render(world, key), (e) => fail(e.message));
          const r = yield* Effect.mapError(
            convergePod(tables, ledger.applied, { key, netns: o.netns }, script, "new"),
            (e) => fail(e.message),
          );
          if (r === "applied") metrics.applies.inc({ result: "applied" });
        }));
      });

    // The loop: changes coalesce; the resync period and due retries wake it too. A first pass right away
    // reprograms every local pod after a restart.
    yield* Effect.gen(function* () {
      yield* Effect.orDie(synced);
      let nextResync = yield* Clock.currentTimeMillis;
      while (true) {
        const now = yield* Clock.currentTimeMillis;
        const changes = yield* Queue.clear(wake);
        const verify = now >= nextResync;
        if (verify) nextResync = now + Duration.toMillis(config.resyncPeriod ?? "60 seconds");
        yield* pass(verify, changes.length > 0 ? Math.min(...changes) : undefined);
        const retryAt = ledger.nextRetry();
        const wait = Math.max(0, Math.min(nextResync, retryAt ?? Infinity) - (yield* Clock.currentTimeMillis));
        yield* Effect.race(Queue.take(wake).pipe(Effect.flatMap((t) => Queue.offer(wake, t))), Effect.sleep(wait));
        yield* Effect.sleep("10 millis"); // let a burst of changes land in one pass
      }
    }).pipe(
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause) ? Effect.void : Deferred.fail(
          failure,
          new NetwatcherFailed({
            operation: "enforce network policy",
            object: `node ${node}`,
            reason: Cause.pretty(cause),
          }),
        )
      ),
      Effect.forkScoped,
    );

    return {
      programPod,
      syncNow: pass(true),
      metrics: Effect.sync(() => metrics.registry.render()),
      notReady: allReady({
        caches: cachesSynced([
          ...(caches.policies ? [["MultiNetworkPolicies", informerSynced(caches.policies)] as const] : []),
          ["this node's DanmEps", informerSynced(caches.local)],
        ]),
      }),
      join: Deferred.await(failure),
    } satisfies NetpolControllerService;
  });

export const layer = (
  config: NetpolControllerConfig,
): Layer.Layer<NetpolController, never, Kube | PolicyTables> => Layer.effect(NetpolController, make(config));
