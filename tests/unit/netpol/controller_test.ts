// The node agent's policy controller on the in-memory apiserver and PolicyTables: which pods of the node get a
// table, changes reaching them, removal, tampering repaired on resync, a restart reprogramming everything, failures
// retried with backoff and reported as pod Events, and the CNI ADD's programPod (fail closed); peer churn patching
// set elements.
import { Deferred, Effect, Fiber, Layer } from "effect";
import { type DanmEp, DanmEpResource } from "../../../core/api/danm.ts";
import { EpLabels } from "../../../core/cni/endpoints.ts";
import { EventResource, type Pod, PodResource } from "../../../core/api/k8s.ts";
import { MultiNetworkPolicyResource } from "../../../core/api/netpol.ts";
import {
  engineRenderer,
  make,
  type NetpolControllerConfig,
  type PolicyRenderer,
} from "../../../core/netpol/controller.ts";
import type { LocalSandbox } from "../../../core/netpol/world.ts";
import { applyingPolicies } from "../../../core/netpol/select.ts";
import { makeMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import { layerMemoryPolicyTables, MemoryPolicyTables } from "../../../adapters/nftables/memory.ts";
import { Kube } from "../../../core/ports/kube.ts";
import { PolicyTables } from "../../../core/ports/policy_tables.ts";
import { assertEquals, assertMatch } from "../../harness/assert.ts";
import { eventuallyHolds } from "../../harness/eventually.ts";
import { policy } from "./fixtures.ts";

/** A table without sets (any change replaces it whole), from its script. */
const setless = (script: string) => ({ script, skeleton: script, sets: [] });

/** A stand-in for the engine's renderer: the policies applying to each interface (what compile+render build on). */
const render: PolicyRenderer = (world, pod) => {
  const applied = applyingPolicies(world, pod);
  return Effect.succeed(
    applied.length === 0 ? undefined : setless(
      `table inet danm_netpol { # ${applied.map((a) => `${a.attachment.ifName}:${a.policies.map(([k]) => k)}`)} }`,
    ),
  );
};

const pod = (name: string, node: string, labels: Record<string, string>): Pod => ({
  metadata: { namespace: "ns1", name, labels },
  spec: { nodeName: node, containers: [{ name: "c", image: "x" }] },
});
const ep = (podName: string, node: string, ip: string): DanmEp => ({
  // The node label the CNI puts on its DanmEps (the controller's view of its own node's pods).
  metadata: { namespace: "ns1", name: `${podName}-net1`, labels: { [EpLabels.node]: node } },
  spec: {
    NetworkName: "net1",
    EndpointID: `${podName}-net1`,
    Interface: { Name: "net1", Address: `${ip}/24` },
    Host: node,
    Pod: podName,
    netns: `/run/netns/${podName}`,
    apiType: "DanmNet",
  },
});
const denyAll = policy("ns1", "deny", { podSelector: { matchLabels: { app: "db" } }, policyTypes: ["Ingress"] });

const setup = (tables: MemoryPolicyTables, extra: Partial<NetpolControllerConfig> = {}) =>
  Effect.gen(function* () {
    const server = new MemoryApiServer();
    const kube = yield* makeMemoryKube(server);
    const start = (t: MemoryPolicyTables = tables) =>
      Effect.provide(
        make({ nodeName: "node-a", render, resyncPeriod: "1 hour", backoffMs: 50, ...extra }),
        Layer.merge(Layer.succeed(Kube, kube), layerMemoryPolicyTables(t)),
      );
    return { kube, start };
  });

const run = <A, E>(e: Effect.Effect<A, E, import("effect").Scope.Scope>) => Effect.runPromise(Effect.scoped(e));

Deno.test("netpol controller: local policed pods get a table, others don't; label and policy changes reach them", () =>
  run(Effect.gen(function* () {
    const tables = new MemoryPolicyTables();
    const { kube, start } = yield* setup(tables);
    yield* kube.create(PodResource, pod("db-a", "node-a", { app: "db" }));
    yield* kube.create(PodResource, pod("web-a", "node-a", { app: "web" }));
    yield* kube.create(PodResource, pod("db-b", "node-b", { app: "db" }));
    for (
      const [p, n, ip] of [["db-a", "node-a", "10.0.0.1"], ["web-a", "node-a", "10.0.0.2"], [
        "db-b",
        "node-b",
        "10.0.0.3",
      ]]
    ) {
      yield* kube.create(DanmEpResource, ep(p, n, ip));
    }
    yield* kube.create(MultiNetworkPolicyResource, denyAll);
    const c = yield* start();
    const has = (netns: string) => Effect.sync(() => tables.tables.has(netns));
    yield* eventuallyHolds("db-a's table", has("/run/netns/db-a"), 5_000);
    assertEquals([...tables.tables.keys()], ["/run/netns/db-a"], "web-a: no policy; db-b: another node's pod");
    assertMatch(tables.tables.get("/run/netns/db-a")!, /net1:ns1\/deny/);

    // A label change selects web-a too; then db-a stops matching and its table goes.
    yield* kube.patch(PodResource, "web-a", { type: "merge", patch: { metadata: { labels: { app: "db" } } } }, {
      namespace: "ns1",
    });
    yield* eventuallyHolds("web-a's table", has("/run/netns/web-a"), 5_000);
    yield* kube.patch(PodResource, "db-a", { type: "merge", patch: { metadata: { labels: { app: "x" } } } }, {
      namespace: "ns1",
    });
    yield* eventuallyHolds("db-a's table removed", Effect.map(has("/run/netns/db-a"), (h) => !h), 5_000);
    // Deleting the policy removes every table.
    yield* kube.delete(MultiNetworkPolicyResource, "deny", { namespace: "ns1" });
    yield* eventuallyHolds("no tables", Effect.sync(() => tables.tables.size === 0), 5_000);
    const metrics = yield* c.metrics;
    assertMatch(metrics, /danm_netpol_table_changes_total\{[^}]*result="applied"[^}]*\} 2/);
    assertMatch(metrics, /danm_netpol_table_changes_total\{[^}]*result="removed"[^}]*\} 2/);
    // The first pass (before any change) does not count: web-a applied, db-a removed, web-a removed.
    assertMatch(metrics, /danm_netpol_converge_seconds_count\{[^}]*\} 3/);
  })));

