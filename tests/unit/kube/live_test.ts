// The live layer's HTTP side against a scripted fake apiserver (plain HTTP on loopback): kubeconfig loading,
// request shapes, Status → error mapping, timeouts, paging, streaming watches, 410 and reconnect handling.
import { Effect, Fiber, Schedule, type Scope, Stream } from "effect";
import { PodResource } from "../../../core/api/k8s.ts";
import { type KubeError, type KubeService, type WatchEvent } from "../../../core/ports/kube.ts";
import { makeLiveKube } from "../../../adapters/kube/live.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";

interface Seen {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: Headers;
  readonly body: string;
}

type Handler = (req: Seen) => Response | Promise<Response>;

async function withFakeApiserver(
  handler: Handler,
  test: (kube: KubeService, seen: Seen[]) => Effect.Effect<void, unknown, Scope.Scope>,
  options: { requestTimeoutMs?: number } = {},
): Promise<void> {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    const s = {
      method: req.method,
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      body: await req.text(),
    };
    seen.push(s);
    return handler(s);
  });
  const dir = await Deno.makeTempDir({ prefix: "danm-kubeconfig-" });
  const path = `${dir}/kubeconfig`;
  await Deno.writeTextFile(
    path,
    `apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "http://127.0.0.1:${server.addr.port}", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: secret-token}}]
contexts: [{name: fake, context: {cluster: fake, user: u}}]
current-context: fake
`,
  );
  try {
    await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
      const kube = yield* makeLiveKube({ config: { _tag: "Kubeconfig", path }, ...options });
      yield* test(kube, seen);
    })));
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

const status = (code: number, reason: string, message: string, causes?: unknown[]) =>
  json({
    kind: "Status",
    apiVersion: "v1",
    status: "Failure",
    code,
    reason,
    message,
    ...(causes ? { details: { causes } } : {}),
  }, code);

const podJson = (name: string, rv: string) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: "default", resourceVersion: rv },
  spec: { containers: [{ name: "c" }] },
});

const ns = { namespace: "default" };
const fast = Schedule.spaced("5 millis").pipe(Schedule.setInputType<KubeError>());

Deno.test("live kube: sends the kubeconfig's token and maps Status answers to typed errors", async () => {
  const answers: Record<string, () => Response> = {
    "/api/v1/namespaces/default/pods/nf": () => status(404, "NotFound", 'pods "nf" not found'),
    "/api/v1/namespaces/default/pods/forbidden": () => status(403, "Forbidden", "RBAC says no"),
    "/api/v1/namespaces/default/pods/unauth": () => status(401, "Unauthorized", "Unauthorized"),
    "/api/v1/namespaces/default/pods/busy": () => status(503, "ServiceUnavailable", "try later"),
    "/api/v1/namespaces/default/pods/html": () => new Response("<html>bad gateway</html>", { status: 502 }),
    "/api/v1/namespaces/default/pods/slow": () => status(504, "Timeout", "too slow"),
    "/api/v1/namespaces/default/pods/gone": () => status(410, "Expired", "too old"),
    "/api/v1/namespaces/default/pods": () =>
      status(422, "Invalid", 'Pod "x" is invalid', [{
        reason: "FieldValueRequired",
        field: "spec.containers",
        message: "Required",
      }]),
  };
  await withFakeApiserver(
    (
      r,
    ) => (r.method === "POST" && r.path.endsWith("/pods")
      ? answers[r.path]()
      : answers[r.path]?.() ?? status(409, "AlreadyExists", "exists")),
    (kube, seen) =>
      Effect.gen(function* () {
        const tagOf = (name: string) => Effect.map(Effect.flip(kube.get(PodResource, name, ns)), (e) => e._tag);
        assertEquals(yield* tagOf("nf"), "KubeNotFound");
        assertEquals(yield* tagOf("forbidden"), "KubeForbidden");
        assertEquals(yield* tagOf("unauth"), "KubeUnauthorized");
        assertEquals(yield* tagOf("busy"), "KubeUnavailable");
        assertEquals(yield* tagOf("html"), "KubeUnavailable");
        assertEquals(yield* tagOf("slow"), "KubeTimeout");
        assertEquals(yield* tagOf("gone"), "KubeGone");
        assertEquals(yield* tagOf("other"), "KubeAlreadyExists");
        const nf = yield* Effect.flip(kube.get(PodResource, "nf", ns));
        assertEquals(nf.message, 'get Pod default/nf: not found: pods "nf" not found');
        const inv = yield* Effect.flip(
          kube.create(PodResource, { metadata: { name: "x", namespace: "default" }, spec: { containers: [] } }),
        );
        if (inv._tag !== "KubeInvalid") return fail(`expected KubeInvalid, got ${inv._tag}`);
        assertEquals(inv.causes, [{ reason: "FieldValueRequired", field: "spec.containers", message: "Required" }]);
        assert(
          seen.every((s) => s.headers.get("authorization") === "Bearer secret-token"),
          "bearer token on every request",
        );
        assertEquals(seen[0].headers.get("accept"), "application/json");
      }),
  );
});

