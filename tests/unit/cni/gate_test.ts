// The node daemon's request gate (core/cni/gate.ts) on its own: the bound, the queue, the drain and its cut-off.
import { Deferred, Effect, Fiber } from "effect";
import { makeRequestGate } from "../../../core/cni/gate.ts";
import { assertEquals, assertMatch } from "../../harness/assert.ts";

const busy = (reason: string) => `busy: ${reason}`;

Deno.test("gate: at most maxConcurrent run, maxQueued wait in order, the rest are refused at once", async () => {
  await Effect.runPromise(Effect.gen(function* () {
    const gate = yield* makeRequestGate({ maxConcurrent: 2, maxQueued: 1 });
    const release = yield* Deferred.make<void>();
    const order: number[] = [];
    const work = (i: number) =>
      Effect.andThen(Deferred.await(release), Effect.sync(() => (order.push(i), `done ${i}`)));
    const fibers = [];
    for (let i = 0; i < 3; i++) {
      fibers.push(yield* Effect.forkChild(gate.admit(work(i), busy)));
      yield* Effect.yieldNow;
    }
    assertEquals(yield* gate.stats, { running: 2, queued: 1, rejected: 0 });
    assertMatch(
      yield* gate.admit(work(9), busy),
      /^busy: the danm node daemon is busy: 2 requests in progress and 1 waiting/,
    );
    yield* Deferred.succeed(release, undefined);
    assertEquals(yield* Fiber.joinAll(fibers), ["done 0", "done 1", "done 2"]);
    assertEquals(yield* gate.stats, { running: 0, queued: 0, rejected: 1 });
  }));
});

Deno.test("gate: drain refuses waiting and new requests, lets running ones finish, cuts off the late ones", async () => {
  await Effect.runPromise(Effect.gen(function* () {
    const gate = yield* makeRequestGate({ maxConcurrent: 2, maxQueued: 4 });
    const never = Effect.never.pipe(Effect.as("never"));
    const quick = Effect.sleep("50 millis").pipe(Effect.as("quick done"));
    const slow = yield* Effect.forkChild(gate.admit(never, busy));
    const fast = yield* Effect.forkChild(gate.admit(quick, busy));
    yield* Effect.yieldNow;
    const waiting = yield* Effect.forkChild(gate.admit(quick, busy));
    yield* Effect.yieldNow;
    const drained = yield* Effect.forkChild(gate.drain(300));
    assertMatch(yield* Fiber.join(waiting), /^busy: the danm node daemon is shutting down/);
    assertMatch(yield* gate.admit(quick, busy), /shutting down/);
    assertEquals(yield* Fiber.join(fast), "quick done");
    assertMatch(yield* Fiber.join(slow), /stopped before this request finished/);
    assertEquals(yield* Fiber.join(drained), { finished: 1, cutOff: 1 });
  }));
});
