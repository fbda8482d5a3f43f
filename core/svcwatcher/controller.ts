// svcwatcher: Endpoints and EndpointSlices for Services over pod networks (danm-spec §6), level-triggered and
// highly available.
//
//   informers (Services, Pods, DanmEps, our EndpointSlices, our Endpoints)
//     → ClusterView (indexes; every change names the keys it affects)
//     → two keyed work queues (Service keys, DanmEp keys): dedupe, bounded concurrency, per-key backoff
//     → syncService / syncDanmEpLabels (reconcile.ts)
//
// All of it runs only while this replica holds the leader Lease; on losing it everything stops (informers
// included) and a new term starts from a fresh list, which is also the full resync. A periodic resync enqueues
// every Service again as a safety net; unchanged state writes nothing.
import { Deferred, Effect, Exit, Schedule, Stream } from "effect";
import { DanmEpResource } from "../api/danm.ts";
import { EndpointSliceResource, EndpointsResource, PodResource, ServiceResource } from "../api/k8s.ts";
import { type Informer, type InformerEvent, Kube, type KubeError } from "../ports/kube.ts";
import { makeEventRecorder } from "./events.ts";
import { type LeaderElectionOptions, runLeaderElected } from "./leader.ts";
import { SvcwatcherMetrics } from "./metrics.ts";
import { ControllerName, DefaultMaxEndpointsPerSlice, EndpointsOwnerLabel, ManagedByLabel } from "./model.ts";
import { syncDanmEpLabels, type SyncDeps, syncService } from "./reconcile.ts";
import { makeWorkQueue, type WorkQueueOptions } from "./queue.ts";
import { type Affected, ClusterView } from "./view.ts";

export interface ControllerOptions {
  /** Names this replica in Events and the Lease. */
  readonly identity: string;
  /** Serve only this namespace (default: all). */
  readonly namespace?: string;
  /** Services (and, separately, DanmEps) processed at a time. Default 4. */
  readonly workers?: number;
  readonly maxEndpointsPerSlice?: number;
  /** Every Service is enqueued again this often. Default 5 min. */
  readonly resyncPeriodMs?: number;
  readonly retry?: WorkQueueOptions;
  /** Longest wait for the informers to show a pass's own writes. Default 5 s. */
  readonly observeTimeoutMs?: number;
  /** Called once the view holds the first full state and the workers start (tests, benchmarks). */
  readonly onStarted?: Effect.Effect<void>;
}

export interface SvcwatcherOptions extends ControllerOptions {
  readonly lease: Omit<LeaderElectionOptions, "identity" | "onLeading">;
}

/**
 * The controller proper, for as long as it runs (it is interrupted when leadership ends). Fails only if an
 * informer stops for good.
 */