Deno.test("netpol controller: resync repairs a tampered table; a restart reprograms every pod and drops stale tables", () =>
  run(Effect.gen(function* () {
    const tables = new MemoryPolicyTables();
    const { kube, start } = yield* setup(tables);
    yield* kube.create(PodResource, pod("db-a", "node-a", { app: "db" }));
    yield* kube.create(PodResource, pod("web-a", "node-a", { app: "web" }));
    yield* kube.create(DanmEpResource, ep("db-a", "node-a", "10.0.0.1"));
    yield* kube.create(DanmEpResource, ep("web-a", "node-a", "10.0.0.2"));
    yield* kube.create(MultiNetworkPolicyResource, denyAll);
    const c = yield* start();
    yield* eventuallyHolds("db-a's table", Effect.sync(() => tables.tables.has("/run/netns/db-a")), 5_000);
    const want = tables.tables.get("/run/netns/db-a")!;

    tables.tables.set("/run/netns/db-a", "table inet danm_netpol { }"); // someone flushed it
    const report = yield* c.syncNow;
    assertEquals(report.applied, ["ns1/db-a"]);
    assertEquals(tables.tables.get("/run/netns/db-a"), want);
    assertEquals((yield* c.syncNow).applied, [], "nothing to do once repaired");

    // A new controller (the agent restarted) with a table tampered while it was down, and a stale one on web-a.
    tables.tables.set("/run/netns/db-a", "table inet danm_netpol { }");
    tables.tables.set("/run/netns/web-a", "table inet danm_netpol { # left over }");
    const before = tables.ops.length;
    yield* start();
    yield* eventuallyHolds(
      "the restarted controller's first pass",
      Effect.sync(() => tables.tables.get("/run/netns/db-a") === want && !tables.tables.has("/run/netns/web-a")),
      5_000,
    );
    assertEquals(tables.ops.slice(before).map((o) => `${o.op} ${o.netns}`).sort(), [
      "apply /run/netns/db-a",
      "remove /run/netns/web-a",
    ]);
  })));

