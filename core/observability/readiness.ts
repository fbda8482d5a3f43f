// Readiness that means the component works: each check answers undefined (fine) or why not; /readyz (serveMetrics)
// answers 503 with the reasons while any check has a problem. Liveness (/healthz) stays separate: a component that
// cannot reach the apiserver is not ready, but restarting it would not help.
import { Effect, SubscriptionRef } from "effect";
import type { Informer, KubeError } from "../ports/kube.ts";
import type { ReadinessCheck } from "./metrics.ts";

/**
 * The apiserver's reachability through `read` (a cheap GET, made anew for each probe; NotFound counts as an answer), probed at most every
 * `ttlMs` so that frequent callers (kubelet probes, CNI STATUS polls) cost one request per period; concurrent callers
 * share one probe.
 */
export const makeApiProbe = (
  read: () => Effect.Effect<unknown, KubeError>,
  options: { readonly ttlMs?: number; readonly timeoutMs?: number } = {},
): Effect.Effect<ReadinessCheck> => {
  const timeoutMs = options.timeoutMs ?? 2_000, ttlMs = options.ttlMs ?? 2_000;
  const probe: ReadinessCheck = Effect.suspend(read).pipe(
    Effect.as(undefined),
    Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
    Effect.catch((e) => Effect.succeed(`the apiserver does not answer: ${e.message}`)),
    Effect.timeoutOrElse({
      duration: `${timeoutMs} millis`,
      orElse: () => Effect.succeed(`the apiserver does not answer within ${timeoutMs} ms`),
    }),
  );
  return ttlMs > 0 ? Effect.cachedWithTTL(probe, `${ttlMs} millis`) : Effect.succeed(probe);
};

/** Every check's problem, "; "-joined with its name, or undefined when all are fine. Checks run concurrently. */
export const allReady = (checks: Readonly<Record<string, ReadinessCheck>>): ReadinessCheck =>
  Effect.map(
    Effect.forEach(
      Object.entries(checks),
      ([name, check]) => Effect.map(check, (p) => (p === undefined ? undefined : `${name}: ${p}`)),
      { concurrency: "unbounded" },
    ),
    (problems) => {
      const found = problems.filter((p): p is string => p !== undefined);
      return found.length === 0 ? undefined : found.join("; ");
    },
  );

/** Whether an informer has applied its first list. */
export const informerSynced = <A>(i: Informer<A>): Effect.Effect<boolean> =>
  Effect.map(SubscriptionRef.get(i.state), (s) => s.synced);

/** Not ready while any of the named caches has not applied its first list. */
export const cachesSynced = (caches: ReadonlyArray<readonly [string, Effect.Effect<boolean>]>): ReadinessCheck =>
  Effect.map(
    Effect.forEach(caches, ([name, synced]) => Effect.map(synced, (ok) => (ok ? undefined : name))),
    (names) => {
      const waiting = names.filter((n): n is string => n !== undefined);
      return waiting.length === 0 ? undefined : `waiting for the first list of ${waiting.join(", ")}`;
    },
  );
