// The Kube port's contract: what danm relies on from the apiserver. Run against the memory twin in the unit
// tier (tests/unit/kube) and against a real kube-apiserver in the integration tier (tests/integration/kube).
//
// Each test works in `namespace` on objects labelled with a per-test run id, so tests sharing one apiserver
// never see each other's objects; a finalizer deletes whatever the test left behind.
import { Effect, type Layer, Queue, Schema, type Scope, Stream, SubscriptionRef } from "effect";
import {
  EndpointSliceResource,
  EndpointsResource,
  EventResource,
  LeaseResource,
  NetworkAttachmentDefinition,
  NetworkAttachmentDefinitionResource as NADs,
  NodeResource,
  type Pod,
  PodResource,
  ServiceResource,
} from "../../core/api/k8s.ts";
import { ObjectMeta } from "../../core/api/meta.ts";
import {
  Kube,
  type KubeError,
  type KubeService,
  type ResourceType,
  type WatchEvent,
  type WatchOptions,
} from "../../core/ports/kube.ts";
import { assert, assertEquals, assertMatch, fail } from "../harness/assert.ts";
import { uniqueName } from "../harness/cluster.ts";

export interface KubeContractEnv {
  readonly layer: Layer.Layer<Kube, unknown>;
  /** A namespace that exists (the apiserver's "default" does). */
  readonly namespace: string;
  readonly release: () => Promise<void>;
}

const RUN = "danm.test/run";

interface Ctx {
  readonly kube: KubeService;
  readonly ns: string;
  readonly run: string;
  /** The run label selector, plus more terms. */
  readonly sel: (more?: string) => string;
  readonly name: (prefix: string) => string;
  readonly labels: (more?: Record<string, string>) => Record<string, string>;
}

type Body = (ctx: Ctx) => Effect.Effect<void, unknown, Scope.Scope>;

/** Everything a test may create; the finalizer sweeps these by run label. */
const sweep: ReadonlyArray<ResourceType<unknown, unknown>> = [
  NADs,
  PodResource,
  NodeResource,
  ServiceResource,
  EndpointsResource,
  EndpointSliceResource,
  LeaseResource,
  EventResource,
];

const cleanup = (kube: KubeService, ns: string, run: string) =>
  Effect.forEach(sweep, (rt) =>
    Effect.gen(function* () {
      const { items } = yield* kube.list(rt, { namespace: ns, labelSelector: `${RUN}=${run}` });
      for (const item of items) {
        const meta = Schema.decodeUnknownSync(Schema.Struct({ metadata: ObjectMeta }))(item).metadata;
        const name = meta.name ?? "";
        if ((meta.finalizers ?? []).length > 0) {
          yield* kube.patch(rt, name, { type: "merge", patch: { metadata: { finalizers: null } } }, { namespace: ns })
            .pipe(Effect.ignore);
        }
        yield* kube.delete(rt, name, { namespace: ns, gracePeriodSeconds: 0 }).pipe(Effect.ignore);
      }
    }).pipe(Effect.ignore), { discard: true });

const within = "20 seconds";

/** Collects a watch into a queue so a test can interleave writes and expectations. Bookmarks are dropped. */
const collect = <A>(stream: Stream.Stream<WatchEvent<A>, KubeError>) =>
  Effect.gen(function* () {
    const q = yield* Queue.unbounded<WatchEvent<A>>();
    yield* stream.pipe(
      Stream.filter((e) => e._tag !== "Bookmark"),
      Stream.runForEach((e) => Queue.offer(q, e)),
      Effect.forkScoped,
    );
    return {
      next: Effect.timeoutOrElse(Queue.take(q), {
        duration: within,
        orElse: () => Effect.sync(() => fail(`no watch event within ${within}`)),
      }),
    };
  });

const nameOf = (o: { readonly metadata: ObjectMeta }) => o.metadata.name ?? "";
const names = (items: ReadonlyArray<{ readonly metadata: ObjectMeta }>) => items.map(nameOf).sort();

const flipTag = <A>(e: Effect.Effect<A, KubeError>) => Effect.map(Effect.flip(e), (err) => err);

