// Semantics of the in-memory apiserver beyond the shared contract: bounded history and 410, dropped watches,
// bookmarks, admission hooks, continue-token expiry, opt-in status subresources, ordering under concurrency.
import { Effect, Fiber, Schema, type Scope, Stream } from "effect";
import {
  type NetworkAttachmentDefinition,
  NetworkAttachmentDefinitionResource as NADs,
  ServiceResource,
} from "../../../core/api/k8s.ts";
import { ObjectMeta } from "../../../core/api/meta.ts";
import type { KubeService, ResourceType, WatchEvent } from "../../../core/ports/kube.ts";
import { type AdmissionRequest, makeMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";

const ns = "default";
const nad = (name: string, config = "{}", labels: Record<string, string> = {}): NetworkAttachmentDefinition => ({
  metadata: { name, namespace: ns, labels },
  spec: { config },
});

const withKube = <A, E>(server: MemoryApiServer, f: (kube: KubeService) => Effect.Effect<A, E, Scope.Scope>) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(makeMemoryKube(server), f)));

const firstEvents = <A>(s: Stream.Stream<WatchEvent<A>, unknown>, n: number) =>
  s.pipe(Stream.filter((e) => e._tag !== "Bookmark"), Stream.take(n), Stream.runCollect, Effect.timeout("5 seconds"));

Deno.test("memory kube: a watch from a resourceVersion older than the history answers 410; watch relists", async () => {
  const server = new MemoryApiServer({ historyLimit: 3 });
  await withKube(server, (kube) =>
    Effect.gen(function* () {
      let cur = yield* kube.create(NADs, nad("x", "0"));
      const old = cur.metadata.resourceVersion!;
      for (const v of ["1", "2", "3", "4"]) cur = yield* kube.update(NADs, { ...cur, spec: { config: v } });
      const raw = yield* Effect.flip(
        Stream.runHead(server.backend.watch({ rt: NADs, namespace: ns }, { resourceVersion: old, bookmarks: false })),
      );
      assertEquals(raw._tag, "KubeGone");
      const [sync] = yield* firstEvents(kube.watch(NADs, { namespace: ns, resourceVersion: old }), 1);
      if (sync._tag !== "Sync") return fail(`expected a Sync, got ${sync._tag}`);
      assertEquals(sync.reason, "expired");
      assertEquals(sync.items.map((i) => i.spec?.config), ["4"]);
      // Within the retained window a watch resumes normally.
      const recent = yield* firstEvents(
        kube.watch(NADs, { namespace: ns, resourceVersion: String(Number(cur.metadata.resourceVersion) - 1) }),
        1,
      );
      assertEquals(recent.map((e) => e._tag), ["Modified"]);
    }));
});

Deno.test("memory kube: compact() expires every older resourceVersion", async () => {
  const server = new MemoryApiServer();
  await withKube(server, (kube) =>
    Effect.gen(function* () {
      const a = yield* kube.create(NADs, nad("a"));
      yield* kube.create(NADs, nad("b"));
      server.compact();
      const err = yield* Effect.flip(Stream.runHead(
        server.backend.watch({ rt: NADs }, { resourceVersion: a.metadata.resourceVersion!, bookmarks: false }),
      ));
      assertEquals(err._tag, "KubeGone");
    }));
});

Deno.test("memory kube: dropped watch connections resume without losing or repeating events", async () => {
  const server = new MemoryApiServer();
  await withKube(server, (kube) =>
    Effect.gen(function* () {
      const start = (yield* kube.list(NADs, { namespace: ns })).resourceVersion;
      const seen: string[] = [];
      const fiber = yield* kube.watch(NADs, { namespace: ns, resourceVersion: start }).pipe(
        Stream.filter((e) => e._tag === "Added"),
        Stream.take(3),
        Stream.runForEach((e) => Effect.sync(() => e._tag === "Added" && seen.push(e.object.metadata.name ?? ""))),
        Effect.timeout("5 seconds"),
        Effect.forkScoped,
      );
      yield* kube.create(NADs, nad("a"));
      while (seen.length < 1) yield* Effect.sleep("5 millis");
      assertEquals(server.dropWatches(), 1);
      yield* kube.create(NADs, nad("b")); // written while no connection is open
      yield* Effect.sleep("100 millis");
      yield* kube.create(NADs, nad("c"));
      yield* Fiber.join(fiber);
      assertEquals(seen, ["a", "b", "c"]);
    }));
});

