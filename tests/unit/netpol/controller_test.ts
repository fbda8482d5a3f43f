// The node agent's policy controller on the in-memory apiserver and PolicyTables: which pods of the node get a
// table, changes reaching them, removal, tampering repaired on resync, a restart reprogramming everything, failures
// retried with backoff and reported as pod Events, and the CNI ADD's programPod (fail closed).
import { Effect, Layer } from "effect";
import { type DanmEp, DanmEpResource } from "../../../core/api/danm.ts";
import { EpLabels } from "../../../core/cni/endpoints.ts";
import { EventResource, type Pod, PodResource } from "../../../core/api/k8s.ts";
import { MultiNetworkPolicyResource } from "../../../core/api/netpol.ts";
import { make, type NetpolControllerConfig, type PolicyRenderer } from "../../../core/netpol/controller.ts";
import { applyingPolicies } from "../../../core/netpol/select.ts";
import { makeMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import { layerMemoryPolicyTables, MemoryPolicyTables } from "../../../adapters/nftables/memory.ts";
import { Kube } from "../../../core/ports/kube.ts";
import { assertEquals, assertMatch } from "../../harness/assert.ts";
import { eventuallyHolds } from "../../harness/eventually.ts";
import { policy } from "./fixtures.ts";

/** A stand-in for the engine's renderer: the policies applying to each interface (what compile+render build on). */
const render: PolicyRenderer = (world, pod) => {
  const applied = applyingPolicies(world, pod);
  return Effect.succeed(
    applied.length === 0
      ? undefined
      : `table inet danm_netpol { # ${applied.map((a) => `${a.attachment.ifName}:${a.policies.map(([k]) => k)}`)} }`,
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