Deno.test("netpol controller: a failing pod is retried with backoff and reported once as a Warning Event", () =>
  run(Effect.gen(function* () {
    const tables = new MemoryPolicyTables();
    tables.failing.set("/run/netns/db-a", "Error: Could not process rule: No such file or directory");
    const { kube, start } = yield* setup(tables);
    yield* kube.create(PodResource, pod("db-a", "node-a", { app: "db" }));
    yield* kube.create(DanmEpResource, ep("db-a", "node-a", "10.0.0.1"));
    yield* kube.create(MultiNetworkPolicyResource, denyAll);
    const c = yield* start();
    yield* eventuallyHolds(
      "a failing pod in the metrics",
      Effect.map(c.metrics, (m) => /danm_netpol_failing_pods\{[^}]*\} 1/.test(m)),
      5_000,
    );
    yield* Effect.sleep("300 millis"); // several retries (50, 100, 200 ms)
    const events = (yield* kube.list(EventResource, { namespace: "ns1" })).items;
    assertEquals(events.length, 1, "one Event per distinct failure, not per retry");
    assertEquals([events[0].reason, events[0].involvedObject.kind, events[0].involvedObject.name], [
      "NetworkPolicyNotEnforced",
      "Pod",
      "db-a",
    ]);
    assertMatch(events[0].message ?? "", /Could not process rule/);
    tables.failing.clear();
    yield* eventuallyHolds("the retry succeeding", Effect.sync(() => tables.tables.has("/run/netns/db-a")), 5_000);
    assertMatch(yield* c.metrics, /danm_netpol_failing_pods\{[^}]*\} 0/);
  })));

Deno.test("netpol controller: programPod programs a new pod from what the ADD knows, and fails closed", () =>
  run(Effect.gen(function* () {
    const tables = new MemoryPolicyTables();
    const { kube, start } = yield* setup(tables);
    yield* kube.create(MultiNetworkPolicyResource, denyAll);
    const c = yield* start();
    // Neither the pod nor its DanmEps are in the caches yet: the ADD's own knowledge is enough.
    const newPod = {
      ...pod("db-new", "node-a", { app: "db" }),
      metadata: { namespace: "ns1", name: "db-new", labels: { app: "db" } },
    };
    const attachments = [{ network: "DanmNet:ns1/net1", ifName: "net1", v4: ["10.0.0.9"], v6: [] }];
    yield* c.programPod({ pod: newPod, netns: "/run/netns/db-new", attachments });
    assertMatch(tables.tables.get("/run/netns/db-new") ?? "", /net1:ns1\/deny/);

    tables.failing.set("/run/netns/db-new2", "Error: nope");
    const err = yield* Effect.flip(
      c.programPod({
        pod: { ...newPod, metadata: { ...newPod.metadata, name: "db-new2" } },
        netns: "/run/netns/db-new2",
        attachments,
      }),
    );
    assertEquals(err._tag, "PolicyProgramFailed");
    assertMatch(err.message, /ns1\/db-new2.*nope/);
    tables.netnsPaths = new Set();
    const gone = yield* Effect.flip(c.programPod({ pod: newPod, netns: "/run/netns/db-new", attachments }));
    assertMatch(gone.message, /is gone/);
  })));

