// Acceptance on the real apiserver and the host kernel: three node namespaces on one bridge, one netwatcher each.
// A VXLAN network appears as vx_<NetworkID> on every node and carries traffic between them, in multicast and in
// unicast mode; `ip link del` is repaired within the reconcile period; the status reads 3/3, then 2/3 when a node
// loses its host device; deleting the network removes the interfaces. A NAD is served and rewritten once.
import { Effect } from "effect";
import { type DanmNet, DanmNetResource, HostInterfacesReady } from "../../../core/api/danm.ts";
import { EventResource, NetworkAttachmentDefinitionResource as NADs, NodeResource } from "../../../core/api/k8s.ts";
import { OriginalMasterAnnotation } from "../../../core/netwatcher/nad.ts";
import { VxlanModeAnnotation } from "../../../core/netwatcher/plan.ts";
import { multicastGroupV4 } from "../../../core/netwatcher/vxlan.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { ping } from "../../harness/netns.ts";
import { ensureCrd, nadCrd } from "../kube/crds.ts";
import type { NetwatcherService } from "../../../core/netwatcher/agent.ts";
import { eventually } from "../../harness/eventually.ts";
import { floodList, type IpLink, ipLink, type Nodes, RunLabel, threeNodes } from "./cluster.ts";

const network = (n: Nodes, name: string, networkId: string, vxlan: number, annotations?: Record<string, string>) =>
  n.kubeRun(Effect.gen(function* () {
    const net: DanmNet = {
      metadata: {
        name,
        namespace: "default",
        labels: { [RunLabel]: n.run },
        ...(annotations ? { annotations } : {}),
      },
      spec: { NetworkID: networkId, NetworkType: "ipvlan", Options: { host_device: "eth1", vxlan } },
    };
    return yield* n.kube.create(DanmNetResource, net);
  }));

const getNet = (n: Nodes, name: string) => n.kubeRun(n.kube.get(DanmNetResource, name, { namespace: "default" }));
const conditionMessage = async (n: Nodes, name: string) =>
  (await getNet(n, name)).status?.conditions?.find((c) => c.type === HostInterfacesReady)?.message;

/** Waits for the interface on every node, checks the kernel's view of it, and returns them. */
async function onEveryNode(n: Nodes, ifname: string, vni: number) {
  return await Promise.all(n.ns.map((ns) =>
    eventually(`${ifname} in ${ns}`, async () => {
      const l = await ipLink(n.scope, ns, ifname);
      return l && l.flags.includes("UP") ? l : undefined;
    }).then((l) => {
      assertEquals(l.linkinfo?.info_kind, "vxlan");
      assertEquals(l.linkinfo?.info_data?.id, vni);
      assertEquals(l.linkinfo?.info_data?.port, 4789);
      assertEquals(l.linkinfo?.info_data?.link, "eth1");
      // DANM's VXLAN: learning, l2miss and l3miss on.
      const d = l.linkinfo?.info_data;
      assertEquals([d?.learning, d?.l2miss, d?.l3miss], [true, true, true]);
      assertEquals(l.ifalias, "danm:netwatcher");
      assertEquals(l.mtu, 1450);
      return l;
    })
  ));
}

/** Reconcile passes the agent has finished (its danm_netwatcher_reconciles_total, whatever the result). */
async function passes(agent: NetwatcherService): Promise<number> {
  const text = await Effect.runPromise(agent.metrics);
  return [...text.matchAll(/^danm_netwatcher_reconciles_total\{[^}]*\} (\d+)$/gm)].reduce(
    (a, m) => a + Number(m[1]),
    0,
  );
}

/** Waits until the agent has finished `count` more passes (bounded: the agents' period is 1 s). */
async function morePasses(agent: NetwatcherService, count: number) {
  const target = (await passes(agent)) + count;
  await eventually(`${count} more reconcile passes of ${agent.nodeName}`, async () => {
    return (await passes(agent)) >= target ? true : undefined;
  }, 60_000);
}

/**
 * Waits for `probe` to see the link up again after a change only a periodic pass can notice, and fails once a pass
 * that started after the change has finished without it. The pass running when this is called may have looked
 * before the change; the one after it may not. Load stretches passes, so time is no measure here: the bound of
 * 60 s only stands for "never" (the period is 1 s here).
 */
