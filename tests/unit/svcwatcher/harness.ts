// Runs svcwatcher's controller against the memory apiserver twin and counts the writes it makes.
import { Effect, Fiber, type Scope } from "effect";
import { makeMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import { Kube, type KubeService } from "../../../core/ports/kube.ts";
import { type ControllerOptions, runController } from "../../../core/svcwatcher/controller.ts";
import { SvcwatcherMetrics } from "../../../core/svcwatcher/metrics.ts";
import { assert } from "../../harness/assert.ts";

export interface Writes {
  /** "VERB plural/name" of every write to the kinds svcwatcher writes, in order. */
  readonly log: string[];
}

export interface Env {
  readonly server: MemoryApiServer;
  readonly kube: KubeService;
  readonly writes: Writes;
  /** Starts a controller (a fresh one each time); returns its metrics and a stop effect. */
  readonly start: (
    options?: Partial<ControllerOptions>,
  ) => Effect.Effect<{ metrics: SvcwatcherMetrics; stop: Effect.Effect<void> }, never, Scope.Scope>;
}

const watched = new Set(["endpoints", "endpointslices", "danmeps", "events"]);

export const makeEnv: Effect.Effect<Env, never, Scope.Scope> = Effect.gen(function* () {
  const server = new MemoryApiServer({ bookmarkIntervalMs: 60_000 });
  const writes: Writes = { log: [] };
  server.addAdmissionHook({
    name: "count-writes",
    phase: "validating",
    matches: (r) => watched.has(r.resource.plural) && !r.dryRun,
    admit: (r) =>
      Effect.sync(() => {
        writes.log.push(`${r.operation} ${r.resource.plural}/${r.name}`);
        return { allowed: true };
      }),
  });
  const kube = yield* makeMemoryKube(server);
  const start = (options: Partial<ControllerOptions> = {}) =>
    Effect.gen(function* () {
      const metrics = new SvcwatcherMetrics();
      const fiber = yield* runController(
        { identity: "test", retry: { baseDelayMs: 5, maxDelayMs: 200 }, observeTimeoutMs: 2_000, ...options },
        metrics,
      ).pipe(Effect.provideService(Kube, kube), Effect.forkScoped);
      return { metrics, stop: Fiber.interrupt(fiber).pipe(Effect.asVoid) };
    });
  return { server, kube, writes, start };
});

/** Waits until the controller has done at least `atLeast` Service passes and then been idle for `quietMs`. */
export const settled = (metrics: SvcwatcherMetrics, atLeast = 1, quietMs = 150) =>
  Effect.gen(function* () {
    let last = -1, since = Date.now();
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const syncs = metrics.syncs.get({ result: "success" }) + metrics.syncs.get({ result: "error" });
      const n = syncs + metrics.labelSyncs.get({ result: "success" });
      if (n !== last || syncs < atLeast) {
        last = n;
        since = Date.now();
      } else if (Date.now() - since >= quietMs) return;
      yield* Effect.sleep(10);
    }
    assert(false, "the controller did not settle within 10 s");
  });

export const runScoped = <A, E>(eff: Effect.Effect<A, E, Scope.Scope>): Promise<A> =>
  Effect.runPromise(Effect.scoped(eff));
