// Informer indexes (adapters/kube/informer.ts; the CNI ADD's lookup of a pod's DanmEps) only ever save work: after
// any sequence of adds, updates that move an object between values, deletes and relists, `index.get(value)` returns
// exactly the objects a scan of the informer's state for that value returns — for an index made before the first
// list and for one made halfway. Generated with fast-check from a fixed seed, so a failure reproduces.
import { Effect, Queue, Stream, SubscriptionRef } from "effect";
import fc from "fast-check";
import { type Keyed, makeInformer } from "../../../adapters/kube/informer.ts";
import type { WatchEvent } from "../../../core/ports/kube.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

interface Ep {
  readonly name: string;
  readonly podUid?: string;
  readonly cid: string;
}

const podUids = ["u1", "u2", "u3"];
const names = ["e0", "e1", "e2", "e3", "e4", "e5"];
const byPod = (e: Ep): ReadonlyArray<string> => e.podUid === undefined ? [] : [e.podUid];
// Filed under several values at once, to cover an object in more than one set.
const byPodAndSandbox = (e: Ep): ReadonlyArray<string> => [...byPod(e), `cid:${e.cid}`];

const epArb: fc.Arbitrary<Ep> = fc.record({
  name: fc.constantFrom(...names),
  podUid: fc.option(fc.constantFrom(...podUids), { nil: undefined }),
  cid: fc.constantFrom("c1", "c2", "c3"),
});
type Op =
  | { readonly op: "put"; readonly ep: Ep }
  | { readonly op: "delete"; readonly name: string }
  | { readonly op: "relist"; readonly eps: ReadonlyArray<Ep> }
  | { readonly op: "makeSecondIndex" };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant("put" as const), ep: epArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("delete" as const), name: fc.constantFrom(...names) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("relist" as const),
      eps: fc.uniqueArray(epArb, { selector: (e) => e.name, maxLength: 5 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: "makeSecondIndex" as const }) },
);

const keyed = (ep: Ep, rv: string): Keyed<Ep> => ({ key: ep.name, object: ep, resourceVersion: rv });
const ids = (eps: ReadonlyArray<Ep>) => eps.map((e) => `${e.name}/${e.podUid}/${e.cid}`).sort();

Deno.test("informer index: get(value) returns what a scan of the state returns, across adds, updates, deletes and relists", async () => {
  let checked = 0, nonEmpty = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.uniqueArray(epArb, { selector: (e) => e.name, maxLength: 4 }),
      fc.array(opArb, { minLength: 1, maxLength: 40 }),
      (initial, ops) =>
        Effect.runPromise(Effect.scoped(Effect.gen(function* () {
          const q = yield* Queue.unbounded<WatchEvent<Keyed<Ep>>>();
          const inf = yield* makeInformer(Stream.fromQueue(q), "test endpoints");
          // Made before the first list: built by the initial Sync.
          const first = yield* inf.index(byPod);
          let second: typeof first | undefined;
          let rv = 0;
          const send = (ev: WatchEvent<Keyed<Ep>>) =>
            Effect.gen(function* () {
              yield* Queue.offer(q, ev);
              // Applied once the informer's state carries this event's resourceVersion.
              yield* SubscriptionRef.changes(inf.state).pipe(
                Stream.filter((s) => s.resourceVersion === ev.resourceVersion),
                Stream.runHead,
              );
            });
          const fresh = () => String(++rv);
          yield* send({
            _tag: "Sync",
            items: initial.map((e) => keyed(e, "0")),
            resourceVersion: fresh(),
            reason: "initial",
          });
          for (const o of ops) {
            const v = fresh();
            switch (o.op) {
              case "put": {
                const exists = (yield* inf.get(o.ep.name)) !== undefined;
                yield* send({ _tag: exists ? "Modified" : "Added", object: keyed(o.ep, v), resourceVersion: v });
                break;
              }
              case "delete": {
                const cached = yield* inf.get(o.name);
                // The watch reports the object's last state, which may differ from the cached one.
                if (cached) {
                  yield* send({ _tag: "Deleted", object: keyed({ ...cached, podUid: "u3" }, v), resourceVersion: v });
                }
                break;
              }
              case "relist":
                yield* send({
                  _tag: "Sync",
                  items: o.eps.map((e) => keyed(e, v)),
                  resourceVersion: v,
                  reason: "expired",
                });
                break;
              case "makeSecondIndex":
                second ??= yield* inf.index(byPodAndSandbox);
                break;
            }
            const all = yield* inf.list;
            for (const value of podUids) {
              const want = ids(all.filter((e) => e.podUid === value));
              assertEquals(ids(yield* first.get(value)), want, `pod ${value}`);
              if (second) assertEquals(ids(yield* second.get(value)), want, `pod ${value} (second index)`);
              checked++;
              if (want.length > 0) nonEmpty++;
            }
            if (second) {
              for (const cid of ["c1", "c2", "c3"]) {
                assertEquals(ids(yield* second.get(`cid:${cid}`)), ids(all.filter((e) => e.cid === cid)), cid);
              }
            }
          }
        }))),
    ),
    { seed: 23, numRuns: 150 },
  );
  // The property must have compared real answers, not only empty ones.
  assert(nonEmpty > checked / 5, `only ${nonEmpty} of ${checked} compared answers were non-empty`);
});

Deno.test("informer index: one index per function, shared by every caller of the shared informer", async () => {
  await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
    const q = yield* Queue.unbounded<WatchEvent<Keyed<Ep>>>();
    const inf = yield* makeInformer(Stream.fromQueue(q), "test endpoints");
    yield* Queue.offer(q, {
      _tag: "Sync",
      items: [keyed({ name: "a", podUid: "u1", cid: "c1" }, "1")],
      resourceVersion: "1",
      reason: "initial",
    });
    yield* inf.synced;
    const a = yield* inf.index(byPod), b = yield* inf.index(byPod);
    assertEquals(ids(yield* a.get("u1")), ["a/u1/c1"], "built from the state at creation");
    assertEquals(ids(yield* b.get("u1")), ["a/u1/c1"]);
    assertEquals(yield* a.get("u9"), [], "an unknown value");
  })));
});
