// Three netwatcher agents on the in-memory apiserver and kernel: creation on every node, drift repair,
// reference counting, conflicts, NAD rewrite without a delete loop, unicast FDB under node churn, MTU refusal,
// API detection and metrics.
import { Effect } from "effect";
import { ClusterNetworkResource, type DanmNet, DanmNetResource, HostInterfacesReady } from "../../../core/api/danm.ts";
import { layerMemoryHttp, MemoryHttpNetwork } from "../../../adapters/http/memory.ts";
import { NetworkAttachmentDefinitionResource as NADs, NodeResource } from "../../../core/api/k8s.ts";
import { OwnerAlias } from "../../../core/netwatcher/host.ts";
import { OriginalMasterAnnotation } from "../../../core/netwatcher/nad.ts";
import { serveMetrics } from "../../../core/observability/metrics.ts";
import { VxlanModeAnnotation } from "../../../core/netwatcher/plan.ts";
import { KubeNotFound, type KubeService, KubeUnavailable } from "../../../core/ports/kube.ts";
import type { NetnsHandle } from "../../../core/ports/netlink.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { danmNet, eventsFor, linkNames, nodes, run, setupCluster, underlay } from "./fixture.ts";

const link = (h: NetnsHandle, name: string) => h.link(name);
const hasLink = (h: NetnsHandle, name: string) => Effect.map(linkNames(h), (ns) => ns.includes(name));
const getNet = (name: string) => (kube: KubeService) => kube.get(DanmNetResource, name, { namespace: "default" });
const condition = (n: DanmNet) => n.status?.conditions?.find((c) => c.type === HostInterfacesReady);
const zeroDsts = (h: NetnsHandle, name: string) =>
  Effect.map(
    h.neighbours({ family: "bridge", link: name }),
    (ns) => ns.filter((n) => n.lladdr === "00:00:00:00:00:00").map((n) => n.dst ?? "").sort(),
  );

Deno.test("agents: a VXLAN network gets vx_<NetworkID> on every node (DANM's group, source, port), status 3/3", () =>
  run(Effect.gen(function* () {
    const c = yield* setupCluster();
    yield* c.kube.create(DanmNetResource, danmNet("internal", { host_device: "eth1", vxlan: 600 }));
    yield* c.reconcileAll;
    for (const [i, h] of c.ns.entries()) {
      const vx = yield* link(h, "vx_internal");
      const eth1 = yield* link(h, "eth1");
      assertEquals(vx.kind, "vxlan");
      assertEquals(vx.alias, OwnerAlias);
      assert(vx.up, "vx_internal is up");
      assertEquals(vx.mtu, 1450, "MTU defaults to the host device's minus 50");
      assertEquals(vx.vxlan, {
        vni: 600,
        port: 4789,
        learning: true,
        // DANM's VXLAN: learning, l2miss and l3miss on.
        l2miss: true,
        l3miss: true,
        ttl: 0,
        group: "239.0.2.88",
        local: underlay(i),
        dev: eth1.index,
      });
    }
    // Each agent wrote its record; the last writer's condition covers all three.
    const net = yield* getNet("internal")(c.kube);
    assertEquals(net.status?.hostInterfaces?.map((r) => [r.node, r.ready, r.interfaces]), [
      ["node-a", true, ["vx_internal"]],
      ["node-b", true, ["vx_internal"]],
      ["node-c", true, ["vx_internal"]],
    ]);
    assertEquals([condition(net)?.status, condition(net)?.message], ["True", "3/3 nodes"]);
    // Deleting the network removes the interfaces.
    yield* c.kube.delete(DanmNetResource, "internal", { namespace: "default" });
    yield* c.reconcileAll;
    for (const h of c.ns) assert(!(yield* hasLink(h, "vx_internal")), "vx_internal removed");
  })));