Deno.test("netpol controller: a change re-renders only the local pods it affects (the engine's affectedPods)", () =>
  run(Effect.gen(function* () {
    const tables = new MemoryPolicyTables();
    const rendered: string[] = [];
    const counting: PolicyRenderer = (world, key) => {
      rendered.push(key);
      return render(world, key);
    };
    const { kube, start } = yield* setup(tables, { render: counting });
    yield* kube.create(PodResource, pod("db-a", "node-a", { app: "db" }));
    yield* kube.create(PodResource, pod("web-a", "node-a", { app: "web" }));
    yield* kube.create(PodResource, pod("far-b", "node-b", { app: "far" }));
    for (
      const [p, n, ip] of [["db-a", "node-a", "10.0.0.1"], ["web-a", "node-a", "10.0.0.2"], [
        "far-b",
        "node-b",
        "10.0.0.3",
      ]]
    ) {
      yield* kube.create(DanmEpResource, ep(p, n, ip));
    }
    yield* kube.create(MultiNetworkPolicyResource, denyAll);
    yield* start();
    yield* eventuallyHolds("the first pass", Effect.sync(() => tables.tables.has("/run/netns/db-a")), 5_000);
    yield* Effect.sleep("100 millis");
    rendered.length = 0;
    // A label no policy looks at, on a pod of another node: nothing local to redo.
    yield* kube.patch(PodResource, "far-b", { type: "merge", patch: { metadata: { labels: { tier: "x" } } } }, {
      namespace: "ns1",
    });
    yield* Effect.sleep("300 millis");
    assertEquals(rendered, [], "an unrelated change renders no local pod");
    // web-a becoming a db: only web-a is rendered again.
    yield* kube.patch(PodResource, "web-a", { type: "merge", patch: { metadata: { labels: { app: "db" } } } }, {
      namespace: "ns1",
    });
    yield* eventuallyHolds("web-a's table", Effect.sync(() => tables.tables.has("/run/netns/web-a")), 5_000);
    assertEquals([...new Set(rendered)], ["ns1/web-a"]);
  })));

Deno.test("netpol controller: a node without nft is fine while no policy selects its pods, and failing once one does", () =>
  run(Effect.gen(function* () {
    const tables = new MemoryPolicyTables();
    tables.missingTool = "nft";
    const { kube, start } = yield* setup(tables);
    yield* kube.create(PodResource, pod("db-a", "node-a", { app: "db" }));
    yield* kube.create(DanmEpResource, ep("db-a", "node-a", "10.0.0.1"));
    const c = yield* start();
    assertEquals((yield* c.syncNow).failed.size, 0, "nothing to enforce: no nft needed");
    assertEquals((yield* kube.list(EventResource, { namespace: "ns1" })).items.length, 0);
    yield* kube.create(MultiNetworkPolicyResource, denyAll);
    yield* eventuallyHolds(
      "the missing nft reported",
      Effect.map(Effect.orDie(kube.list(EventResource, { namespace: "ns1" })), (l) => l.items.length === 1),
      5_000,
    );
    const [event] = (yield* kube.list(EventResource, { namespace: "ns1" })).items;
    assertMatch(event.message ?? "", /needs "nft", which is not installed/);
  })));

Deno.test("netpol controller: pods are programmed several at once, never more than `concurrency`", () =>
  run(Effect.gen(function* () {
    const tables = new MemoryPolicyTables();
    tables.applyMs = 30;
    const { kube, start } = yield* setup(tables, { concurrency: 4 });
    for (let i = 0; i < 12; i++) {
      yield* kube.create(PodResource, pod(`db-${i}`, "node-a", { app: "db" }));
      yield* kube.create(DanmEpResource, ep(`db-${i}`, "node-a", `10.0.0.${i + 1}`));
    }
    yield* kube.create(MultiNetworkPolicyResource, denyAll);
    yield* start();
    yield* eventuallyHolds("12 tables", Effect.sync(() => tables.tables.size === 12), 5_000);
    assertEquals(tables.peakApplies, 4);
  })));

