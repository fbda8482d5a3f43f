// The resilient watch loop (adapters/kube/watch.ts) against scripted fake sources: resume, relist on 410,
// backoff on errors, failure on permanent errors.
import { Effect, Schedule, Stream } from "effect";
import {
  KubeDecodeError,
  type KubeError,
  KubeGone,
  KubeUnavailable,
  type WatchEvent,
} from "../../../core/ports/kube.ts";
import { resilientWatch, type WatchSource } from "../../../adapters/kube/watch.ts";
import { assert, assertEquals, fail } from "../../harness/assert.ts";

type Ev = WatchEvent<string>;
const where = { verb: "watch", kind: "Thing", detail: "scripted" };
const added = (object: string, resourceVersion: string): Ev => ({ _tag: "Added", object, resourceVersion });

/** A source whose n-th watch connection is scripted by sessions[n]; records the versions asked for. */
function scripted(
  sessions: ReadonlyArray<Stream.Stream<Ev, KubeError>>,
  lists: ReadonlyArray<{ items: string[]; resourceVersion: string }> = [],
) {
  const asked: string[] = [];
  let listed = 0;
  const source: WatchSource<string> = {
    list: Effect.suspend(() => {
      const l = lists[listed++];
      return l ? Effect.succeed(l) : Effect.die(new Error("unexpected list"));
    }),
    watchFrom: (rv) =>
      Stream.suspend(() => {
        asked.push(rv);
        // After the script: a connection that stays open without events.
        return sessions[asked.length - 1] ?? Stream.never;
      }),
  };
  return { source, asked, lists: () => listed };
}

const fast = Schedule.spaced("1 millis").pipe(Schedule.setInputType<KubeError>());

const take = (s: Stream.Stream<Ev, KubeError>, n: number) =>
  Effect.runPromise(Stream.take(s, n).pipe(Stream.runCollect, Effect.timeout("5 seconds")));

Deno.test("watch loop: resumes from the last resourceVersion after the server closes the watch", async () => {
  const { source, asked } = scripted([
    Stream.make(added("a", "6"), { _tag: "Modified", object: "a", resourceVersion: "7" }),
    Stream.make({ _tag: "Deleted", object: "a", resourceVersion: "9" }),
  ]);
  const evs = await take(resilientWatch(source, { resourceVersion: "5", retry: fast }), 3);
  assertEquals(evs.map((e) => e._tag), ["Added", "Modified", "Deleted"]);
  assertEquals(asked, ["5", "7"]);
});

Deno.test("watch loop: bookmarks move the cursor", async () => {
  const { source, asked } = scripted([
    Stream.make({ _tag: "Bookmark", resourceVersion: "20" }),
    Stream.make(added("b", "21")),
  ]);
  const evs = await take(resilientWatch(source, { resourceVersion: "5", retry: fast }), 2);
  assertEquals(evs.map((e) => e._tag), ["Bookmark", "Added"]);
  assertEquals(asked, ["5", "20"]);
});

Deno.test("watch loop: without a start version it lists first and emits an initial Sync", async () => {
  const { source, asked } = scripted([Stream.make(added("c", "12"))], [{ items: ["x", "y"], resourceVersion: "11" }]);
  const evs = await take(resilientWatch(source, { retry: fast }), 2);
  const sync = evs[0];
  if (sync._tag !== "Sync") return fail("first event must be a Sync");
  assertEquals([sync.items, sync.resourceVersion, sync.reason], [["x", "y"], "11", "initial"]);
  assertEquals(asked, ["11"]);
});

Deno.test("watch loop: 410 Gone makes it relist and emit a Sync before resuming", async () => {
  const { source, asked, lists } = scripted(
    [Stream.make(added("a", "6")).pipe(Stream.concat(Stream.fail(new KubeGone(where)))), Stream.make(added("z", "31"))],
    [{ items: ["a", "z0"], resourceVersion: "30" }],
  );
  const evs = await take(resilientWatch(source, { resourceVersion: "5", retry: fast }), 3);
  assertEquals(evs.map((e) => e._tag), ["Added", "Sync", "Added"]);
  const sync = evs[1];
  if (sync._tag !== "Sync") return fail("expected Sync");
  assertEquals(sync.reason, "expired");
  assertEquals(sync.items, ["a", "z0"]);
  assertEquals(asked, ["5", "30"]);
  assertEquals(lists(), 1);
});

Deno.test("watch loop: transient errors are retried with the default exponential backoff", async () => {
  const unavailable = Stream.fail(new KubeUnavailable(where));
  const { source, asked } = scripted([unavailable, unavailable, Stream.make(added("a", "6"))]);
  const started = Date.now();
  const evs = await take(resilientWatch(source, { resourceVersion: "5" }), 1);
  const elapsed = Date.now() - started;
  assertEquals(evs.map((e) => e._tag), ["Added"]);
  assertEquals(asked, ["5", "5", "5"]);
  // 200 ms then 400 ms, each jittered to 80–120 %.
  assert(elapsed >= 450, `backed off between attempts (${elapsed} ms)`);
});

Deno.test("watch loop: a permanent error ends the stream without retrying", async () => {
  const { source, asked } = scripted([Stream.fail(new KubeDecodeError(where))]);
  const exit = await Effect.runPromise(
    Effect.flip(Stream.runCollect(resilientWatch(source, { resourceVersion: "5" })).pipe(Effect.timeout("5 seconds"))),
  );
  assertEquals(exit._tag, "KubeDecodeError");
  assertEquals(asked, ["5"]);
});

Deno.test("watch loop: gives up when its retry schedule is exhausted", async () => {
  const unavailable = Stream.fail(new KubeUnavailable(where));
  const { source, asked } = scripted([unavailable, unavailable, unavailable, unavailable]);
  const retry = Schedule.recurs(2).pipe(Schedule.setInputType<KubeError>());
  const err = await Effect.runPromise(
    Effect.flip(Stream.runCollect(resilientWatch(source, { resourceVersion: "5", retry }))),
  );
  assertEquals(err._tag, "KubeUnavailable");
  assertEquals(asked.length, 3);
});

Deno.test("watch loop: progress resets the backoff", async () => {
  // Fails, delivers an event, fails again: with a 2-retry budget that never resets, the third failure would end
  // the stream; because an event went through in between, it keeps going.
  const unavailable = Stream.fail(new KubeUnavailable(where));
  const { source } = scripted([
    unavailable,
    unavailable,
    Stream.make(added("a", "6")).pipe(Stream.concat(unavailable)),
    unavailable,
    Stream.make(added("b", "7")),
  ]);
  const retry = Schedule.recurs(2).pipe(Schedule.setInputType<KubeError>());
  const evs = await take(resilientWatch(source, { resourceVersion: "5", retry }), 2);
  assertEquals(evs.map((e) => (e._tag === "Added" ? e.object : e._tag)), ["a", "b"]);
});