Deno.test("agents: drift is repaired — deleted by hand, VNI changed, MTU changed, down, host device down", () =>
  run(Effect.gen(function* () {
    const c = yield* setupCluster();
    yield* c.kube.create(DanmNetResource, danmNet("ext", { host_device: "eth1", vlan: 500, mtu: 1400 }));
    yield* c.kube.create(DanmNetResource, danmNet("inner", { host_device: "eth1", vxlan: 700 }));
    yield* c.reconcileAll;
    const a = c.ns[0], agent = c.agents[0];
    assertEquals((yield* link(a, "ext.500")).mtu, 1400);

    yield* a.deleteLink("ext.500");
    let r = yield* agent.reconcileNow;
    assertEquals(r.host.actions.map((x) => `${x.action} ${x.iface}`), ["create ext.500"]);
    assertEquals((yield* link(a, "ext.500")).vlan, { id: 500 });

    // Somebody rebuilt vx_inner with another VNI (keeping the mark): re-created with the right one.
    yield* a.deleteLink("vx_inner");
    yield* a.createLink({ kind: "vxlan", name: "vx_inner", vni: 701, dev: "eth1", local: underlay(0) });
    yield* a.setLink("vx_inner", { alias: OwnerAlias });
    r = yield* agent.reconcileNow;
    assertEquals(r.host.actions.map((x) => `${x.action} ${x.iface}: ${x.detail}`), [
      "recreate vx_inner: VNI 701, wanted 700",
    ]);
    assertEquals((yield* link(a, "vx_inner")).vxlan?.vni, 700);

    yield* a.setLink("ext.500", { mtu: 1300, up: false });
    yield* a.setLink("eth1", { up: false });
    r = yield* agent.reconcileNow;
    assertEquals(r.host.actions.map((x) => x.action).sort(), ["host-device-up", "set-mtu", "set-up"]);
    const ext = yield* link(a, "ext.500");
    assert(ext.up && ext.mtu === 1400 && (yield* link(a, "eth1")).up, "MTU, admin state and host device fixed");
    // A converged node: the next pass changes nothing.
    assertEquals((yield* agent.reconcileNow).host.actions, []);
  })));

Deno.test("agents: shared interfaces are reference-counted; foreign links are never touched", () =>
  run(Effect.gen(function* () {
    const c = yield* setupCluster();
    const a = c.ns[0];
    yield* c.kube.create(DanmNetResource, danmNet("one", { host_device: "eth1", vlan: 300 }, { networkId: "shared" }));
    yield* c.kube.create(DanmNetResource, danmNet("two", { host_device: "eth1", vlan: 300 }, { networkId: "shared" }));
    // An administrator's own VLAN link, named like one a network will want later.
    yield* a.createLink({ kind: "vlan", name: "mine.301", parent: "eth1", id: 301 });
    yield* c.reconcileAll;
    const r = yield* c.agents[0].lastReport;
    assertEquals(r?.plan.interfaces.get("shared.300")?.users.map((u) => u.name), ["one", "two"]);

    yield* c.kube.delete(DanmNetResource, "one", { namespace: "default" });
    yield* c.reconcileAll;
    assert(yield* hasLink(a, "shared.300"), "still used by two");
    yield* c.kube.delete(DanmNetResource, "two", { namespace: "default" });
    yield* c.reconcileAll;
    assert(!(yield* hasLink(a, "shared.300")), "removed with its last user");

    // A network asking for the foreign link's exact shape uses it without owning it …
    yield* c.kube.create(DanmNetResource, danmNet("mine", { host_device: "eth1", vlan: 301 }));
    let out = (yield* c.reconcile(0)).networks.get("DanmNet/default/mine");
    assertEquals(out?.ready, true);
    assertMatch(out?.message ?? "", /not managed by danm/);
    // … and leaves it behind when it goes; a mismatching foreign link is refused, never replaced.
    yield* c.kube.delete(DanmNetResource, "mine", { namespace: "default" });
    yield* c.reconcile(0);
    assertEquals((yield* link(a, "mine.301")).alias, undefined);
    yield* a.createLink({ kind: "vxlan", name: "vx_taken", vni: 5, dev: "eth1", local: underlay(0) });
    yield* c.kube.create(DanmNetResource, danmNet("taken", { host_device: "eth1", vxlan: 6 }));
    out = (yield* c.reconcile(0)).networks.get("DanmNet/default/taken");
    assertEquals(out?.ready, false);
    assertMatch(out?.message ?? "", /vx_taken on node node-a: a link of that name exists, was not created by danm/);
    assertEquals((yield* link(a, "vx_taken")).vxlan?.vni, 5);
  })));