Deno.test("netpol controller: without policies it caches only policies and this node's DanmEps; the first opens the rest", () =>
  run(Effect.gen(function* () {
    const tables = new MemoryPolicyTables();
    const kube = yield* makeMemoryKube(new MemoryApiServer());
    const opened: string[] = [];
    const counting = {
      ...kube,
      informer: ((rt, options) => {
        opened.push(`${rt.kind}${options?.labelSelector ? ` ${options.labelSelector}` : ""}`);
        return kube.informer(rt, options);
      }) as typeof kube.informer,
    };
    yield* kube.create(PodResource, pod("db-a", "node-a", { app: "db" }));
    yield* kube.create(DanmEpResource, ep("db-a", "node-a", "10.0.0.1"));
    yield* Effect.provide(
      make({ nodeName: "node-a", render, resyncPeriod: "1 hour" }),
      Layer.merge(Layer.succeed(Kube, counting), layerMemoryPolicyTables(tables)),
    );
    yield* Effect.sleep("200 millis");
    assertEquals(opened, ["MultiNetworkPolicy", "DanmEp cni.danm.io/node=node-a"]);
    yield* kube.create(MultiNetworkPolicyResource, denyAll);
    yield* eventuallyHolds("db-a's table", Effect.sync(() => tables.tables.has("/run/netns/db-a")), 5_000);
    assertEquals(opened.slice(2), ["Pod", "Namespace", "DanmEp"]);
  })));

Deno.test("netpol controller: peer churn patches set elements (the engine's render); a refused patch replaces whole", () =>
  run(Effect.gen(function* () {
    const tables = new MemoryPolicyTables();
    const { kube, start } = yield* setup(tables, { render: engineRenderer });
    const allowWeb = policy("ns1", "allow-web", {
      podSelector: { matchLabels: { app: "db" } },
      policyTypes: ["Ingress"],
      ingress: [{ from: [{ podSelector: { matchLabels: { app: "web" } } }], ports: [{ protocol: "TCP", port: 80 }] }],
    });
    const addPod = (name: string, node: string, app: string, ip: string) =>
      Effect.andThen(
        kube.create(PodResource, pod(name, node, { app })),
        kube.create(DanmEpResource, ep(name, node, ip)),
      );
    yield* addPod("db-a", "node-a", "db", "10.0.0.1");
    yield* addPod("web-a", "node-a", "web", "10.0.0.2");
    yield* kube.create(MultiNetworkPolicyResource, allowWeb);
    const c = yield* start();
    const db = "/run/netns/db-a";
    const holds = (ip: string) => Effect.sync(() => tables.tables.get(db)?.includes(`${ip}/32 . tcp . 80`) ?? false);
    yield* eventuallyHolds("db-a's table", holds("10.0.0.2"), 5_000);
    assertEquals(tables.ops.map((o) => o.op), ["apply"]);

    // A peer on another node comes: db-a's set gets its element, in a patch that ends at the full render.
    yield* addPod("web-b", "node-b", "web", "10.0.0.5");
    yield* eventuallyHolds("web-b admitted", holds("10.0.0.5"), 5_000);
    const p = tables.ops[tables.ops.length - 1];
    assertEquals(p.op, "patch");
    assertEquals(p.patch?.sets, [{ set: "in_0_l4v4", add: ["10.0.0.5/32 . tcp . 80"], remove: [] }]);

    // Someone changed the table: the next patch is refused and the table replaced whole (counted).
    tables.tables.set(db, "table inet danm_netpol { }");
    yield* addPod("web-c", "node-b", "web", "10.0.0.9");
    yield* eventuallyHolds("web-c admitted", holds("10.0.0.9"), 5_000);
    assertEquals(tables.ops.slice(-1).map((o) => o.op), ["apply"]);
    assertMatch(yield* c.metrics, /danm_netpol_table_changes_total\{[^}]*result="patch_failed"[^}]*\} 1/);
    assertMatch(yield* c.metrics, /danm_netpol_table_changes_total\{[^}]*result="patched"[^}]*\} 1/);
  })));

