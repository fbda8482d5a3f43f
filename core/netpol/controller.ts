// The node agent's MultiNetworkPolicy controller (#22): keeps `table inet danm_netpol` in the netns of every pod of
// its node in line with the policies, level-triggered. On every relevant change (MultiNetworkPolicies, Pods,
// Namespaces, DanmEps — the whole cluster's: peers on other nodes count) and every resync period it renders each
// local pod's ruleset, applies the ones that differ from what it last applied — only the set elements that changed
// when nothing else did (peer churn), else the whole table — and on resync also reads the kernel's table back and
// reprograms a pod whose table someone changed. A new process has applied nothing yet, so its first pass programs
// every local pod (and removes tables no policy asks for any more). The CNI ADD programs a new pod through
// `programPod` before it reports success, so a pod never runs unpoliced. Which pods are local: the CNI daemon's
// sandbox records (`sandboxes`: every pod it set up, NAD-only ones too) and this node's DanmEps. A pod's table is
// only ever written under that pod's lock (core/concurrency/keyed_locks.ts): a pass and an ADD never interleave on
// one pod, and an ADD never waits behind a pass over other pods.
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
import { emptyWorld, type InterfaceRules, type PodKey, type PolicyWorld } from "./model.ts";
import { diffTables, type RenderedTable, renderTable } from "./nft.ts";
import { type LocalPod, type LocalSandbox, nodeWorld, type PodOverride, type WorldInputs } from "./world.ts";
import { makeKeyedLocks } from "../concurrency/keyed_locks.ts";
import { type NetpolMetrics, netpolMetrics } from "./controller_metrics.ts";
import { PodEvents, PolicyProgramFailed } from "./controller_events.ts";

/** A pod's complete table (`table inet danm_netpol { … }`, structured), or undefined when no policy applies to it. */
export type PolicyRenderer = (
  world: PolicyWorld,
  pod: PodKey,
) => Effect.Effect<RenderedTable | undefined, { readonly message: string }>;

/** Compiled peers shared by the pods rendered from one world snapshot (the engine's batch cache). */
const compileCaches = new WeakMap<PolicyWorld, CompileCache>();

/**
 * Tables rendered from compiled interfaces shared by several pods of one world (compile.ts compilePod): the
 * same rules render to the same table, so each is rendered once. Only successes are kept (an error names its pod).
 */
const renderedTables = new WeakMap<ReadonlyArray<InterfaceRules>, RenderedTable>();

/** The engine's renderer: the pod's compiled rules as one nft table (core/netpol/compile.ts, nft.ts). */
export const engineRenderer: PolicyRenderer = (world, pod) => {
  let cache = compileCaches.get(world);
  if (!cache) compileCaches.set(world, cache = newCompileCache());
  const rules = compilePod(world, pod, cache);
  if (rules.interfaces.length === 0) return Effect.succeed(undefined);
  const hit = renderedTables.get(rules.interfaces);
  if (hit) return Effect.succeed(hit);
  return Effect.tap(renderTable(rules), (table) => Effect.sync(() => renderedTables.set(rules.interfaces, table)));
};

export interface NetpolControllerConfig {
  readonly nodeName: string;
  readonly render: PolicyRenderer;
  /**
   * This node's pod sandboxes, read at every pass, when the CNI daemon runs in this process (core/cni/policy.ts
   * `localSandboxes`): how pods without DanmEps (only NAD attachments) are followed after their ADD and a restart.
   */
  readonly sandboxes?: Effect.Effect<ReadonlyArray<LocalSandbox>>;
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
  readonly table: RenderedTable | undefined;
  readonly listing: string | undefined;
}

type Outcome = "applied" | "patched" | "patch_failed" | "removed" | "unchanged" | "gone";

/**
 * How much a pass trusts what it applied before: "changed" touches only pods whose script differs, "verify" also
 * reads every table of ours back (the resync; a netns known to hold none is not read), "new" is a pod being set up
 * by the CNI ADD (a fresh netns: its table is applied whatever the bookkeeping says, and a pod without policy costs
 * no nft run at all).
 */
type Mode = "changed" | "verify" | "new";