Deno.test("live kube: a request without an answer in time fails with KubeTimeout", async () => {
  const release = Promise.withResolvers<void>();
  await withFakeApiserver(
    async () => {
      await release.promise;
      return json(podJson("p", "1"));
    },
    (kube) =>
      Effect.gen(function* () {
        const err = yield* Effect.flip(kube.get(PodResource, "p", ns));
        release.resolve();
        assertEquals(err._tag, "KubeTimeout");
        assertMatch(err.message, /^get Pod default\/p: timed out: no response within 100 ms/);
      }),
    { requestTimeoutMs: 100 },
  );
});

Deno.test("live kube: lists follow continue tokens and pass selectors", async () => {
  await withFakeApiserver(
    (r) =>
      r.query.get("continue") === "tok"
        ? json({ kind: "PodList", metadata: { resourceVersion: "10" }, items: [podJson("c", "3")] })
        : json({
          kind: "PodList",
          metadata: { resourceVersion: "10", continue: "tok" },
          items: [podJson("a", "1"), podJson("b", "2")],
        }),
    (kube, seen) =>
      Effect.gen(function* () {
        const l = yield* kube.list(PodResource, {
          ...ns,
          labelSelector: "app in (x)",
          fieldSelector: "spec.nodeName=n1",
          pageSize: 2,
        });
        assertEquals(l.items.map((p) => p.metadata.name), ["a", "b", "c"]);
        assertEquals(l.resourceVersion, "10");
        assertEquals(l.items[2].kind, "Pod", "list items get their kind back");
        assertEquals(seen.length, 2);
        assertEquals(seen[0].path, "/api/v1/namespaces/default/pods");
        assertEquals(
          [seen[0].query.get("labelSelector"), seen[0].query.get("fieldSelector"), seen[0].query.get("limit")],
          ["app in (x)", "spec.nodeName=n1", "2"],
        );
        const all = yield* kube.list(PodResource);
        assertEquals(seen[2].path, "/api/v1/pods", "no namespace lists across all namespaces");
        assertEquals(all.items.length, 3);
      }),
  );
});

Deno.test("live kube: writes carry the right verbs, content types and parameters", async () => {
  await withFakeApiserver(
    (r) =>
      r.method === "DELETE" ? json({ kind: "Status", apiVersion: "v1", status: "Success" }) : json(podJson("p", "2")),
    (kube, seen) =>
      Effect.gen(function* () {
        const pod = {
          metadata: { name: "p", namespace: "default", resourceVersion: "1" },
          spec: { containers: [{ name: "c" }] },
        };
        yield* kube.create(PodResource, pod, { dryRun: true, fieldManager: "danm" });
        yield* kube.update(PodResource, pod);
        yield* kube.updateStatus(PodResource, pod);
        yield* kube.patch(PodResource, "p", { type: "merge", patch: { metadata: { labels: { a: "b" } } } }, ns);
        yield* kube.patch(PodResource, "p", { type: "json", ops: [{ op: "remove", path: "/metadata/labels/a" }] }, {
          ...ns,
          subresource: "status",
        });
        yield* kube.patch(PodResource, "p", { type: "apply", object: { spec: {} }, force: true }, {
          ...ns,
          fieldManager: "m",
        });
        const del = yield* kube.delete(PodResource, "p", {
          ...ns,
          preconditions: { uid: "u1" },
          propagationPolicy: "Background",
          gracePeriodSeconds: 0,
          dryRun: true,
        });
        assertEquals(del._tag, "Deleted");
        const line = (s: Seen) =>
          `${s.method} ${s.path}${s.query.size ? `?${s.query}` : ""} ${s.headers.get("content-type") ?? ""}`;
        assertEquals(seen.map(line), [
          "POST /api/v1/namespaces/default/pods?dryRun=All&fieldManager=danm application/json",
          "PUT /api/v1/namespaces/default/pods/p application/json",
          "PUT /api/v1/namespaces/default/pods/p/status application/json",
          "PATCH /api/v1/namespaces/default/pods/p application/merge-patch+json",
          "PATCH /api/v1/namespaces/default/pods/p/status application/json-patch+json",
          "PATCH /api/v1/namespaces/default/pods/p?fieldManager=m&force=true application/apply-patch+yaml",
          "DELETE /api/v1/namespaces/default/pods/p application/json",
        ]);
        const created = JSON.parse(seen[0].body);
        assertEquals([created.apiVersion, created.kind, created.metadata.resourceVersion], ["v1", "Pod", undefined]);
        assertEquals(JSON.parse(seen[1].body).metadata.resourceVersion, "1", "updates are optimistic");
        const applied = JSON.parse(seen[5].body);
        assertEquals([applied.apiVersion, applied.kind, applied.metadata.name], ["v1", "Pod", "p"]);
        assertEquals(JSON.parse(seen[6].body), {
          apiVersion: "v1",
          kind: "DeleteOptions",
          preconditions: { uid: "u1" },
          propagationPolicy: "Background",
          gracePeriodSeconds: 0,
          dryRun: ["All"],
        });
      }),
  );
});