Deno.test("netpol controller: an ADD is not held up by a pass stuck on another pod; on its own pod it waits", () =>
  run(Effect.gen(function* () {
    const tables = new MemoryPolicyTables();
    const stuck = yield* Deferred.make<void>();
    let stuckRendering = false;
    // The pass renders db-slow until `stuck` is released (a big table, a slow nft: the same for the lock).
    const blocking: PolicyRenderer = (world, key) =>
      key === "ns1/db-slow"
        ? Effect.andThen(
          Effect.sync(() => stuckRendering = true),
          Effect.andThen(Deferred.await(stuck), render(world, key)),
        )
        : render(world, key);
    const { kube, start } = yield* setup(tables, { render: blocking, concurrency: 1 });
    yield* kube.create(PodResource, pod("db-slow", "node-a", { app: "db" }));
    yield* kube.create(DanmEpResource, ep("db-slow", "node-a", "10.0.0.1"));
    yield* kube.create(MultiNetworkPolicyResource, denyAll);
    const c = yield* start();
    yield* eventuallyHolds("the pass stuck on db-slow", Effect.sync(() => stuckRendering), 5_000);
    const newPod = pod("db-new", "node-a", { app: "db" });
    const attachments = [{ network: "DanmNet:ns1/net1", ifName: "net1", v4: ["10.0.0.9"], v6: [] }];
    // Before: the ADD took the controller's one lock and waited for the whole pass.
    yield* c.programPod({ pod: newPod, netns: "/run/netns/db-new", attachments }).pipe(
      Effect.timeoutOrElse({
        duration: "2 seconds",
        orElse: () => Effect.die(new Error("the ADD waited behind a pass over another pod")),
      }),
    );
    assertMatch(tables.tables.get("/run/netns/db-new") ?? "", /net1:ns1\/deny/);
    assertEquals(tables.tables.has("/run/netns/db-slow"), false, "the pass is still stuck");

    // The same pod: a re-ADD of db-slow waits until the pass is done with it (they never interleave on one table).
    const readd = yield* Effect.forkChild(
      c.programPod({ pod: pod("db-slow", "node-a", { app: "db" }), netns: "/run/netns/db-slow-2", attachments }),
    );
    yield* Effect.sleep("200 millis");
    assertEquals(tables.tables.has("/run/netns/db-slow-2"), false, "the re-ADD waits for db-slow's lock");
    yield* Deferred.succeed(stuck, undefined);
    yield* Fiber.join(readd);
    assertEquals(tables.ops.filter((o) => o.netns.startsWith("/run/netns/db-slow")).map((o) => o.netns), [
      "/run/netns/db-slow",
      "/run/netns/db-slow-2",
    ]);
  })));

Deno.test("netpol controller: pods known only from the CNI daemon's sandbox records (NAD-only) are followed", () =>
  run(Effect.gen(function* () {
    const tables = new MemoryPolicyTables();
    const nad = "NetworkAttachmentDefinition:ns1/net1";
    const sandbox = (name: string, ip: string): LocalSandbox => ({
      pod: { namespace: "ns1", name, uid: "" },
      netns: `/run/netns/${name}`,
      created: "2026-12-07T00:00:00Z",
      attachments: [{ network: nad, ifName: "net1", v4: [ip], v6: [] }],
    });
    // No DanmEp at all: NAD attachments get none.
    let sandboxes = [sandbox("nad-a", "10.1.0.1"), sandbox("nad-b", "10.1.0.2")];
    const { kube, start } = yield* setup(tables, { sandboxes: Effect.sync(() => sandboxes) });
    yield* kube.create(PodResource, pod("nad-a", "node-a", { app: "db" }));
    yield* kube.create(PodResource, pod("nad-b", "node-a", { app: "web" }));
    const c = yield* start();
    assertEquals((yield* c.syncNow).policed, 0);
    // A policy created after the ADDs: the controller finds the pod's netns in its record.
    yield* kube.create(MultiNetworkPolicyResource, denyAll);
    const table = (name: string) => Effect.sync(() => tables.tables.get(`/run/netns/${name}`));
    yield* eventuallyHolds("nad-a's table", Effect.map(table("nad-a"), (t) => /net1:ns1\/deny/.test(t ?? "")), 5_000);
    assertEquals(yield* table("nad-b"), undefined);
    // A label change.
    yield* kube.patch(PodResource, "nad-b", { type: "merge", patch: { metadata: { labels: { app: "db" } } } }, {
      namespace: "ns1",
    });
    yield* eventuallyHolds("nad-b's table", Effect.map(table("nad-b"), (t) => t !== undefined), 5_000);
    // A restart (a new controller): the tampered table of nad-a is reprogrammed from the records.
    const want = (yield* table("nad-a"))!;
    tables.tables.delete("/run/netns/nad-a");
    yield* start();
    yield* eventuallyHolds("nad-a reprogrammed", Effect.map(table("nad-a"), (t) => t === want), 5_000);
    // The policy gone: both tables go (the records say which pods are local, also without policies).
    yield* kube.delete(MultiNetworkPolicyResource, "deny", { namespace: "ns1" });
    yield* eventuallyHolds("no tables", Effect.sync(() => tables.tables.size === 0), 5_000);
    // A record of an earlier pod of the same name (another UID) is not the pod's sandbox.
    sandboxes = [{ ...sandbox("nad-a", "10.1.0.1"), pod: { namespace: "ns1", name: "nad-a", uid: "old-uid" } }];
    yield* kube.create(MultiNetworkPolicyResource, denyAll);
    assertEquals((yield* kube.get(PodResource, "nad-a", { namespace: "ns1" })).metadata.uid !== undefined, true);
    yield* eventuallyHolds("the policy seen", Effect.map(c.syncNow, (r) => r.policed === 0), 5_000);
    assertEquals(yield* table("nad-a"), undefined, "another UID's record: not this pod's netns");
  })));

