// Lease leader election on the memory twin: one leader, takeover after a crash only once the lease expired,
// immediate handover on shutdown, and a leader that cannot renew stops leading without giving up.
import { Effect, Fiber, type Scope } from "effect";
import { makeMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import { LeaseResource } from "../../../core/api/k8s.ts";
import { Kube, type KubeService } from "../../../core/ports/kube.ts";
import { type LeaderElectionOptions, microTime, runLeaderElected } from "../../../core/svcwatcher/leader.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { runScoped } from "./harness.ts";

const timing = { leaseDurationMs: 800, renewDeadlineMs: 500, retryPeriodMs: 100 };

interface Candidate {
  readonly id: string;
  leading: boolean;
  /** Whether the leading work is running right now. */
  working: boolean;
  readonly transitions: Array<{ leading: boolean; at: number }>;
  readonly fiber: Fiber.Fiber<never>;
}

const candidate = (
  kube: KubeService,
  id: string,
  extra: Partial<LeaderElectionOptions> = {},
): Effect.Effect<Candidate, never, Scope.Scope> =>
  Effect.gen(function* () {
    const c = { id, leading: false, working: false, transitions: [] as Candidate["transitions"] } as {
      -readonly [K in keyof Candidate]: Candidate[K];
    };
    const work = Effect.gen(function* () {
      c.working = true;
      return yield* Effect.never;
    }).pipe(Effect.onInterrupt(() => Effect.sync(() => (c.working = false))));
    c.fiber = yield* runLeaderElected({
      namespace: "kube-system",
      name: "danm-svcwatcher",
      identity: id,
      ...timing,
      onLeading: (leading) =>
        Effect.sync(() => {
          c.leading = leading;
          c.transitions.push({ leading, at: performance.now() });
        }),
      ...extra,
    }, work).pipe(Effect.provideService(Kube, kube), Effect.forkScoped);
    return c;
  });

const waitFor = (cond: () => boolean, ms: number, what: string) =>
  Effect.gen(function* () {
    const deadline = performance.now() + ms;
    while (!cond()) {
      assert(performance.now() < deadline, `${what}: not within ${ms} ms`);
      yield* Effect.sleep(10);
    }
    return performance.now();
  });

Deno.test("leader: MicroTime has six fractional digits", () => {
  assertEquals(microTime(Date.UTC(2024, 0, 2, 3, 4, 5, 678)), "2024-01-02T03:04:05.678000Z");
});

Deno.test("leader: one of two candidates leads; after it crashes the other takes over once the lease expired", () =>
  runScoped(Effect.gen(function* () {
    const kube = yield* makeMemoryKube(new MemoryApiServer());
    const a = yield* candidate(kube, "a", { releaseOnCancel: false });
    const b = yield* candidate(kube, "b", { releaseOnCancel: false });
    yield* waitFor(() => a.leading || b.leading, 2_000, "a leader");
    yield* Effect.sleep(timing.leaseDurationMs); // long enough for a second leader to appear if it could
    assertEquals([a.leading, b.leading].filter(Boolean).length, 1);
    const [leader, other] = a.leading ? [a, b] : [b, a];
    assert(leader.working && !other.working, "only the leader works");
    const lease = yield* kube.get(LeaseResource, "danm-svcwatcher", { namespace: "kube-system" });
    assertEquals(lease.spec?.holderIdentity, leader.id);
    assertEquals(lease.spec?.leaseDurationSeconds, 1);
    assertMatch(lease.spec?.renewTime ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    // Crash: no release. The other replica must respect the lease, then take it within about one duration.
    const crashedAt = performance.now();
    yield* Fiber.interrupt(leader.fiber);
    const tookOver = yield* waitFor(() => other.leading, 3_000, "takeover");
    const elapsed = tookOver - crashedAt;
    assert(elapsed >= 500, `took over after ${elapsed.toFixed(0)} ms: before the lease could expire`);
    assert(elapsed <= 1_000 + 2 * timing.retryPeriodMs + 300, `took over after ${elapsed.toFixed(0)} ms`);
    const after = yield* kube.get(LeaseResource, "danm-svcwatcher", { namespace: "kube-system" });
    assertEquals([after.spec?.holderIdentity, after.spec?.leaseTransitions], [other.id, 1]);
  })));

Deno.test("leader: a leader shutting down hands the lease over at once", () =>
  runScoped(Effect.gen(function* () {
    const kube = yield* makeMemoryKube(new MemoryApiServer());
    const a = yield* candidate(kube, "a");
    yield* waitFor(() => a.leading, 2_000, "a leads");
    const b = yield* candidate(kube, "b");
    yield* Effect.sleep(3 * timing.retryPeriodMs);
    assert(!b.leading, "b must not lead while a renews");
    const stoppedAt = performance.now();
    yield* Fiber.interrupt(a.fiber);
    assert(!a.working, "a's work stopped before the lease was released");
    const tookOver = yield* waitFor(() => b.leading, 2_000, "handover");
    assert(
      tookOver - stoppedAt < 2 * timing.retryPeriodMs + 200,
      `handover took ${(tookOver - stoppedAt).toFixed(0)} ms`,
    );
  })));

Deno.test("leader: a leader that cannot renew stops working within the renew deadline and campaigns on", () =>
  runScoped(Effect.gen(function* () {
    const server = new MemoryApiServer();
    const kube = yield* makeMemoryKube(server);
    const a = yield* candidate(kube, "a");
    yield* waitFor(() => a.leading && a.working, 2_000, "a leads");
    // The apiserver refuses a's renewals (as when a is partitioned from it).
    const unblock = server.addAdmissionHook({
      name: "partition-a",
      phase: "validating",
      matches: (r) => r.resource.plural === "leases" && r.operation === "UPDATE",
      admit: (r) =>
        Effect.succeed(
          (r.object?.spec as { holderIdentity?: string } | undefined)?.holderIdentity === "a"
            ? { allowed: false, message: "partitioned", code: 503 }
            : { allowed: true },
        ),
    });
    const blockedAt = performance.now();
    yield* waitFor(() => !a.leading && !a.working, 2_000, "a stops leading");
    const stopped = a.transitions[a.transitions.length - 1].at - blockedAt;
    assert(
      stopped <= timing.renewDeadlineMs + 2 * timing.retryPeriodMs + 200,
      `stopped after ${stopped.toFixed(0)} ms`,
    );
    // b takes the expired lease; once b shuts down and a can write again, a leads again: it never gave up.
    const b = yield* candidate(kube, "b");
    yield* waitFor(() => b.leading, 3_000, "b leads");
    unblock();
    yield* Fiber.interrupt(b.fiber);
    yield* waitFor(() => a.leading && a.working, 2_000, "a leads again");
    assertEquals(a.transitions.map((t) => t.leading), [true, false, true]);
  })));