Deno.test("agents: conflicting networks — the oldest wins everywhere; the loser gets status and a Warning Event", () =>
  run(Effect.gen(function* () {
    const c = yield* setupCluster();
    yield* c.kube.create(DanmNetResource, danmNet("z-old", { host_device: "eth1", vxlan: 800 }, { networkId: "dup" }));
    // Creation timestamps have 1 s resolution; "a-new" would win a tie on its name, so this proves age decides.
    yield* Effect.sleep("1100 millis");
    yield* c.kube.create(DanmNetResource, danmNet("a-new", { host_device: "eth1", vxlan: 801 }, { networkId: "dup" }));
    yield* c.reconcileAll;
    for (const h of c.ns) assertEquals((yield* link(h, "vx_dup")).vxlan?.vni, 800);
    const loser = yield* getNet("a-new")(c.kube);
    assertEquals([condition(loser)?.status, condition(loser)?.message], ["False", "0/3 nodes"]);
    assertMatch(
      loser.status?.hostInterfaces?.[0]?.message ?? "",
      /already claimed by the older DanmNet default\/z-old/,
    );
    assertEquals(condition(yield* getNet("z-old")(c.kube))?.message, "3/3 nodes");
    const events = yield* eventsFor(c.kube, "a-new");
    assertEquals(events.map((e) => [e.reason, e.type, e.source?.host]).sort(), [
      ["Conflict", "Warning", "node-a"],
      ["Conflict", "Warning", "node-b"],
      ["Conflict", "Warning", "node-c"],
    ]);
    assertEquals(events[0].involvedObject.kind, "DanmNet");
    // Reported once, not on every pass.
    yield* c.reconcileAll;
    assertEquals((yield* eventsFor(c.kube, "a-new")).length, 3);
    assertEquals((yield* c.agents[0].metrics).includes('danm_netwatcher_conflicting_networks{node="node-a"} 1'), true);
    // The winner goes away: the other network takes over the name with its VNI.
    yield* c.kube.delete(DanmNetResource, "z-old", { namespace: "default" });
    yield* c.reconcileAll;
    for (const h of c.ns) assertEquals((yield* link(h, "vx_dup")).vxlan?.vni, 801);
    assertEquals(condition(yield* getNet("a-new")(c.kube))?.message, "3/3 nodes");
  })));