export const runController = (
  options: ControllerOptions,
  metrics: SvcwatcherMetrics = new SvcwatcherMetrics(),
): Effect.Effect<never, KubeError, Kube> =>
  Effect.scoped(Effect.gen(function* () {
    const kube = yield* Kube;
    const view = yield* ClusterView.make;
    const deps: SyncDeps = {
      kube,
      view,
      metrics,
      events: makeEventRecorder(kube, options.identity, metrics),
      maxEndpointsPerSlice: options.maxEndpointsPerSlice ?? DefaultMaxEndpointsPerSlice,
      observeTimeoutMs: options.observeTimeoutMs ?? 5_000,
      foreignEndpoints: new Set(),
    };
    const where = options.namespace ? { namespace: options.namespace } : {};
    const services = yield* kube.informer(ServiceResource, where);
    const pods = yield* kube.informer(PodResource, where);
    const danmEps = yield* kube.informer(DanmEpResource, where);
    const slices = yield* kube.informer(EndpointSliceResource, {
      ...where,
      labelSelector: `${ManagedByLabel}=${ControllerName}`,
    });
    const endpoints = yield* kube.informer(EndpointsResource, {
      ...where,
      labelSelector: `${EndpointsOwnerLabel}=${ControllerName}`,
    });

    const serviceQueue = yield* makeWorkQueue(options.retry);
    const labelQueue = yield* makeWorkQueue(options.retry);
    const route = (a: Affected) => Effect.andThen(serviceQueue.addAll(a.services), labelQueue.addAll(a.danmEps));

    // The workers wait until every consumer has applied its informer's first full state.
    const sources = 5;
    let loaded = 0;
    const viewLoaded = yield* Deferred.make<void>();
    const consume = <A>(informer: Informer<A>, apply: (ev: InformerEvent<A>) => Effect.Effect<Affected>) => {
      let first = true;
      return informer.changes.pipe(
        Stream.runForEach((ev) =>
          Effect.gen(function* () {
            yield* route(yield* apply(ev));
            if (first && ev._tag === "Synced") {
              first = false;
              if (++loaded === sources) yield* Deferred.succeed(viewLoaded, undefined);
            }
          })
        ),
      );
    };
    const consumers = Effect.all([
      consume(services, (ev) => view.applyService(ev)),
      consume(pods, (ev) => view.applyPod(ev)),
      consume(danmEps, (ev) => view.applyDanmEp(ev)),
      consume(slices, (ev) => view.applySlice(ev)),
      consume(endpoints, (ev) => view.applyEndpoints(ev)),
    ], { concurrency: "unbounded", discard: true });

    const handleService = (key: string) =>
      Effect.gen(function* () {
        const started = performance.now();
        const exit = yield* Effect.exit(syncService(deps, key));
        metrics.syncDuration.observe((performance.now() - started) / 1000);
        if (Exit.isSuccess(exit)) {
          metrics.syncs.inc({ result: "success" });
          return;
        }
        metrics.syncs.inc({ result: "error" });
        const failure = exit.cause.reasons.find((r) => r._tag === "Fail");
        if (failure && failure._tag === "Fail") {
          const e = failure.error;
          metrics.syncErrors.inc({ error: e.errorTag });
          if (e.race) yield* Effect.logDebug(`${e.message} (retrying)`);
          else {
            yield* Effect.logError(e.message);
            const svc = view.services.byKey.get(key);
            if (svc) yield* deps.events.warn(svc, "FailedToSyncEndpoints", e.message);
          }
        } else {
          metrics.syncErrors.inc({ error: "defect" });
          yield* Effect.logError(`syncing Service ${key} died: ${exit.cause}`);
        }
        return yield* Effect.failCause(exit.cause);
      });

    const handleDanmEp = (key: string) =>
      syncDanmEpLabels(deps, key).pipe(Effect.tapError((e) => Effect.logError(e.message)));

    const resync = Effect.gen(function* () {
      yield* serviceQueue.addAll(view.interestingServices());
      yield* labelQueue.addAll(view.danmEps.byKey.keys());
    }).pipe(
      Effect.delay(options.resyncPeriodMs ?? 300_000),
      Effect.forever,
    );
    const gauges = Effect.gen(function* () {
      metrics.queuePending.set(yield* serviceQueue.pending, { queue: "services" });
      metrics.queuePending.set(yield* labelQueue.pending, { queue: "danmeps" });
    }).pipe(Effect.repeat(Schedule.spaced("1 second")), Effect.asVoid);

    metrics.viewLoaded.set(0);
    yield* Effect.addFinalizer(() => Effect.sync(() => metrics.viewLoaded.set(0)));
    const workers = Effect.gen(function* () {
      yield* Deferred.await(viewLoaded);
      metrics.viewLoaded.set(1);
      yield* Effect.logInfo(`svcwatcher ${options.identity}: view loaded, reconciling`);
      if (options.onStarted) yield* options.onStarted;
      const n = options.workers ?? 4;
      return yield* Effect.all([
        serviceQueue.run(n, handleService),
        labelQueue.run(n, handleDanmEp),
        resync,
        gauges,
      ], { concurrency: "unbounded", discard: true });
    });

    // The consumers end only by failing (an informer died); that ends the term.
    yield* Effect.raceFirst(consumers, workers);
    return yield* Effect.never;
  }));

/** svcwatcher as deployed: the controller under leader election, forever. */
export const runSvcwatcher = (
  options: SvcwatcherOptions,
  metrics: SvcwatcherMetrics = new SvcwatcherMetrics(),
): Effect.Effect<never, never, Kube> => {
  metrics.leader.set(0, { identity: options.identity });
  return runLeaderElected(
    {
      ...options.lease,
      identity: options.identity,
      onLeading: (leading) =>
        Effect.sync(() => {
          metrics.leader.set(leading ? 1 : 0, { identity: options.identity });
          metrics.leaderTransitions.inc({ event: leading ? "acquired" : "lost" });
        }),
    },
    runController(options, metrics),
  );
};