Deno.test("memory kube: watches that ask for bookmarks get them with the current resourceVersion", async () => {
  const server = new MemoryApiServer({ bookmarkIntervalMs: 20 });
  await withKube(server, (kube) =>
    Effect.gen(function* () {
      yield* kube.create(NADs, nad("a"));
      const evs = yield* kube.watch(NADs, { namespace: ns, resourceVersion: server.resourceVersion }).pipe(
        Stream.take(2),
        Stream.runCollect,
        Effect.timeout("5 seconds"),
      );
      assertEquals(evs.map((e) => e._tag), ["Bookmark", "Bookmark"]);
      assertEquals(evs[0]._tag === "Bookmark" && evs[0].resourceVersion, server.resourceVersion);
      const none = yield* kube.watch(NADs, { namespace: ns, resourceVersion: server.resourceVersion, bookmarks: false })
        .pipe(Stream.take(1), Stream.runCollect, Effect.timeoutOption("100 millis"));
      assertEquals(none._tag, "None");
    }));
});

Deno.test("memory kube: admission hooks mutate, deny with their code, and see dry runs", async () => {
  const seen: AdmissionRequest[] = [];
  const server = new MemoryApiServer({
    admission: [{
      name: "label-it",
      phase: "mutating",
      matches: (r) => r.resource.plural === "network-attachment-definitions" && r.operation === "CREATE",
      admit: (r) =>
        Effect.sync(() => {
          seen.push(r);
          const meta = { ...(r.object?.metadata as Record<string, unknown>) };
          return { allowed: true, object: { ...r.object, metadata: { ...meta, labels: { mutated: "yes" } } } };
        }),
    }, {
      name: "no-deny",
      phase: "validating",
      admit: (r) =>
        Effect.succeed(
          r.name.startsWith("deny-")
            ? {
              allowed: false,
              message: "names starting with deny- are refused",
              code: r.name === "deny-422" ? 422 : undefined,
            }
            : { allowed: true },
        ),
    }],
  });
  await withKube(server, (kube) =>
    Effect.gen(function* () {
      const a = yield* kube.create(NADs, nad("a"));
      assertEquals(a.metadata.labels, { mutated: "yes" });
      const gen = yield* kube.create(NADs, { metadata: { generateName: "g-", namespace: ns } });
      assertEquals(seen[1].name, "", "mutating hooks run before the name is generated");
      assertMatch(gen.metadata.name ?? "", /^g-/);
      const forbidden = yield* Effect.flip(kube.create(NADs, nad("deny-me")));
      assertEquals(forbidden._tag, "KubeForbidden");
      assertMatch(forbidden.message, /admission webhook "no-deny" denied the request: names starting with deny-/);
      assertEquals((yield* Effect.flip(kube.create(NADs, nad("deny-422"))))._tag, "KubeInvalid");
      yield* kube.create(NADs, nad("dry"), { dryRun: true });
      assertEquals(seen[seen.length - 1].dryRun, true);

      const remove = server.addAdmissionHook({
        name: "keep",
        phase: "validating",
        matches: (r) => r.operation === "DELETE",
        admit: () => Effect.succeed({ allowed: false, message: "kept" }),
      });
      assertEquals((yield* Effect.flip(kube.delete(NADs, "a", { namespace: ns })))._tag, "KubeForbidden");
      remove();
      assertEquals((yield* kube.delete(NADs, "a", { namespace: ns }))._tag, "Deleted");
    }));
});

Deno.test("memory kube: continue tokens expire with the history", async () => {
  const server = new MemoryApiServer();
  await withKube(server, (kube) =>
    Effect.gen(function* () {
      for (const n of ["a", "b", "c"]) yield* kube.create(NADs, nad(n));
      const page = yield* server.backend.list({ rt: NADs, namespace: ns }, { limit: 2 });
      assertEquals(page.items.length, 2);
      assert(page.continue, "a continue token");
      const rest = yield* server.backend.list({ rt: NADs, namespace: ns }, { limit: 2, continue: page.continue });
      assertEquals(rest.items.length, 1);
      assertEquals(rest.resourceVersion, page.resourceVersion);
      yield* kube.create(NADs, nad("d"));
      server.compact();
      const err = yield* Effect.flip(
        server.backend.list({ rt: NADs, namespace: ns }, { limit: 2, continue: page.continue }),
      );
      assertEquals(err._tag, "KubeGone");
      // The port's list starts over and returns a complete result.
      assertEquals((yield* kube.list(NADs, { namespace: ns, pageSize: 1 })).items.length, 4);
    }));
});

