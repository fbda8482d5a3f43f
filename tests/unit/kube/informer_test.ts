// Informers over the memory twin: relist after 410 publishes the missed differences, permanent failures surface,
// the shared instance goes away with its last user.
import { Effect, Queue, Schema, type Scope, Stream } from "effect";
import {
  type NetworkAttachmentDefinition,
  NetworkAttachmentDefinitionResource as NADs,
} from "../../../core/api/k8s.ts";
import { ObjectMeta } from "../../../core/api/meta.ts";
import type { KubeService, ResourceType } from "../../../core/ports/kube.ts";
import { makeMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import { assert, assertEquals, fail } from "../../harness/assert.ts";

const ns = "default";
const nad = (name: string, config = "{}"): NetworkAttachmentDefinition => ({
  metadata: { name, namespace: ns },
  spec: { config },
});

const withKube = <A, E>(server: MemoryApiServer, f: (kube: KubeService) => Effect.Effect<A, E, Scope.Scope>) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(makeMemoryKube(server), f)));

Deno.test("informer: after a 410 it relists and publishes what it missed, then a Synced", async () => {
  const server = new MemoryApiServer();
  await withKube(server, (kube) =>
    Effect.gen(function* () {
      yield* kube.create(NADs, nad("a"));
      const b = yield* kube.create(NADs, nad("b"));
      const inf = yield* kube.informer(NADs, { namespace: ns });
      const q = yield* Queue.unbounded<string>();
      yield* inf.changes.pipe(
        Stream.runForEach((e) =>
          Queue.offer(q, e._tag === "Synced" ? `Synced:${[...e.items.keys()].join(",")}` : `${e._tag}:${e.key}`)
        ),
        Effect.forkScoped,
      );
      const next = Effect.timeoutOrElse(Queue.take(q), {
        duration: "5 seconds",
        orElse: () => Effect.sync(() => fail("no informer event")),
      });
      assertEquals(yield* next, "Synced:default/a,default/b");
      // Cut the watch, change things while it is down, and forget the history it would resume from.
      server.dropWatches();
      yield* kube.delete(NADs, "a", { namespace: ns });
      yield* kube.update(NADs, { ...b, spec: { config: "2" } });
      yield* kube.create(NADs, nad("c"));
      server.compact();
      const got = [yield* next, yield* next, yield* next, yield* next];
      assertEquals(got, ["Deleted:default/a", "Updated:default/b", "Added:default/c", "Synced:default/b,default/c"]);
      const state = yield* inf.list;
      assertEquals(state.map((o) => o.metadata.name).sort(), ["b", "c"]);
    }));
});

Deno.test("informer: a permanent error fails synced and changes", async () => {
  const server = new MemoryApiServer();
  const Strict: ResourceType<unknown, unknown> = {
    ...NADs,
    schema: Schema.Struct({ metadata: ObjectMeta, spec: Schema.Struct({ config: Schema.Number }) }),
  };
  await withKube(server, (kube) =>
    Effect.gen(function* () {
      yield* kube.create(NADs, nad("a", "text"));
      const inf = yield* kube.informer(Strict, { namespace: ns });
      const err = yield* Effect.flip(inf.synced.pipe(Effect.timeout("5 seconds")));
      assertEquals(err._tag, "KubeDecodeError");
      const fromChanges = yield* Effect.flip(Stream.runCollect(inf.changes).pipe(Effect.timeout("5 seconds")));
      assertEquals(fromChanges._tag, "KubeDecodeError");
    }));
});

const waitFor = (cond: () => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200 && !cond(); i++) yield* Effect.sleep("10 millis");
    assert(cond(), "condition never held");
  });

Deno.test("informer: one watch while in use, none after the last user's scope closes", async () => {
  const server = new MemoryApiServer();
  await withKube(server, (kube) =>
    Effect.gen(function* () {
      const first = yield* Effect.scoped(Effect.gen(function* () {
        const a = yield* kube.informer(NADs, { namespace: ns });
        const b = yield* kube.informer(NADs, { namespace: ns });
        assert(a === b, "shared");
        const other = yield* kube.informer(NADs, { namespace: ns, labelSelector: "x=y" });
        assert(other !== a, "other filters, other informer");
        yield* a.synced;
        yield* other.synced;
        // Two informers, one watch each (opened right after their first list).
        yield* waitFor(() => server.openWatches === 2);
        yield* Effect.sleep("50 millis");
        assertEquals(server.openWatches, 2);
        return a;
      }));
      yield* waitFor(() => server.openWatches === 0);
      const again = yield* kube.informer(NADs, { namespace: ns });
      assert(again !== first, "a new informer after the old one was released");
    }));
});