/** A watch response the test feeds line by line. */
function watchResponse() {
  const enc = new TextEncoder();
  let ctrl!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start: (c) => void (ctrl = c) });
  return {
    response: new Response(body, { headers: { "Content-Type": "application/json" } }),
    send: (s: string) => ctrl.enqueue(enc.encode(s)),
    close: () => ctrl.close(),
    error: () => ctrl.error(new Error("connection reset")),
  };
}

const event = (type: string, object: unknown) => `${JSON.stringify({ type, object })}\n`;

Deno.test("live kube: watch events are delivered as they arrive, even split across chunks", async () => {
  const w = watchResponse();
  await withFakeApiserver(
    () => w.response,
    (kube, seen) =>
      Effect.gen(function* () {
        const events: WatchEvent<unknown>[] = [];
        const fiber = yield* kube.watch(PodResource, { ...ns, resourceVersion: "5" }).pipe(
          Stream.take(2),
          Stream.runForEach((e) => Effect.sync(() => void events.push(e))),
          Effect.forkScoped,
        );
        w.send(event("ADDED", podJson("a", "6")));
        // The second event only goes out once the first was received: a buffering client would hang here.
        while (events.length < 1) yield* Effect.sleep("5 millis");
        const second = event("MODIFIED", podJson("a", "7"));
        w.send(second.slice(0, 20));
        yield* Effect.sleep("20 millis");
        w.send(second.slice(20));
        yield* Fiber.join(fiber);
        assertEquals(
          events.map((e) => e._tag === "Added" || e._tag === "Modified" ? `${e._tag}@${e.resourceVersion}` : e._tag),
          [
            "Added@6",
            "Modified@7",
          ],
        );
        const q = seen[0].query;
        assertEquals([q.get("watch"), q.get("resourceVersion"), q.get("allowWatchBookmarks")], ["1", "5", "true"]);
        const t = Number(q.get("timeoutSeconds"));
        assert(t >= 300 && t <= 600, `server-side watch timeout ${t}`);
      }),
  );
});

Deno.test("live kube: a 410 ERROR event makes the watch relist; a reset connection resumes", async () => {
  const watches: ReturnType<typeof watchResponse>[] = [];
  await withFakeApiserver(
    (r) => {
      if (r.query.get("watch") !== "1") {
        return json({ kind: "PodList", metadata: { resourceVersion: "30" }, items: [podJson("x", "29")] });
      }
      const w = watchResponse();
      watches.push(w);
      return w.response;
    },
    (kube, seen) =>
      Effect.gen(function* () {
        const events: string[] = [];
        const fiber = yield* kube.watch(PodResource, { ...ns, resourceVersion: "5", retry: fast }).pipe(
          Stream.take(3),
          Stream.runForEach((e) =>
            Effect.sync(() =>
              void events.push(
                e._tag === "Sync" ? `Sync:${e.reason}:${e.items.length}` : `${e._tag}@${e.resourceVersion}`,
              )
            )
          ),
          Effect.forkScoped,
        );
        const waitFor = (n: number) =>
          Effect.gen(function* () {
            while (watches.length < n) yield* Effect.sleep("5 millis");
            return watches[n - 1];
          });
        (yield* waitFor(1)).send(
          event("ERROR", { kind: "Status", code: 410, reason: "Expired", message: "too old resource version" }),
        );
        const second = yield* waitFor(2);
        second.send(event("ADDED", podJson("y", "31")));
        while (events.length < 2) yield* Effect.sleep("5 millis");
        second.error();
        (yield* waitFor(3)).send(event("MODIFIED", podJson("y", "32")));
        yield* Fiber.join(fiber);
        assertEquals(events, ["Sync:expired:1", "Added@31", "Modified@32"]);
        const watchVersions = seen.filter((s) => s.query.get("watch") === "1").map((s) =>
          s.query.get("resourceVersion")
        );
        assertEquals(watchVersions, ["5", "30", "31"]);
      }),
  );
});