Deno.test("memory kube: a status subresource for a custom resource is opt-in", async () => {
  const WithStatus = Schema.Struct({
    metadata: ObjectMeta,
    spec: Schema.optionalKey(Schema.Struct({ config: Schema.optionalKey(Schema.String) })),
    status: Schema.optionalKey(Schema.Struct({ ready: Schema.Boolean })),
  });
  const rt: ResourceType<typeof WithStatus.Type, typeof WithStatus.Encoded> = { ...NADs, schema: WithStatus };
  const plain = new MemoryApiServer();
  await withKube(plain, (kube) =>
    Effect.gen(function* () {
      const o = yield* kube.create(rt, { ...nad("a"), status: { ready: true } });
      assertEquals(o.status, { ready: true }, "without the subresource status is ordinary data");
      assertEquals((yield* Effect.flip(kube.updateStatus(rt, o)))._tag, "KubeNotFound");
    }));
  const withStatus = new MemoryApiServer({ statusSubresources: [NADs] });
  await withKube(withStatus, (kube) =>
    Effect.gen(function* () {
      const o = yield* kube.create(rt, { ...nad("a"), status: { ready: true } });
      assertEquals(o.status, undefined, "create drops status");
      const s = yield* kube.updateStatus(rt, { ...o, spec: { config: "ignored" }, status: { ready: true } });
      assertEquals([s.status, s.spec?.config], [{ ready: true }, "{}"]);
      const u = yield* kube.update(rt, { ...s, spec: { config: "new" }, status: { ready: false } });
      assertEquals([u.status, u.spec?.config], [{ ready: true }, "new"]);
      assertEquals(u.metadata.generation, 2, "spec changes bump generation, status changes do not");
    }));
});

Deno.test("memory kube: watch events arrive in resourceVersion order under concurrent writers", async () => {
  const server = new MemoryApiServer();
  await withKube(server, (kube) =>
    Effect.gen(function* () {
      const start = server.resourceVersion;
      const names = Array.from({ length: 50 }, (_, i) => `n${i}`);
      const collect = yield* Effect.forkScoped(
        firstEvents(kube.watch(NADs, { namespace: ns, resourceVersion: start }), 50),
      );
      yield* Effect.forEach(names, (n) => kube.create(NADs, nad(n)), { concurrency: "unbounded" });
      const events = yield* Fiber.join(collect);
      const rvs = events.map((e) => Number(e._tag === "Added" ? e.resourceVersion : NaN));
      assertEquals(rvs, [...rvs].sort((a, b) => a - b));
      assertEquals(new Set(rvs).size, 50);
    }));
});

Deno.test("memory kube: no garbage collector: Foreground deletion leaves its finalizer in place", async () => {
  const server = new MemoryApiServer();
  await withKube(server, (kube) =>
    Effect.gen(function* () {
      yield* kube.create(NADs, nad("fg"));
      const r = yield* kube.delete(NADs, "fg", { namespace: ns, propagationPolicy: "Foreground" });
      if (r._tag !== "Pending") return fail("pending");
      assertEquals(r.object.metadata.finalizers, ["foregroundDeletion"]);
    }));
});

Deno.test("memory kube: Services get cluster IPs from the configured range; headless ones keep None", async () => {
  const server = new MemoryApiServer({ serviceIPStart: "10.0.0.50" });
  await withKube(server, (kube) =>
    Effect.gen(function* () {
      const svc = (name: string, clusterIP?: string) =>
        kube.create(ServiceResource, {
          metadata: { name, namespace: ns },
          spec: { ports: [{ port: 53, protocol: "UDP" }], ...(clusterIP ? { clusterIP } : {}) },
        });
      assertEquals((yield* svc("a")).spec?.clusterIP, "10.0.0.50");
      assertEquals((yield* svc("b")).spec?.clusterIP, "10.0.0.51");
      const headless = yield* svc("c", "None");
      assertEquals([headless.spec?.clusterIP, headless.spec?.clusterIPs], ["None", ["None"]]);
      assertEquals(headless.spec?.ports?.[0].protocol, "UDP");
    }));
});