export function kubeContract(suite: string, env: () => Promise<KubeContractEnv>): void {
  const test = (title: string, body: Body) =>
    Deno.test(`${suite}: ${title}`, async () => {
      const e = await env();
      try {
        const program = Effect.gen(function* () {
          const kube = yield* Kube;
          const run = uniqueName("r");
          const ctx: Ctx = {
            kube,
            ns: e.namespace,
            run,
            sel: (more) => `${RUN}=${run}${more ? `,${more}` : ""}`,
            name: (prefix) => uniqueName(prefix),
            labels: (more = {}) => ({ ...more, [RUN]: run }),
          };
          yield* Effect.addFinalizer(() => cleanup(kube, e.namespace, run));
          yield* body(ctx);
        });
        await Effect.runPromise(Effect.scoped(program).pipe(Effect.provide(e.layer)));
      } finally {
        await e.release();
      }
    });

  const nad = (
    c: Ctx,
    name: string,
    config = "{}",
    labels: Record<string, string> = {},
    extra: Partial<ObjectMeta> = {},
  ) => ({
    metadata: { name, namespace: c.ns, labels: c.labels(labels), ...extra },
    spec: { config },
  });

  const pod = (c: Ctx, name: string, nodeName?: string): Pod => ({
    metadata: { name, namespace: c.ns, labels: c.labels() },
    spec: { ...(nodeName ? { nodeName } : {}), containers: [{ name: "c", image: "registry.k8s.io/pause:3.10" }] },
  });

  // --- CRUD ----------------------------------------------------------------------------------------------

  test("create, get, update and delete a namespaced custom resource", (c) =>
    Effect.gen(function* () {
      const name = c.name("nad");
      const created = yield* c.kube.create(NADs, nad(c, name, '{"cniVersion":"1.0.0"}'));
      assertEquals(created.metadata.name, name);
      assertEquals(created.metadata.namespace, c.ns);
      assert(created.metadata.uid, "uid set");
      assertMatch(created.metadata.creationTimestamp ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert(created.metadata.resourceVersion, "resourceVersion set");
      assertEquals(created.apiVersion, "k8s.cni.cncf.io/v1");
      assertEquals(created.kind, "NetworkAttachmentDefinition");

      const got = yield* c.kube.get(NADs, name, { namespace: c.ns });
      assertEquals(got, created);

      const updated = yield* c.kube.update(NADs, { ...got, spec: { config: '{"cniVersion":"1.1.0"}' } });
      assertEquals(updated.spec?.config, '{"cniVersion":"1.1.0"}');
      assertEquals(updated.metadata.uid, created.metadata.uid);
      assert(updated.metadata.resourceVersion !== created.metadata.resourceVersion, "a write bumps resourceVersion");

      const listed = yield* c.kube.list(NADs, { namespace: c.ns, labelSelector: c.sel() });
      assertEquals(names(listed.items), [name]);
      assert(listed.resourceVersion !== "", "a list carries a resourceVersion");

      assertEquals((yield* c.kube.delete(NADs, name, { namespace: c.ns }))._tag, "Deleted");
      const gone = yield* flipTag(c.kube.get(NADs, name, { namespace: c.ns }));
      assertEquals(gone._tag, "KubeNotFound");
    }));

  test("a no-op update keeps the resourceVersion", (c) =>
    Effect.gen(function* () {
      const created = yield* c.kube.create(NADs, nad(c, c.name("noop")));
      const again = yield* c.kube.update(NADs, created);
      assertEquals(again.metadata.resourceVersion, created.metadata.resourceVersion);
    }));

  test("cluster-scoped kinds: create, list by label, update status and delete a Node", (c) =>
    Effect.gen(function* () {
      const name = c.name("node");
      const created = yield* c.kube.create(NodeResource, {
        metadata: { name, labels: c.labels() },
        spec: { podCIDR: "10.244.7.0/24", podCIDRs: ["10.244.7.0/24"] },
      });
      assertEquals(created.metadata.namespace, undefined);
      assertEquals(created.spec?.podCIDRs, ["10.244.7.0/24"]);
      const listed = yield* c.kube.list(NodeResource, { labelSelector: c.sel() });
      assertEquals(names(listed.items), [name]);
      const withStatus = yield* c.kube.updateStatus(NodeResource, {
        ...created,
        status: { addresses: [{ type: "InternalIP", address: "192.0.2.7" }] },
      });
      assertEquals(withStatus.status?.addresses, [{ type: "InternalIP", address: "192.0.2.7" }]);
      yield* c.kube.delete(NodeResource, name);
      assertEquals((yield* flipTag(c.kube.get(NodeResource, name)))._tag, "KubeNotFound");
    }));

  test("generateName yields a fresh name with the prefix", (c) =>
    Effect.gen(function* () {
      const prefix = `${c.name("gen")}-`;
      const a = yield* c.kube.create(NADs, nad(c, "", "{}", {}, { generateName: prefix }));
      const b = yield* c.kube.create(NADs, nad(c, "", "{}", {}, { generateName: prefix }));
      assertMatch(nameOf(a), new RegExp(`^${prefix}[a-z0-9]{5}$`));
      assert(nameOf(a) !== nameOf(b), "two generated names differ");
    }));

  test("core kinds round-trip through their schemas", (c) =>
    Effect.gen(function* () {
      const svcName = c.name("svc");
      const svc = yield* c.kube.create(ServiceResource, {
        metadata: { name: svcName, namespace: c.ns, labels: c.labels() },
        spec: { selector: { app: svcName }, ports: [{ name: "http", port: 80 }] },
      });
      assertMatch(svc.spec?.clusterIP ?? "", /^\d+\.\d+\.\d+\.\d+$/);
      assertEquals(svc.spec?.type, "ClusterIP");
      assertEquals(svc.spec?.ports?.[0].protocol, "TCP");
      assertEquals(svc.spec?.ports?.[0].targetPort, 80);
      assertEquals(svc.spec?.ipFamilies, ["IPv4"]);

      const ep = yield* c.kube.create(EndpointsResource, {
        metadata: { name: svcName, namespace: c.ns, labels: c.labels() },
        subsets: [{
          addresses: [{ ip: "10.1.0.5", hostname: "h" }],
          ports: [{ name: "http", port: 8080, protocol: "TCP" }],
        }],
      });
      assertEquals(ep.subsets?.[0].addresses?.[0].ip, "10.1.0.5");

      const slice = yield* c.kube.create(EndpointSliceResource, {
        metadata: {
          name: c.name("slice"),
          namespace: c.ns,
          labels: c.labels({ "kubernetes.io/service-name": svcName }),
        },
        addressType: "IPv4",
        endpoints: [{
          addresses: ["10.1.0.5"],
          conditions: { ready: true, serving: true, terminating: false },
          hostname: "h",
          nodeName: "node-a",
          targetRef: { kind: "Pod", namespace: c.ns, name: "p" },
        }],
        ports: [{ name: "http", port: 8080, protocol: "TCP" }],
      });
      assertEquals(slice.endpoints[0].conditions, { ready: true, serving: true, terminating: false });
      const bySvc = yield* c.kube.list(EndpointSliceResource, {
        namespace: c.ns,
        labelSelector: c.sel(`kubernetes.io/service-name=${svcName}`),
      });
      assertEquals(bySvc.items.length, 1);

      const lease = yield* c.kube.create(LeaseResource, {
        metadata: { name: c.name("lease"), namespace: c.ns, labels: c.labels() },
        spec: {
          holderIdentity: "me",
          leaseDurationSeconds: 15,
          acquireTime: "2024-01-02T03:04:05.000000Z",
          renewTime: "2024-01-02T03:04:06.000000Z",
          leaseTransitions: 1,
        },
      });
      assertEquals(lease.spec?.holderIdentity, "me");
      assertEquals(lease.spec?.renewTime, "2024-01-02T03:04:06.000000Z");

      const ev = yield* c.kube.create(EventResource, {
        metadata: { name: c.name("ev"), namespace: c.ns, labels: c.labels() },
        involvedObject: { kind: "Service", namespace: c.ns, name: svcName, apiVersion: "v1" },
        reason: "Test",
        message: "hello",
        type: "Normal",
        source: { component: "danm-test" },
        firstTimestamp: "2024-01-02T03:04:05Z",
        lastTimestamp: "2024-01-02T03:04:05Z",
        count: 1,
      });
      assertEquals(ev.involvedObject.name, svcName);
    }));

  // --- Typed errors --------------------------------------------------------------------------------------

  test("creating an existing object fails with KubeAlreadyExists naming it", (c) =>
    Effect.gen(function* () {
      const name = c.name("dup");
      yield* c.kube.create(NADs, nad(c, name));
      const err = yield* flipTag(c.kube.create(NADs, nad(c, name)));
      assertEquals(err._tag, "KubeAlreadyExists");
      assertMatch(err.message, new RegExp(`^create NetworkAttachmentDefinition ${c.ns}/${name}: already exists`));
    }));

  test("a stale update fails with KubeConflict", (c) =>
    Effect.gen(function* () {
      const v1 = yield* c.kube.create(NADs, nad(c, c.name("stale"), "1"));
      const v2 = yield* c.kube.update(NADs, { ...v1, spec: { config: "2" } });
      const err = yield* flipTag(c.kube.update(NADs, { ...v1, spec: { config: "3" } }));
      assertEquals(err._tag, "KubeConflict");
      assertMatch(err.message, /^update NetworkAttachmentDefinition .*: conflict/);
      const v3 = yield* c.kube.update(NADs, { ...v2, spec: { config: "3" } });
      assertEquals(v3.spec?.config, "3");
    }));

  test("create and update returning metadata store the object and answer with its new metadata", (c) =>
    Effect.gen(function* () {
      const name = c.name("meta");
      const sent = nad(c, name, "1");
      const m1 = yield* c.kube.createReturningMetadata(NADs, sent);
      assertEquals(m1.name, name);
      assertEquals(m1.namespace, c.ns);
      assert(m1.uid && m1.resourceVersion, "uid and resourceVersion set");
      const stored = yield* c.kube.get(NADs, name, { namespace: c.ns });
      assertEquals(stored.spec?.config, "1");
      assertEquals(stored.metadata.resourceVersion, m1.resourceVersion);

      const m2 = yield* c.kube.updateReturningMetadata(NADs, { ...sent, metadata: m1, spec: { config: "2" } });
      assertEquals(m2.uid, m1.uid);
      assert(m2.resourceVersion !== m1.resourceVersion, "a write bumps resourceVersion");
      assertEquals((yield* c.kube.get(NADs, name, { namespace: c.ns })).spec?.config, "2");

      const stale = yield* flipTag(
        c.kube.updateReturningMetadata(NADs, { ...sent, metadata: m1, spec: { config: "3" } }),
      );
      assertEquals(stale._tag, "KubeConflict");
      const again = yield* flipTag(c.kube.createReturningMetadata(NADs, sent));
      assertEquals(again._tag, "KubeAlreadyExists");
      assertEquals((yield* c.kube.get(NADs, name, { namespace: c.ns })).spec?.config, "2");
    }));

  test("missing objects fail with KubeNotFound on every verb", (c) =>
    Effect.gen(function* () {
      const name = c.name("missing");
      const ns = { namespace: c.ns };
      const errs = [
        yield* flipTag(c.kube.get(NADs, name, ns)),
        yield* flipTag(
          c.kube.update(NADs, { ...nad(c, name), metadata: { ...nad(c, name).metadata, resourceVersion: "1" } }),
        ),
        yield* flipTag(c.kube.patch(NADs, name, { type: "merge", patch: { spec: { config: "x" } } }, ns)),
        yield* flipTag(c.kube.delete(NADs, name, ns)),
      ];
      assertEquals(errs.map((e) => e._tag), ["KubeNotFound", "KubeNotFound", "KubeNotFound", "KubeNotFound"]);
      assertEquals(errs.map((e) => e.message.split(" ")[0]), ["get", "update", "patch", "delete"]);
      assert(errs.every((e) => e.message.includes(`${c.ns}/${name}`)), "messages name the object");
    }));

  test("an invalid name fails with KubeInvalid and names the field", (c) =>
    Effect.gen(function* () {
      const err = yield* flipTag(c.kube.create(NADs, nad(c, "Bad_Name")));
      if (err._tag !== "KubeInvalid") return fail(`expected KubeInvalid, got ${err._tag}: ${err.message}`);
      assert(
        err.causes.some((x) => x.field === "metadata.name"),
        `causes name metadata.name: ${JSON.stringify(err.causes)}`,
      );
      assertMatch(err.message, /^create NetworkAttachmentDefinition .*Bad_Name: invalid/);
    }));

  test("a namespaced kind without a namespace fails with KubeBadRequest", (c) =>
    Effect.gen(function* () {
      const err = yield* flipTag(c.kube.get(NADs, "x"));
      assertEquals(err._tag, "KubeBadRequest");
    }));

  test("an object that does not fit the schema fails with KubeDecodeError", (c) =>
    Effect.gen(function* () {
      const name = c.name("strict");
      yield* c.kube.create(NADs, nad(c, name, "not-a-number"));
      const Strict: ResourceType<unknown, unknown> = {
        ...NADs,
        schema: Schema.Struct({ metadata: ObjectMeta, spec: Schema.Struct({ config: Schema.Number }) }),
      };
      const err = yield* flipTag(c.kube.get(Strict, name, { namespace: c.ns }));
      assertEquals(err._tag, "KubeDecodeError");
      assertMatch(err.message, new RegExp(`^get NetworkAttachmentDefinition ${c.ns}/${name}: does not match`));
    }));

  // --- Selectors and paging ------------------------------------------------------------------------------

  test("label selectors: =, ==, !=, in, notin, exists, !exists", (c) =>
    Effect.gen(function* () {
      const [a, b, d, e] = ["a", "b", "d", "e"].map((p) => c.name(p));
      yield* c.kube.create(NADs, nad(c, a, "{}", { tier: "web", env: "prod" }));
      yield* c.kube.create(NADs, nad(c, b, "{}", { tier: "db", env: "prod" }));
      yield* c.kube.create(NADs, nad(c, d, "{}", { tier: "web" }));
      yield* c.kube.create(NADs, nad(c, e, "{}", { legacy: "true" }));
      const q = (s: string) =>
        Effect.map(c.kube.list(NADs, { namespace: c.ns, labelSelector: c.sel(s) }), (l) => names(l.items));
      assertEquals(yield* q("tier=web"), [a, d].sort());
      assertEquals(yield* q("tier==web,env=prod"), [a]);
      assertEquals(yield* q("tier!=web"), [b, e].sort());
      assertEquals(yield* q("tier in (web, db)"), [a, b, d].sort());
      assertEquals(yield* q("tier notin (web)"), [b, e].sort());
      assertEquals(yield* q("env"), [a, b].sort());
      assertEquals(yield* q("!env"), [d, e].sort());
      const bad = yield* flipTag(c.kube.list(NADs, { namespace: c.ns, labelSelector: "tier in (" }));
      assertEquals(bad._tag, "KubeBadRequest");
    }));

  test("field selectors: metadata.name, and spec.nodeName on pods", (c) =>
    Effect.gen(function* () {
      const n1 = c.name("node"), n2 = c.name("node");
      const [p1, p2, p3] = ["p1", "p2", "p3"].map((p) => c.name(p));
      yield* c.kube.create(PodResource, pod(c, p1, n1));
      yield* c.kube.create(PodResource, pod(c, p2, n2));
      yield* c.kube.create(PodResource, pod(c, p3, n1));
      const q = (fieldSelector: string) =>
        Effect.map(
          c.kube.list(PodResource, { namespace: c.ns, labelSelector: c.sel(), fieldSelector }),
          (l) => names(l.items),
        );
      assertEquals(yield* q(`spec.nodeName=${n1}`), [p1, p3].sort());
      assertEquals(yield* q(`spec.nodeName!=${n1}`), [p2]);
      assertEquals(yield* q(`metadata.name=${p2}`), [p2]);
      assertEquals(yield* q(`metadata.name=${p3},spec.nodeName=${n1}`), [p3]);
      const byName = yield* c.kube.list(NADs, { namespace: c.ns, fieldSelector: `metadata.name=${p1}` });
      assertEquals(byName.items.length, 0);
      const bad = yield* flipTag(c.kube.list(NADs, { namespace: c.ns, fieldSelector: "spec.config=x" }));
      assertEquals(bad._tag, "KubeBadRequest");
    }));

  test("lists are paged transparently", (c) =>
    Effect.gen(function* () {
      const made = [1, 2, 3, 4, 5].map(() => c.name("page"));
      for (const n of made) yield* c.kube.create(NADs, nad(c, n));
      const all = yield* c.kube.list(NADs, { namespace: c.ns, labelSelector: c.sel(), pageSize: 2 });
      assertEquals(names(all.items), made.sort());
    }));

  // --- Patches -------------------------------------------------------------------------------------------

  test("merge patch adds and removes fields; a resourceVersion in it is a precondition", (c) =>
    Effect.gen(function* () {
      const name = c.name("merge");
      const v1 = yield* c.kube.create(NADs, nad(c, name, "a", { keep: "1", drop: "1" }));
      const v2 = yield* c.kube.patch(
        NADs,
        name,
        { type: "merge", patch: { metadata: { labels: { drop: null, added: "1" } }, spec: { config: "b" } } },
        { namespace: c.ns },
      );
      assertEquals(v2.metadata.labels, c.labels({ keep: "1", added: "1" }));
      assertEquals(v2.spec?.config, "b");
      const err = yield* flipTag(c.kube.patch(
        NADs,
        name,
        { type: "merge", patch: { metadata: { resourceVersion: v1.metadata.resourceVersion }, spec: { config: "c" } } },
        { namespace: c.ns },
      ));
      assertEquals(err._tag, "KubeConflict");
    }));

  test("JSON patch applies operations in order; a failed test is KubeInvalid", (c) =>
    Effect.gen(function* () {
      const name = c.name("jp");
      yield* c.kube.create(NADs, nad(c, name, "a"));
      const ok = yield* c.kube.patch(NADs, name, {
        type: "json",
        ops: [
          { op: "test", path: "/spec/config", value: "a" },
          { op: "replace", path: "/spec/config", value: "b" },
          { op: "add", path: "/metadata/annotations", value: { "x.y/z": "1" } },
        ],
      }, { namespace: c.ns });
      assertEquals(ok.spec?.config, "b");
      assertEquals(ok.metadata.annotations, { "x.y/z": "1" });
      const err = yield* flipTag(c.kube.patch(NADs, name, {
        type: "json",
        ops: [{ op: "test", path: "/spec/config", value: "a" }, { op: "replace", path: "/spec/config", value: "c" }],
      }, { namespace: c.ns }));
      assertEquals(err._tag, "KubeInvalid");
      assertEquals((yield* c.kube.get(NADs, name, { namespace: c.ns })).spec?.config, "b");
    }));

  test("server-side apply: creates, prunes dropped fields, reports conflicts, force takes over", (c) =>
    Effect.gen(function* () {
      const name = c.name("ssa");
      const cfg = (labels: Record<string, string>, config: string) => ({
        metadata: { labels: c.labels(labels) },
        spec: { config },
      });
      const as = (manager: string, object: unknown, force = false) =>
        c.kube.patch(NADs, name, { type: "apply", object, force }, { namespace: c.ns, fieldManager: manager });
      const v1 = yield* as("mgr-a", cfg({ a: "1", b: "2" }, "x"));
      assertEquals(v1.metadata.labels, c.labels({ a: "1", b: "2" }));
      const v2 = yield* as("mgr-a", cfg({ a: "1" }, "x"));
      assertEquals(v2.metadata.labels, c.labels({ a: "1" }));
      const err = yield* flipTag(as("mgr-b", { spec: { config: "y" } }));
      assertEquals(err._tag, "KubeConflict");
      assertMatch(err.message, /mgr-a/);
      const v3 = yield* as("mgr-b", { spec: { config: "y" } }, true);
      assertEquals(v3.spec?.config, "y");
      assertEquals(v3.metadata.labels, c.labels({ a: "1" }));
      const noManager = yield* flipTag(c.kube.patch(NADs, name, { type: "apply", object: {} }, { namespace: c.ns }));
      assertEquals(noManager._tag, "KubeBadRequest");
    }));

  // --- Status subresource, deletion, dry-run --------------------------------------------------------------

  test("status subresource: update leaves status alone, updateStatus leaves the spec alone", (c) =>
    Effect.gen(function* () {
      const name = c.name("st");
      const created = yield* c.kube.create(PodResource, pod(c, name, c.name("node")));
      const running = {
        phase: "Running" as const,
        podIP: "10.1.2.3",
        podIPs: [{ ip: "10.1.2.3" }],
        conditions: [{ type: "Ready", status: "True" as const }],
      };
      const viaUpdate = yield* c.kube.update(PodResource, {
        ...created,
        metadata: { ...created.metadata, labels: c.labels({ touched: "yes" }) },
        status: running,
      });
      assertEquals(viaUpdate.metadata.labels, c.labels({ touched: "yes" }));
      assert(viaUpdate.status?.podIP === undefined, "update ignored status");
      const viaStatus = yield* c.kube.updateStatus(PodResource, {
        ...viaUpdate,
        spec: { ...viaUpdate.spec, hostname: "ignored" },
        status: running,
      });
      assertEquals(viaStatus.status?.podIP, "10.1.2.3");
      assertEquals(viaStatus.status?.phase, "Running");
      assertEquals(viaStatus.spec.hostname, undefined);
      const patched = yield* c.kube.patch(PodResource, name, {
        type: "merge",
        patch: { status: { podIP: "10.1.2.4", podIPs: [{ ip: "10.1.2.4" }] } },
      }, { namespace: c.ns, subresource: "status" });
      assertEquals(patched.status?.podIP, "10.1.2.4");
    }));

  test("delete preconditions on uid and resourceVersion", (c) =>
    Effect.gen(function* () {
      const name = c.name("pre");
      const v1 = yield* c.kube.create(NADs, nad(c, name, "1"));
      const v2 = yield* c.kube.update(NADs, { ...v1, spec: { config: "2" } });
      const ns = c.ns;
      const wrongUid = yield* flipTag(
        c.kube.delete(NADs, name, { namespace: ns, preconditions: { uid: crypto.randomUUID() } }),
      );
      assertEquals(wrongUid._tag, "KubeConflict");
      const staleRv = yield* flipTag(
        c.kube.delete(NADs, name, { namespace: ns, preconditions: { resourceVersion: v1.metadata.resourceVersion } }),
      );
      assertEquals(staleRv._tag, "KubeConflict");
      const ok = yield* c.kube.delete(NADs, name, {
        namespace: ns,
        preconditions: { uid: v2.metadata.uid, resourceVersion: v2.metadata.resourceVersion },
      });
      assertEquals(ok._tag, "Deleted");
    }));

  test("finalizers keep a deleted object until they are removed", (c) =>
    Effect.gen(function* () {
      const name = c.name("fin");
      const created = yield* c.kube.create(NADs, nad(c, name, "{}", {}, { finalizers: ["danm.test/hold"] }));
      const w = yield* collect(c.kube.watch(NADs, {
        namespace: c.ns,
        labelSelector: c.sel(),
        resourceVersion: created.metadata.resourceVersion!,
      }));
      const res = yield* c.kube.delete(NADs, name, { namespace: c.ns });
      if (res._tag !== "Pending") return fail("deletion should be pending");
      assert(res.object.metadata.deletionTimestamp, "deletionTimestamp set");
      const still = yield* c.kube.get(NADs, name, { namespace: c.ns });
      assertEquals(still.metadata.finalizers, ["danm.test/hold"]);
      const adding = yield* flipTag(c.kube.update(NADs, {
        ...still,
        metadata: { ...still.metadata, finalizers: ["danm.test/hold", "danm.test/more"] },
      }));
      assertEquals(adding._tag, "KubeInvalid");
      yield* c.kube.patch(NADs, name, { type: "merge", patch: { metadata: { finalizers: null } } }, {
        namespace: c.ns,
      });
      assertEquals((yield* flipTag(c.kube.get(NADs, name, { namespace: c.ns })))._tag, "KubeNotFound");
      const e1 = yield* w.next, e2 = yield* w.next;
      assertEquals([e1._tag, e2._tag], ["Modified", "Deleted"]);
      if (e1._tag === "Modified") assert(e1.object.metadata.deletionTimestamp, "the Modified event shows the deletion");
    }));

  test("a pod bound to a node waits out its grace period; grace 0 removes it", (c) =>
    Effect.gen(function* () {
      const name = c.name("grace");
      yield* c.kube.create(PodResource, pod(c, name, c.name("node")));
      const first = yield* c.kube.delete(PodResource, name, { namespace: c.ns });
      if (first._tag !== "Pending") return fail("a bound pod is deleted gracefully");
      assertEquals(first.object.metadata.deletionGracePeriodSeconds, 30);
      const second = yield* c.kube.delete(PodResource, name, { namespace: c.ns, gracePeriodSeconds: 0 });
      assertEquals(second._tag, "Deleted");
      assertEquals((yield* flipTag(c.kube.get(PodResource, name, { namespace: c.ns })))._tag, "KubeNotFound");
      const unbound = c.name("unbound");
      yield* c.kube.create(PodResource, pod(c, unbound));
      assertEquals((yield* c.kube.delete(PodResource, unbound, { namespace: c.ns }))._tag, "Deleted");
    }));

  test("dry-run create, update, patch and delete persist nothing", (c) =>
    Effect.gen(function* () {
      const ns = { namespace: c.ns };
      const ghost = c.name("ghost");
      const dry = yield* c.kube.create(NADs, nad(c, ghost, "a"), { dryRun: true });
      assertEquals(dry.metadata.name, ghost);
      assertEquals((yield* flipTag(c.kube.get(NADs, ghost, ns)))._tag, "KubeNotFound");

      const name = c.name("real");
      const real = yield* c.kube.create(NADs, nad(c, name, "a"));
      const dryUpdate = yield* c.kube.update(NADs, { ...real, spec: { config: "b" } }, { dryRun: true });
      assertEquals(dryUpdate.spec?.config, "b");
      const dryPatch = yield* c.kube.patch(NADs, name, { type: "merge", patch: { spec: { config: "c" } } }, {
        ...ns,
        dryRun: true,
      });
      assertEquals(dryPatch.spec?.config, "c");
      yield* c.kube.delete(NADs, name, { ...ns, dryRun: true });
      const after = yield* c.kube.get(NADs, name, ns);
      assertEquals(after.spec?.config, "a");
      assertEquals(after.metadata.resourceVersion, real.metadata.resourceVersion);
      const dupDry = yield* flipTag(c.kube.create(NADs, nad(c, name), { dryRun: true }));
      assertEquals(dupDry._tag, "KubeAlreadyExists");
    }));

  // --- Watches and informers -----------------------------------------------------------------------------

  test("watch: a Sync with the current objects, then changes in order", (c) =>
    Effect.gen(function* () {
      const first = c.name("w");
      yield* c.kube.create(NADs, nad(c, first, "0"));
      const w = yield* collect(c.kube.watch(NADs, { namespace: c.ns, labelSelector: c.sel() }));
      const sync = yield* w.next;
      if (sync._tag !== "Sync") return fail(`first event should be Sync, got ${sync._tag}`);
      assertEquals(sync.reason, "initial");
      assertEquals(names(sync.items), [first]);

      const second = c.name("w");
      const created = yield* c.kube.create(NADs, nad(c, second, "1"));
      let cur = created;
      for (const v of ["2", "3"]) cur = yield* c.kube.update(NADs, { ...cur, spec: { config: v } });
      yield* c.kube.delete(NADs, second, { namespace: c.ns });
      const seen: string[] = [];
      const versions = new Set<string>();
      for (let i = 0; i < 4; i++) {
        const e = yield* w.next;
        if (e._tag === "Sync" || e._tag === "Bookmark") return fail(`unexpected ${e._tag}`);
        assertEquals(nameOf(e.object), second);
        seen.push(`${e._tag}:${e.object.spec?.config}`);
        versions.add(e.resourceVersion);
      }
      assertEquals(seen, ["Added:1", "Modified:2", "Modified:3", "Deleted:3"]);
      assertEquals(versions.size, 4);
    }));

  test("watch resumes from a given resourceVersion", (c) =>
    Effect.gen(function* () {
      const name = c.name("resume");
      const v0 = yield* c.kube.create(NADs, nad(c, name, "0"));
      const v1 = yield* c.kube.update(NADs, { ...v0, spec: { config: "1" } });
      yield* c.kube.update(NADs, { ...v1, spec: { config: "2" } });
      const w = yield* collect(c.kube.watch(NADs, {
        namespace: c.ns,
        labelSelector: c.sel(),
        resourceVersion: v0.metadata.resourceVersion!,
      }));
      const a = yield* w.next, b = yield* w.next;
      const show = (e: WatchEvent<typeof NetworkAttachmentDefinition.Type>) =>
        e._tag === "Modified" ? `Modified:${e.object.spec?.config}` : e._tag;
      assertEquals([show(a), show(b)], ["Modified:1", "Modified:2"]);
    }));

  test("watch with a label selector sees objects enter and leave the selection", (c) =>
    Effect.gen(function* () {
      const name = c.name("sel");
      const created = yield* c.kube.create(NADs, nad(c, name, "{}", { sel: "yes" }));
      const opts: WatchOptions = {
        namespace: c.ns,
        labelSelector: c.sel("sel=yes"),
        resourceVersion: created.metadata.resourceVersion!,
      };
      const w = yield* collect(c.kube.watch(NADs, opts));
      const setSel = (v: string) =>
        c.kube.patch(NADs, name, { type: "merge", patch: { metadata: { labels: { sel: v } } } }, { namespace: c.ns });
      yield* setSel("no");
      yield* setSel("yes");
      const out = yield* w.next, back = yield* w.next;
      assertEquals([out._tag, back._tag], ["Deleted", "Added"]);
    }));

  test("informers converge, publish changes after a Synced, and are shared", (c) =>
    Effect.gen(function* () {
      const [a, b, d] = ["a", "b", "d"].map((p) => c.name(p));
      yield* c.kube.create(NADs, nad(c, a, "1"));
      const opts = { namespace: c.ns, labelSelector: c.sel() };
      const inf = yield* c.kube.informer(NADs, opts);
      const again = yield* c.kube.informer(NADs, opts);
      assert(inf === again, "one informer per resource type and filters");
      yield* inf.synced;
      assertEquals(names(yield* inf.list), [a]);

      const q = yield* Queue.unbounded<string>();
      yield* inf.changes.pipe(
        Stream.runForEach((e) => Queue.offer(q, e._tag === "Synced" ? `Synced:${e.items.size}` : `${e._tag}:${e.key}`)),
        Effect.forkScoped,
      );
      const next = Effect.timeoutOrElse(Queue.take(q), {
        duration: within,
        orElse: () => Effect.sync(() => fail("no informer event")),
      });
      assertEquals(yield* next, "Synced:1");

      yield* c.kube.create(NADs, nad(c, b, "1"));
      yield* c.kube.create(NADs, nad(c, d, "1"));
      const cur = yield* c.kube.get(NADs, a, { namespace: c.ns });
      yield* c.kube.update(NADs, { ...cur, spec: { config: "2" } });
      yield* c.kube.delete(NADs, b, { namespace: c.ns });
      const got = [yield* next, yield* next, yield* next, yield* next];
      assertEquals(got, [`Added:${c.ns}/${b}`, `Added:${c.ns}/${d}`, `Updated:${c.ns}/${a}`, `Deleted:${c.ns}/${b}`]);

      const converged = yield* SubscriptionRef.changes(inf.state).pipe(
        Stream.filter((s) => s.items.size === 2),
        Stream.runHead,
        Effect.timeoutOrElse({ duration: within, orElse: () => Effect.sync(() => fail("informer did not converge")) }),
      );
      if (converged._tag === "None") return fail("no state");
      const state = converged.value;
      assertEquals([...state.items.keys()].sort(), [`${c.ns}/${a}`, `${c.ns}/${d}`].sort());
      assertEquals(state.items.get(`${c.ns}/${a}`)?.spec?.config, "2");
      assertEquals((yield* inf.get(d, c.ns))?.metadata.name, d);
    }));

  test("an informer's index follows creates, updates that move an object and deletes", (c) =>
    Effect.gen(function* () {
      const [a, b, d] = ["a", "b", "d"].map((p) => c.name(p));
      yield* c.kube.create(NADs, nad(c, a, "x"));
      const inf = yield* c.kube.informer(NADs, { namespace: c.ns, labelSelector: c.sel() });
      const byConfig = yield* inf.index(nadConfig);
      yield* inf.synced;
      yield* c.kube.create(NADs, nad(c, b, "x"));
      yield* c.kube.create(NADs, nad(c, d, "y"));
      const cur = yield* c.kube.get(NADs, a, { namespace: c.ns });
      yield* c.kube.update(NADs, { ...cur, spec: { config: "y" } });
      yield* c.kube.delete(NADs, b, { namespace: c.ns });
      yield* SubscriptionRef.changes(inf.state).pipe(
        Stream.filter((s) => s.items.size === 2 && s.items.get(`${c.ns}/${a}`)?.spec?.config === "y"),
        Stream.runHead,
        Effect.timeoutOrElse({ duration: within, orElse: () => Effect.sync(() => fail("informer did not converge")) }),
      );
      assertEquals(names(yield* byConfig.get("y")), [a, d].sort());
      assertEquals(names(yield* byConfig.get("x")), []);
    }));
}

/** An informer index function (module-level: one index per function). */
const nadConfig = (n: typeof NetworkAttachmentDefinition.Type): ReadonlyArray<string> =>
  n.spec?.config ? [n.spec.config] : [];
