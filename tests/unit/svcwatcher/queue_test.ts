// The keyed work queue: coalescing, one pass per key at a time, bounded concurrency, backoff on failure.
import { Deferred, Effect, Fiber, Schema, type Scope } from "effect";
import { makeWorkQueue } from "../../../core/svcwatcher/queue.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

class Boom extends Schema.TaggedError<Boom>()("Boom", { key: Schema.String }) {}

const run = <A, E>(eff: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Effect.scoped(eff));

/** Polls until `cond` holds (at most 5 s). */
const until = (cond: () => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 500 && !cond(); i++) yield* Effect.sleep(10);
    assert(cond(), "condition not reached within 5 s");
  });

Deno.test("queue: adds of a waiting key coalesce into one pass", () =>
  run(Effect.gen(function* () {
    const q = yield* makeWorkQueue();
    const seen: string[] = [];
    for (let i = 0; i < 5; i++) yield* q.add("a");
    yield* q.addAll(["b", "a", "b"]);
    assertEquals(yield* q.pending, 2);
    yield* Effect.forkScoped(q.run(2, (k) => Effect.sync(() => seen.push(k))));
    yield* until(() => seen.length >= 2);
    yield* Effect.sleep(50);
    assertEquals(seen.sort(), ["a", "b"]);
  })));

Deno.test("queue: a key added while it is processed runs again afterwards, never concurrently", () =>
  run(Effect.gen(function* () {
    const q = yield* makeWorkQueue();
    const gate = yield* Deferred.make<void>();
    let running = 0, maxRunning = 0, passes = 0;
    yield* q.add("a");
    yield* Effect.forkScoped(q.run(4, () =>
      Effect.gen(function* () {
        running++;
        maxRunning = Math.max(maxRunning, running);
        passes++;
        if (passes === 1) yield* Deferred.await(gate);
        running--;
      })));
    yield* until(() => passes === 1);
    // Three adds during the first pass: one more pass, after the first ends.
    yield* q.add("a");
    yield* q.add("a");
    yield* q.add("a");
    yield* Effect.sleep(50);
    assertEquals(passes, 1);
    yield* Deferred.succeed(gate, undefined);
    yield* until(() => passes === 2);
    yield* Effect.sleep(50);
    assertEquals([passes, maxRunning], [2, 1]);
  })));

Deno.test("queue: at most `workers` keys are processed at a time", () =>
  run(Effect.gen(function* () {
    const q = yield* makeWorkQueue();
    let running = 0, maxRunning = 0, done = 0;
    yield* q.addAll(Array.from({ length: 12 }, (_, i) => `k${i}`));
    yield* Effect.forkScoped(q.run(3, () =>
      Effect.gen(function* () {
        running++;
        maxRunning = Math.max(maxRunning, running);
        yield* Effect.sleep(20);
        running--;
        done++;
      })));
    yield* until(() => done === 12);
    assertEquals(maxRunning, 3);
  })));

Deno.test("queue: failures retry with a doubling per-key backoff that a success resets", () =>
  run(Effect.gen(function* () {
    const q = yield* makeWorkQueue({ baseDelayMs: 40, maxDelayMs: 1000 });
    assertEquals([1, 2, 3, 4, 10].map(q.backoff), [40, 80, 160, 320, 1000]);
    const times: number[] = [];
    let failuresLeft = 3;
    yield* q.add("a");
    const worker = yield* Effect.forkScoped(q.run(1, (key) =>
      Effect.gen(function* () {
        times.push(performance.now());
        if (failuresLeft > 0) {
          failuresLeft--;
          return yield* new Boom({ key });
        }
      })));
    yield* until(() => times.length === 4);
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    // Sleeps never end early; allow 2 ms for timer granularity.
    assert(gaps[0] >= 38 && gaps[1] >= 78 && gaps[2] >= 158, `gaps ${gaps.map((g) => g.toFixed(0))}`);
    assertEquals(q.failures("a"), 0);
    // After the success, the next failure waits the base delay again.
    failuresLeft = 1;
    const before = times.length;
    yield* q.add("a");
    yield* until(() => times.length === before + 2);
    const gap = times[before + 1] - times[before];
    assert(gap >= 38 && gap < 150, `gap after reset ${gap.toFixed(0)} ms`);
    yield* Fiber.interrupt(worker);
  })));

Deno.test("queue: a defect in the handler is retried like a failure", () =>
  run(Effect.gen(function* () {
    const q = yield* makeWorkQueue({ baseDelayMs: 5 });
    let calls = 0;
    yield* q.add("a");
    yield* Effect.forkScoped(q.run(1, () =>
      Effect.suspend(() => {
        calls++;
        return calls === 1 ? Effect.die(new Error("bug")) : Effect.void;
      })));
    yield* until(() => calls === 2);
    assertEquals(q.failures("a"), 0);
  })));