Deno.test("netpol controller: without policies a netns is read once at most — none for a pod the ADD set up", () =>
  run(Effect.gen(function* () {
    const tables = new MemoryPolicyTables();
    const reads: string[] = [];
    const counting = {
      ...tables.service,
      read: (netns: string) => Effect.andThen(Effect.sync(() => reads.push(netns)), tables.service.read(netns)),
    };
    const kube = yield* makeMemoryKube(new MemoryApiServer());
    yield* kube.create(PodResource, pod("old-a", "node-a", { app: "db" }));
    yield* kube.create(DanmEpResource, ep("old-a", "node-a", "10.0.0.1"));
    const c = yield* Effect.provide(
      make({ nodeName: "node-a", render, resyncPeriod: "1 hour" }),
      Layer.merge(Layer.succeed(Kube, kube), Layer.succeed(PolicyTables, counting)),
    );
    // The first pass (a restart may have left a table behind) reads the pod the agent did not set up.
    yield* eventuallyHolds("the first pass", Effect.sync(() => reads.length === 1), 5_000);
    assertEquals(reads, ["/run/netns/old-a"]);
    // Pods the ADD sets up (fresh netns, no policy): no nft run at ADD, nor in the passes and resyncs after it —
    // whether the change pass sees their DanmEps before programPod (the ADD's order) or after.
    for (const [name, epFirst] of [["new-a", true], ["new-b", false]] as const) {
      const fresh = pod(name, "node-a", { app: "db" });
      const attachments = [{ network: "DanmNet:ns1/net1", ifName: "net1", v4: ["10.0.0.2"], v6: [] }];
      yield* kube.create(PodResource, fresh);
      if (epFirst) yield* kube.create(DanmEpResource, ep(name, "node-a", "10.0.0.2"));
      yield* Effect.sleep("100 millis");
      yield* c.programPod({ pod: fresh, netns: `/run/netns/${name}`, attachments });
      if (!epFirst) yield* kube.create(DanmEpResource, ep(name, "node-a", "10.0.0.3"));
      yield* Effect.sleep("100 millis");
    }
    yield* c.syncNow;
    yield* c.syncNow;
    assertEquals(reads, ["/run/netns/old-a"], "no read of new-a or new-b; old-a is known to hold no table");
    // Once a policy selects them, all get their table.
    yield* kube.create(MultiNetworkPolicyResource, denyAll);
    yield* eventuallyHolds("three tables", Effect.sync(() => tables.tables.size === 3), 5_000);
  })));