/** Makes one pod's table what `table` says. */
const convergePod = (
  tables: PolicyTables["Service"],
  applied: Map<PodKey, Applied>,
  pod: LocalPod,
  table: RenderedTable | undefined,
  mode: Mode,
): Effect.Effect<Outcome, PolicyTablesError> =>
  Effect.gen(function* () {
    const prev = mode === "new" ? undefined : applied.get(pod.key);
    const known = prev !== undefined && prev.netns === pod.netns;
    if (table === undefined) {
      // A fresh netns (the ADD), or one this controller already knows holds no table of ours (it read it, removed
      // the table or saw the ADD): nothing to run, on a resync either. Unknown (a restart, a new netns) or policed
      // before: make sure no table of ours is left.
      if (mode === "new" || (known && prev.table === undefined)) {
        applied.set(pod.key, { netns: pod.netns, table: undefined, listing: undefined });
        return "unchanged";
      }
      // Without nft no table of ours can be there either: a node that polices nothing needs no nft.
      const present = yield* tables.read(pod.netns).pipe(
        Effect.catchTag("PolicyToolMissing", () => Effect.succeed(undefined)),
      );
      if (present !== undefined) yield* tables.remove(pod.netns);
      applied.set(pod.key, { netns: pod.netns, table: undefined, listing: undefined });
      return present !== undefined ? "removed" : "unchanged";
    }
    const script = table.script;
    if (known && prev.table?.script === script) {
      if (mode !== "verify") return "unchanged";
      if (prev.listing !== undefined) {
        if ((yield* tables.read(pod.netns)) === prev.listing) return "unchanged";
        yield* Effect.logWarning(`netpol: the table in ${pod.netns} (pod ${pod.key}) was changed by someone else`);
      }
      // Not read back since it was applied: apply it again (idempotent, one transaction) and keep nft's reading,
      // which later resyncs compare with.
      yield* tables.apply(pod.netns, script);
      applied.set(pod.key, { netns: pod.netns, table, listing: yield* tables.read(pod.netns) });
      return prev.listing === undefined ? "unchanged" : "applied";
    }
    // Only elements changed since the last apply (peers came or went): patch them, in one transaction. A resync
    // replaces the table whole (it repairs), and so does a refused patch (the table is not what we last put there).
    const sets = known && prev.table !== undefined && mode === "changed" ? diffTables(prev.table, table) : undefined;
    let outcome: Outcome = "applied";
    if (sets !== undefined && prev?.table !== undefined) {
      const patched = yield* Effect.result(tables.patch(pod.netns, { from: prev.table.script, to: script, sets }));
      if (patched._tag === "Success") {
        applied.set(pod.key, { netns: pod.netns, table, listing: undefined });
        return "patched";
      }
      if (patched.failure._tag !== "PolicyTableError") return yield* Effect.fail(patched.failure);
      yield* Effect.logWarning(
        `netpol: patching the table in ${pod.netns} (pod ${pod.key}) failed, replacing it whole: ${patched.failure.message}`,
      );
      outcome = "patch_failed";
    }
    yield* tables.apply(pod.netns, script);
    const listing = mode === "verify" ? yield* tables.read(pod.netns) : undefined;
    applied.set(pod.key, { netns: pod.netns, table, listing });
    return outcome;
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

/**
 * What a pass works from: without policies only the policies and this node's DanmEps (cheap, no cluster caches).
 * The sandbox records are read when policies exist, or when `records` says tables of ours may be left to remove
 * (a resync, a policed pod left): a node without policies does not read its records at every change.
 */
const snapshot = (
  c: Caches,
  sandboxes: Effect.Effect<ReadonlyArray<LocalSandbox>> | undefined,
  records: boolean,
): Effect.Effect<WorldInputs, KubeError> =>
  Effect.gen(function* () {
    const policies = c.policies ? yield* c.policies.list : [];
    const local = sandboxes && (records || policies.length > 0) ? { sandboxes: yield* sandboxes } : {};
    if (policies.length === 0) return { policies, pods: [], namespaces: [], danmEps: yield* c.local.list, ...local };
    const cl = yield* c.cluster;
    return {
      policies,
      pods: yield* cl.pods.list,
      namespaces: yield* cl.namespaces.list,
      danmEps: yield* cl.danmEps.list,
      ...local,
    };
  });

/** The per-pod bookkeeping of one controller: what is applied, what failed and when to retry. */
class PodLedger {
  readonly applied = new Map<PodKey, Applied>();
  readonly failures = new Map<PodKey, { attempts: number; retryAt: number }>();
  /** One lock per pod: whoever writes a pod's table holds it. */
  readonly locks = makeKeyedLocks();
  /** When (`tick`) an ADD last programmed each pod: a pass that read the world before leaves such a pod alone. */
  readonly programmedByAdd = new Map<PodKey, number>();
  private clock = 0;
  tick(): number {
    return ++this.clock;
  }
  /** Whether an ADD programmed the pod after `since`: its view of the pod is newer than the pass's. */
  addedSince(key: PodKey, since: number): boolean {
    return (this.programmedByAdd.get(key) ?? 0) > since;
  }
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
  /** Drops pods that are not local any more, except those an ADD programmed after `since` (newer than the pass). */
  forget(keep: ReadonlySet<PodKey>, since: number): void {
    const gone = (k: PodKey) => !keep.has(k) && !this.addedSince(k, since);
    for (const k of [...this.applied.keys()]) if (gone(k)) this.applied.delete(k);
    for (const k of [...this.failures.keys()]) if (gone(k)) this.failures.delete(k);
    for (const k of [...this.programmedByAdd.keys()]) if (gone(k)) this.programmedByAdd.delete(k);
  }
}

interface PassContext {
  /** Pods programmed at once. */
  readonly concurrency: number;
  /** The world the previous pass rendered from: a change pass re-renders only the pods the difference affects. */
  previous: PolicyWorld;
  /**
   * Set once a resync has read every local pod's netns: a local pod (netns) that appears after that is a new
   * sandbox (when the CNI daemon runs in this process, its ADD programmed it: programPod), a fresh netns with no
   * table of ours to look for.
   */
  settled: boolean;
  readonly node: string;
  readonly render: PolicyRenderer;
  readonly tables: PolicyTables["Service"];
  readonly ledger: PodLedger;
  readonly metrics: NetpolMetrics;
  readonly events: PodEvents;
}

/**
 * One pass over the local pods. `changedSince` (the arrival of the oldest change it answers) makes every pod it
 * applies count in the convergence histogram; `verify` reads every table back (the resync). `since` is the ledger's
 * tick taken before `inputs` were read.
 */
const runPass = (
  ctx: PassContext,
  inputs: WorldInputs,
  since: number,
  verify: boolean,
  changedSince: number | undefined,
) =>
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
        // Under the pod's lock; an ADD that programmed the pod after this pass read the world knows better: its
        // changes (DanmEps, network-status) wake the next pass.
        const fresh = ctx.settled && !verify && !ctx.ledger.failures.has(pod.key) &&
          ctx.ledger.applied.get(pod.key)?.netns !== pod.netns;
        const r = yield* Effect.result(ctx.ledger.locks.withLock(
          pod.key,
          ctx.ledger.addedSince(pod.key, since) ? Effect.succeed<Outcome>("unchanged") : Effect.flatMap(
            ctx.render(world, pod.key),
            (table) =>
              convergePod(
                ctx.tables,
                ctx.ledger.applied,
                pod,
                table,
                verify ? "verify" : fresh && table === undefined ? "new" : "changed",
              ),
          ),
        ));
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
        (r.success === "removed" ? removed : applied).push(pod.key);
        ctx.metrics.applies.inc({ result: r.success });
        if (changedSince !== undefined) {
          ctx.metrics.convergeSeconds.observe(((yield* Clock.currentTimeMillis) - changedSince) / 1000);
        }
      }), { concurrency: ctx.concurrency, discard: true });
    ctx.ledger.forget(new Set(local.keys()), since);
    if (verify) ctx.settled = true;
    ctx.events.retain(new Set(local.keys()));
    const policed = [...ctx.ledger.applied.values()].filter((a) => a.table !== undefined).length;
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
      settled: false,
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
    // Passes run one at a time (the loop and syncNow); pods are locked one by one (PodLedger.locks).
    const passLock = yield* Semaphore.make(1);
    const read = (records: boolean) => snapshot(caches, config.sandboxes, records);

    const pass = (verify: boolean, changedSince?: number) =>
      passLock.withPermit(Effect.suspend(() => {
        const since = ledger.tick();
        const policing = [...ledger.applied.values()].some((a) => a.table !== undefined);
        return Effect.flatMap(
          Effect.orDie(read(verify || policing)),
          (inputs) => runPass(ctx, inputs, since, verify, changedSince),
        );
      }));

    const programPod = (o: PodOverride) =>
      Effect.gen(function* () {
        const key = `${o.pod.metadata.namespace ?? ""}/${o.pod.metadata.name ?? ""}`;
        const fail = (reason: string) => new PolicyProgramFailed({ pod: key, reason });
        yield* Effect.timeoutOrElse(Effect.mapError(synced, (e) => fail(`policy caches: ${e.message}`)), {
          duration: config.syncTimeout ?? "30 seconds",
          orElse: () => Effect.fail(fail("the policy caches have not synced yet")),
        });
        // No policy anywhere (the common case on the CNI hot path): nothing to build, nothing to run — and the pod's
        // fresh netns is known to hold no table, so the passes need not read it back either.
        if (caches.policies === undefined || (yield* caches.policies.list).length === 0) {
          ledger.applied.set(key, { netns: o.netns, table: undefined, listing: undefined });
          return;
        }
        // Only this pod's lock: a pass over other pods does not hold the ADD up.
        yield* ledger.locks.withLock(
          key,
          Effect.gen(function* () {
            ledger.programmedByAdd.set(key, ledger.tick());
            const inputs = yield* Effect.timeoutOrElse(
              Effect.mapError(read(true), (e) => fail(`policy caches: ${e.message}`)),
              {
                duration: config.syncTimeout ?? "30 seconds",
                orElse: () => Effect.fail(fail("the policy caches have not synced yet")),
              },
            );
            const { world } = nodeWorld(inputs, node, o);
            const table = yield* Effect.mapError(config.render(world, key), (e) => fail(e.message));
            const r = yield* Effect.mapError(
              convergePod(tables, ledger.applied, { key, netns: o.netns }, table, "new"),
              (e) => fail(e.message),
            );
            if (r === "applied") metrics.applies.inc({ result: "applied" });
          }),
        );
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