Deno.test("agents: a NAD gets its interface and master rewritten once — no delete/recreate loop", () =>
  run(Effect.gen(function* () {
    const c = yield* setupCluster();
    const config = { cniVersion: "0.3.1", name: "vlantest", type: "ipvlan", master: "eth1", vlan: 500 };
    yield* c.kube.create(NADs, {
      metadata: { name: "vlantest", namespace: "default" },
      spec: { config: JSON.stringify(config) },
    });
    yield* c.reconcileAll;
    // Several more passes on every agent, as the NAD update events would cause.
    for (let i = 0; i < 3; i++) yield* c.reconcileAll;
    const reports = yield* Effect.forEach(c.agents, (a) => a.lastReport);
    assertEquals(reports.map((r) => r?.host.actions.length), [0, 0, 0], "converged");
    // Over the whole history (background passes included) each node created the interface once, deleted nothing.
    for (const a of c.agents) {
      assertEquals((yield* a.metrics).match(/interface_changes_total\{action="[a-z-]+"/g), [
        'interface_changes_total{action="create"',
      ]);
    }
    const stored = yield* c.kube.get(NADs, "vlantest", { namespace: "default" });
    assertEquals(JSON.parse(stored.spec?.config ?? "{}"), { ...config, master: "vlantest.500" });
    assertEquals(stored.metadata.annotations?.[OriginalMasterAnnotation], "eth1");
    for (const h of c.ns) {
      const l = yield* link(h, "vlantest.500");
      assertEquals([l.vlan?.id, l.parent], [500, (yield* link(h, "eth1")).index]);
    }
    const events = yield* eventsFor(c.kube, "vlantest");
    assertEquals(events.map((e) => e.reason), ["MasterRewritten"], "one rewrite in the whole cluster");
    // 500 → 501: the old interface goes, the new one comes, the master follows.
    yield* c.kube.patch(NADs, "vlantest", {
      type: "merge",
      patch: { spec: { config: JSON.stringify({ ...config, master: "vlantest.500", vlan: 501 }) } },
    }, { namespace: "default" });
    yield* c.reconcileAll;
    for (const h of c.ns) assertEquals((yield* linkNames(h)).filter((n) => n.startsWith("vlantest")), ["vlantest.501"]);
    assertEquals(
      JSON.parse((yield* c.kube.get(NADs, "vlantest", { namespace: "default" })).spec?.config ?? "").master,
      "vlantest.501",
    );
    yield* c.kube.delete(NADs, "vlantest", { namespace: "default" });
    yield* c.reconcileAll;
    for (const h of c.ns) assert(!(yield* hasLink(h, "vlantest.501")), "deleted with the NAD");
  })));

Deno.test("agents: unicast VXLAN floods to the other nodes' underlay addresses and follows node churn", () =>
  run(Effect.gen(function* () {
    const c = yield* setupCluster();
    yield* c.kube.create(
      DanmNetResource,
      danmNet("uni", { host_device: "eth1", vxlan: 900 }, { annotations: { [VxlanModeAnnotation]: "unicast" } }),
    );
    yield* c.reconcileAll;
    const a = c.ns[0];
    const vx = yield* link(a, "vx_uni");
    assertEquals([vx.vxlan?.group, vx.vxlan?.remote, vx.vxlan?.local], [undefined, undefined, underlay(0)]);
    assertEquals(yield* zeroDsts(a, "vx_uni"), [underlay(1), underlay(2)]);
    assertEquals(yield* zeroDsts(c.ns[1], "vx_uni"), [underlay(0), underlay(2)]);
    // A fourth node joins (its VTEP announced by annotation, not InternalIP); node-c leaves.
    yield* c.kube.create(NodeResource, {
      metadata: { name: "node-d", annotations: { "danm.io/vxlan-underlay": "192.168.50.9" } },
      status: { addresses: [{ type: "InternalIP", address: "10.0.0.9" }] },
    });
    // node-c goes away with its agent.
    yield* c.stop(2);
    yield* c.kube.delete(NodeResource, "node-c");
    yield* c.reconcileAll;
    assertEquals(yield* zeroDsts(a, "vx_uni"), ["192.168.50.2", "192.168.50.9"]);
    assertEquals(yield* zeroDsts(c.ns[1], "vx_uni"), ["192.168.50.1", "192.168.50.9"]);
    assertEquals(
      (yield* c.agents[0].metrics).match(/interface_changes_total\{action="fdb-(add|delete)",node="node-a"\} \d+/g),
      [
        'interface_changes_total{action="fdb-add",node="node-a"} 3',
        'interface_changes_total{action="fdb-delete",node="node-a"} 1',
      ],
    );
    // node-c's record was dropped from the status by the next writer.
    const net = yield* getNet("uni")(c.kube);
    assertEquals(net.status?.hostInterfaces?.map((x) => x.node), ["node-a", "node-b"]);
    assertEquals(condition(net)?.message, "2/2 nodes");
  })));

Deno.test("agents: the agent default mode applies without annotation; an invalid annotation is refused", () =>
  run(Effect.gen(function* () {
    const c = yield* setupCluster({ config: { defaultVxlanMode: "unicast" } });
    yield* c.kube.create(DanmNetResource, danmNet("dflt", { host_device: "eth1", vxlan: 910 }));
    yield* c.kube.create(
      DanmNetResource,
      danmNet("weird", { host_device: "eth1", vxlan: 911 }, { annotations: { [VxlanModeAnnotation]: "anycast" } }),
    );
    yield* c.reconcileAll;
    assertEquals((yield* link(c.ns[0], "vx_dflt")).vxlan?.group, undefined);
    assert(!(yield* hasLink(c.ns[0], "vx_weird")));
    const weird = yield* getNet("weird")(c.kube);
    assertMatch(weird.status?.hostInterfaces?.[0]?.message ?? "", /"anycast" is neither/);
    assertEquals((yield* eventsFor(c.kube, "weird"))[0]?.reason, "InvalidNetwork");
  })));

Deno.test("agents: an MTU that cannot fit is refused loudly; a missing host device makes the node not ready", () =>
  run(Effect.gen(function* () {
    const c = yield* setupCluster();
    yield* c.kube.create(ClusterNetworkResource, {
      metadata: { name: "jumbo" },
      spec: { NetworkID: "jumbo", Options: { host_device: "eth1", vxlan: 920, mtu: 1500 } },
    });
    yield* c.kube.create(DanmNetResource, danmNet("fits", { host_device: "eth1", vxlan: 921, mtu: 1450 }));
    yield* c.reconcileAll;
    const jumbo = yield* c.kube.get(ClusterNetworkResource, "jumbo");
    assertMatch(
      jumbo.status?.hostInterfaces?.[0]?.message ?? "",
      /MTU 1500 does not fit host device eth1 \(MTU 1500\) minus the VXLAN overhead \(50 bytes over IPv4\): at most 1450/,
    );
    assert(!(yield* hasLink(c.ns[0], "vx_jumbo")));
    // Events of cluster-scoped networks land in "default".
    assertEquals((yield* eventsFor(c.kube, "jumbo", "default")).length, 3);
    assertEquals((yield* link(c.ns[0], "vx_fits")).mtu, 1450);

    // Node b loses its host device: its record turns not ready, the condition reads 2/3.
    // (A physical NIC cannot be deleted, in the twin as in the kernel: it is renamed away.)
    yield* c.ns[1].setLink("eth1", { up: false });
    yield* c.ns[1].setLink("eth1", { name: "eth9" });
    yield* c.reconcile(1);
    const fits = yield* getNet("fits")(c.kube);
    assertEquals([condition(fits)?.status, condition(fits)?.message], ["False", "2/3 nodes"]);
    assertMatch(
      fits.status?.hostInterfaces?.find((r) => r.node === "node-b")?.message ?? "",
      /host device eth1 not found/,
    );
  })));

Deno.test("agents: API detection watches what exists and refuses to start with none", () =>
  run(Effect.gen(function* () {
    const onlyNads = yield* setupCluster({
      agents: false,
      kube: (k) => ({
        ...k,
        list: (rt, o) =>
          rt.group === "danm.io"
            ? Effect.fail(new KubeNotFound({ verb: "list", kind: rt.kind, detail: "the server could not find it" }))
            : k.list(rt, o),
      }),
    });
    const agent = yield* onlyNads.start(0, { probeAttempts: 2 });
    assertEquals(agent.apis, ["NetworkAttachmentDefinition"]);

    const none = yield* setupCluster({
      agents: false,
      kube: (k) => ({
        ...k,
        list: (rt, o) =>
          rt.plural === "nodes"
            ? k.list(rt, o)
            : Effect.fail(new KubeNotFound({ verb: "list", kind: rt.kind, detail: "the server could not find it" })),
      }),
    });
    const failed = yield* Effect.flip(none.start(0, { probeAttempts: 2 }));
    assertMatch(String((failed as Error).message), /start netwatcher node node-a: no network API can be listed/);
  })));

// Found by the e2e stack once the agent started faster: its first lists ran before the node's path to the apiserver
// was up, and after five quick failures the agent stopped watching DanmNets for the rest of its life.
Deno.test("agents: an apiserver unreachable at start is waited for; only an API it does not serve is left out", () =>
  run(Effect.gen(function* () {
    let failures = 3;
    const late = yield* setupCluster({
      agents: false,
      kube: (k) => ({
        ...k,
        list: (rt, o) =>
          rt.kind === "DanmNet" && failures-- > 0
            ? Effect.fail(new KubeUnavailable({ verb: "list", kind: rt.kind, detail: "connection refused" }))
            : k.list(rt, o),
      }),
    });
    const agent = yield* late.start(0, { probeAttempts: 2 });
    assert(agent.apis.includes("DanmNet"), `DanmNet is watched after the outage: ${agent.apis}`);
    assertEquals(failures, -1, "every failed list was retried");

    const never = yield* setupCluster({
      agents: false,
      kube: (k) => ({
        ...k,
        list: (rt, o) =>
          rt.plural === "nodes"
            ? k.list(rt, o)
            : Effect.fail(new KubeUnavailable({ verb: "list", kind: rt.kind, detail: "connection refused" })),
      }),
    });
    const failed = yield* Effect.flip(never.start(0, { probeAttempts: 2, probeUnreachableMs: 300 }));
    assertMatch(String((failed as Error).message), /no network API can be listed \(DanmNet: .*connection refused/);
  })));

Deno.test("agents: metrics expose reconciles, durations, managed interfaces and changes", () =>
  run(Effect.gen(function* () {
    const c = yield* setupCluster();
    yield* c.kube.create(DanmNetResource, danmNet("m", { host_device: "eth1", vlan: 42 }));
    yield* c.reconcileAll;
    const text = yield* c.agents[0].metrics;
    assertMatch(text, /# TYPE danm_netwatcher_reconciles_total counter/);
    assertMatch(text, /danm_netwatcher_reconciles_total\{node="node-a",result="ok"\} [1-9]/);
    assertMatch(text, /danm_netwatcher_reconcile_duration_seconds_count\{node="node-a"\} [1-9]/);
    assertMatch(text, /danm_netwatcher_host_interfaces\{kind="vlan",node="node-a"\} 1/);
    assertMatch(text, /danm_netwatcher_interface_changes_total\{action="create",node="node-a"\} 1/);
    if (!/danm_netwatcher_status_writes_total\{node="node-a",result="written"\} 1/.test(text)) {
      fail(`no status write counted:\n${text}`);
    }
    assertEquals(nodes.length, 3);
  })));

Deno.test("agents: an IPv6-only underlay gets DANM's ff02:: group and the 70-byte overhead; no address is refused", () =>
  run(Effect.gen(function* () {
    const c = yield* setupCluster();
    yield* c.kube.create(DanmNetResource, danmNet("six", { host_device: "eth1", vxlan: 600 }));
    yield* c.reconcileAll;
    const a = c.ns[0];
    assertEquals((yield* link(a, "vx_six")).vxlan?.group, "239.0.2.88");
    // The IPv4 address goes, an IPv6 one comes: the source drifted, so the interface is rebuilt over IPv6.
    yield* a.deleteAddress("eth1", `${underlay(0)}/24`);
    yield* a.addAddress({ link: "eth1", cidr: "2001:db8::1/64" });
    const r = yield* c.agents[0].reconcileNow;
    assertEquals(r.host.actions.map((x) => x.action), ["recreate"]);
    const vx = yield* link(a, "vx_six");
    assertEquals([vx.vxlan?.group, vx.vxlan?.local, vx.mtu], ["ff02::258", "2001:db8::1", 1430]);
    // Without any address there is no VTEP source: refused, the existing interface left as it is.
    yield* a.deleteAddress("eth1", "2001:db8::1/64");
    const out = (yield* c.agents[0].reconcileNow).networks.get("DanmNet/default/six");
    assertEquals(out?.ready, false);
    assertMatch(out?.message ?? "", /host device eth1 has no IPv4 or IPv6 address to send VXLAN from/);
  })));

Deno.test("metrics endpoint: /metrics in the text exposition format, /healthz, 404 elsewhere", () =>
  run(Effect.gen(function* () {
    const c = yield* setupCluster({ agents: false });
    const agent = yield* c.start(0);
    const network = new MemoryHttpNetwork();
    const server = yield* serveMetrics({ port: 0, hostname: "127.0.0.1" }, agent.metrics).pipe(
      Effect.provide(layerMemoryHttp(network)),
    );
    const get = (path: string) =>
      Effect.promise(async () => {
        const res = await network.fetch(`http://127.0.0.1:${server.address.port}${path}`);
        return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
      });
    const m = yield* get("/metrics");
    assertEquals([m.status, m.type], [200, "text/plain; version=0.0.4; charset=utf-8"]);
    assertMatch(m.body, /^# HELP danm_netwatcher_reconciles_total /);
    assertEquals((yield* get("/healthz")).status, 200);
    assertEquals((yield* get("/nope")).status, 404);
  })));