async function repairedByPass(agent: NetwatcherService, what: string, probe: () => Promise<IpLink | undefined>) {
  const first = await passes(agent);
  const deadline = Date.now() + 60_000;
  while (true) {
    const finished = await passes(agent);
    const l = await probe();
    if (l && l.flags.includes("UP")) return l;
    assert(finished < first + 2, `${what}: ${finished - first} reconcile passes finished since, and it is not back`);
    assert(Date.now() < deadline, `${what}: not repaired within 60 s; passes since: ${finished - first}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function addOverlayAddresses(n: Nodes, ifname: string, subnet: string) {
  for (const [i, ns] of n.ns.entries()) {
    await n.scope.ip(ns, "addr", "replace", `${subnet}.${i + 1}/24`, "dev", ifname);
  }
}

async function pingsAcross(n: Nodes, subnet: string, from = 0, to: number[] = [1, 2]) {
  for (const t of to) {
    assert(await ping(n.ns[from], `${subnet}.${t + 1}`, 3), `node ${from} cannot reach ${subnet}.${t + 1} over VXLAN`);
  }
}

Deno.test("netwatcher (multicast): vx_ on every node, traffic flows, repaired, 3/3 → 2/3, removed on delete", async () => {
  const n = await threeNodes();
  const name = `nw-mc-${n.run}`, nid = `mc${n.run}`, vni = 4242, ifname = `vx_${nid}`;
  try {
    await network(n, name, nid, vni);
    const links = await onEveryNode(n, ifname, vni);
    for (const [i, l] of links.entries()) {
      assertEquals(l.linkinfo?.info_data?.group, multicastGroupV4(vni));
      assertEquals(l.linkinfo?.info_data?.local, n.underlay[i]);
    }
    assertEquals(multicastGroupV4(vni), "239.0.16.146");
    await addOverlayAddresses(n, ifname, "172.31.1");
    await pingsAcross(n, "172.31.1");
    await eventually("status 3/3", async () => (await conditionMessage(n, name)) === "3/3 nodes" ? true : undefined);

    // Deleted by hand on node 1: nothing in the API changes, so only the periodic pass (1 s here) can notice, and the
    // first pass that starts after the deletion must repair it.
    const before = links[1].ifindex;
    await n.scope.ip(n.ns[1], "link", "del", ifname);
    const repaired = await repairedByPass(n.agents[1], "vx_ deleted by hand", () => ipLink(n.scope, n.ns[1], ifname));
    assert(repaired.ifindex !== before, "a new link, not the old one");
    await addOverlayAddresses(n, ifname, "172.31.1");
    await pingsAcross(n, "172.31.1", 1, [0, 2]);

    // Node 2 loses its host device (the kernel takes vx_ with it): 2/3.
    await n.scope.ip(n.ns[2], "link", "del", "eth1");
    await eventually("status 2/3", async () => (await conditionMessage(n, name)) === "2/3 nodes" ? true : undefined);
    const net = await getNet(n, name);
    const rec = net.status?.hostInterfaces?.find((r) => r.node === n.nodeNames[2]);
    assertEquals(rec?.ready, false);
    assertMatch(rec?.message ?? "", /host device eth1 not found/);
    assertEquals(net.status?.conditions?.find((c) => c.type === HostInterfacesReady)?.status, "False");

    await n.kubeRun(n.kube.delete(DanmNetResource, name, { namespace: "default" }));
    for (const ns of n.ns.slice(0, 2)) {
      await eventually(`${ifname} gone from ${ns}`, async () => (await ipLink(n.scope, ns, ifname)) ? undefined : true);
    }
    const metrics = await Effect.runPromise(n.agents[1].metrics);
    assertMatch(metrics, /danm_netwatcher_interface_changes_total\{action="create",node="[^"]+"\} 2/);
    assertMatch(metrics, /danm_netwatcher_interface_changes_total\{action="delete",node="[^"]+"\} 1/);
  } finally {
    await n.kubeRun(Effect.ignore(n.kube.delete(DanmNetResource, name, { namespace: "default" })));
    await n.dispose();
  }
});

Deno.test("netwatcher (unicast): no group, head-end replication to the other nodes, follows Node churn", async () => {
  const n = await threeNodes();
  const name = `nw-uc-${n.run}`, nid = `uc${n.run}`, vni = 4343, ifname = `vx_${nid}`;
  const extra = `nw-${n.run}-x`;
  try {
    await network(n, name, nid, vni, { [VxlanModeAnnotation]: "unicast" });
    const links = await onEveryNode(n, ifname, vni);
    for (const l of links) {
      assertEquals([l.linkinfo?.info_data?.group, l.linkinfo?.info_data?.remote], [undefined, undefined]);
    }
    for (const [i, ns] of n.ns.entries()) {
      const others = n.underlay.filter((_, j) => j !== i).sort();
      await eventually(`flood list of ${ns}`, async () => {
        const got = await floodList(ns, ifname);
        return JSON.stringify(got) === JSON.stringify(others) ? got : undefined;
      });
    }
    await addOverlayAddresses(n, ifname, "172.31.2");
    await pingsAcross(n, "172.31.2");
    await pingsAcross(n, "172.31.2", 2, [0, 1]);
    await eventually("status 3/3", async () => (await conditionMessage(n, name)) === "3/3 nodes" ? true : undefined);

    // A fourth node joins (announcing its VTEP by annotation) and leaves again.
    await n.kubeRun(n.kube.create(NodeResource, {
      metadata: { name: extra, labels: { [RunLabel]: n.run }, annotations: { "danm.io/vxlan-underlay": "10.77.0.44" } },
    }));
    await eventually("10.77.0.44 added everywhere", async () => {
      const lists = await Promise.all(n.ns.map((ns) => floodList(ns, ifname)));
      return lists.every((l) => l.includes("10.77.0.44") && l.length === 3) ? true : undefined;
    });
    await n.kubeRun(n.kube.delete(NodeResource, extra));
    await eventually("10.77.0.44 removed everywhere", async () => {
      const lists = await Promise.all(n.ns.map((ns) => floodList(ns, ifname)));
      return lists.every((l) => !l.includes("10.77.0.44") && l.length === 2) ? true : undefined;
    });
    await pingsAcross(n, "172.31.2");

    await n.kubeRun(n.kube.delete(DanmNetResource, name, { namespace: "default" }));
    for (const ns of n.ns) {
      await eventually(`${ifname} gone from ${ns}`, async () => (await ipLink(n.scope, ns, ifname)) ? undefined : true);
    }
  } finally {
    await n.kubeRun(Effect.ignore(n.kube.delete(NodeResource, extra)));
    await n.kubeRun(Effect.ignore(n.kube.delete(DanmNetResource, name, { namespace: "default" })));
    await n.dispose();
  }
});

Deno.test("netwatcher (NAD, shipped RBAC only): interface created once and kept, master rewritten once", async () => {
  const n = await threeNodes({
    before: ensureCrd(nadCrd),
    restricted: true,
  });
  const name = `nw-nad-${n.run}`, nid = `nd${n.run}`, vni = 4444, ifname = `vx_${nid}`;
  const config = { cniVersion: "0.3.1", name: nid, type: "macvlan", master: "eth1", vxlan: vni };
  try {
    assert(n.agents[0].apis.includes("NetworkAttachmentDefinition"), "the NAD API is watched");
    await n.kubeRun(n.kube.create(NADs, {
      metadata: { name, namespace: "default", labels: { [RunLabel]: n.run } },
      spec: { config: JSON.stringify(config) },
    }));
    const links = await onEveryNode(n, ifname, vni);
    const nad = await eventually("master rewritten", async () => {
      const got = await n.kubeRun(n.kube.get(NADs, name, { namespace: "default" }));
      return JSON.parse(got.spec?.config ?? "{}").master === ifname ? got : undefined;
    });
    assertEquals(JSON.parse(nad.spec?.config ?? "{}"), { ...config, master: ifname });
    assertEquals(nad.metadata.annotations?.[OriginalMasterAnnotation], "eth1");
    // Three more passes on every node: still the same links (DANM deleted its own interface here).
    await Promise.all(n.agents.map((a) => morePasses(a, 3)));
    for (const [i, ns] of n.ns.entries()) assertEquals((await ipLink(n.scope, ns, ifname))?.ifindex, links[i].ifindex);
    const after = await n.kubeRun(n.kube.get(NADs, name, { namespace: "default" }));
    assertEquals(after.metadata.resourceVersion, nad.metadata.resourceVersion, "no further rewrites");
    // With the shipped RBAC only: the rewrite happened (above), and a DanmNet's status and a failure Event can be
    // written too (no Forbidden anywhere).
    const net = `nw-rbac-${n.run}`;
    await network(n, net, `rb${n.run}`, 4445);
    await n.kubeRun(n.kube.create(DanmNetResource, {
      metadata: { name: `${net}-bad`, namespace: "default", labels: { [RunLabel]: n.run } },
      spec: { NetworkID: `rb${n.run}`, Options: { host_device: "eth1", vlan: 7, vxlan: 8 } },
    }));
    await eventually("status 3/3", async () => (await conditionMessage(n, net)) === "3/3 nodes" ? true : undefined);
    await eventually("an InvalidNetwork event", async () => {
      const evs = await n.kubeRun(n.kube.list(EventResource, { namespace: "default" }));
      return evs.items.some((e) => e.involvedObject.name === `${net}-bad` && e.reason === "InvalidNetwork")
        ? true
        : undefined;
    });
    for (const a of n.agents) assertEquals((await Effect.runPromise(a.lastReport))?.errors, []);
    for (const x of [net, `${net}-bad`]) {
      await n.kubeRun(n.kube.delete(DanmNetResource, x, { namespace: "default" }));
    }
    await n.kubeRun(n.kube.delete(NADs, name, { namespace: "default" }));
    for (const ns of n.ns) {
      await eventually(`${ifname} gone from ${ns}`, async () => (await ipLink(n.scope, ns, ifname)) ? undefined : true);
    }
  } finally {
    await n.kubeRun(Effect.ignore(n.kube.delete(NADs, name, { namespace: "default" })));
    await n.dispose();
  }
});
