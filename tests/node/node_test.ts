// danm on real nodes: kubelet v1.34 + containerd 1.6 per node, the real control plane (scheduler, controller-manager,
// Node authorization), kube-proxy, and danm installed by `kubectl apply -k` of the k8s/ base with the images
// `deno task images` builds (tests/harness/node/cluster.ts). Then the fake-kubelet e2e's own manifests
// (tests/e2e/manifests: five networks — a static bridge default network, generated MACVLAN, a static .conflist bridge,
// a unicast VXLAN and a webhook-completed TenantNetwork — and 20 pods) run through the real kubelet, and the pods'
// lifecycle through it: delete, kubelet restart, the node agent killed and restarted by its DaemonSet.
//
// The tests share one cluster, in order; the last one stops it.
import { Effect, References } from "effect";
import { runEmbedded } from "../../adapters/sim/embedded.ts";
import { parseScenarioText } from "../../core/sim/scenario.ts";
import { DanmEpResource, type TenantNetwork, TenantNetworkResource } from "../../core/api/danm.ts";
import { ipBlockResource, labels as ipamLabels } from "../../core/api/ipam.ts";
import { EndpointSliceResource, EndpointsResource, type Pod, PodResource } from "../../core/api/k8s.ts";
import { NetworkStatusAnnotation } from "../../core/api/annotations.ts";
import { checkClusterConsistency } from "../../core/ipam/consistency.ts";
import { assert, assertEquals, assertMatch, fail } from "../harness/assert.ts";
import { pauseImage } from "../harness/node/binaries.ts";
import { type ClusterNode, type NodeCluster, type PodLink, startNodeCluster } from "../harness/node/cluster.ts";
import { run, sleep } from "../harness/proc.ts";
import { eventually } from "../harness/eventually.ts";
import { type Json } from "../harness/stack.ts";
import { bare, load, manifests, type Net, netOf, networks, NS, pool } from "../e2e/manifests/manifests.ts";

const t0 = performance.now();
const lap = (what: string) => console.log(`[node] ${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);

/** The e2e's workloads with every container on the local pause image (nothing is pulled: there is no registry). */
function onPauseImage(obj: Json): Json {
  const withImage = (spec: Json): Json => ({
    ...spec,
    containers: (spec.containers as Json[]).map((c) => ({ ...c, image: pauseImage, imagePullPolicy: "Never" })),
  });
  if (obj.kind === "Pod") return { ...obj, spec: withImage(obj.spec as Json) };
  if (obj.kind === "Deployment") {
    const spec = obj.spec as Json, template = spec.template as Json;
    return { ...obj, spec: { ...spec, template: { ...template, spec: withImage(template.spec as Json) } } };
  }
  return obj;
}

const list = (items: ReadonlyArray<Json>) => JSON.stringify({ apiVersion: "v1", kind: "List", items });

let cluster: NodeCluster | undefined;
const c = () => cluster ?? fail("the cluster did not start");

const podsIn = async (namespace: string) =>
  (await c().kubeRun(c().kube.list(PodResource, { namespace }))).items as Pod[];
const isReady = (p: Pod) => p.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True") ?? false;
const nodeReady = async (name: string) => {
  const n = JSON.parse(await c().kubectl(["get", "node", name, "-o", "json"]));
  return (n.status.conditions as Array<{ type: string; status: string }>).find((x) => x.type === "Ready")?.status;
};

/** Pods of the e2e namespace with their interfaces as the kernel sees them. */
async function observe(pods: ReadonlyArray<Pod>) {
  const view = new Map<string, { node: string; links: PodLink[]; pod: Pod }>();
  await pool(pods, 4, async (p) => {
    const name = p.metadata.name!;
    view.set(name, { node: p.spec.nodeName!, links: await c().podLinks(NS, name), pod: p });
  });
  return view;
}

Deno.test({
  name: "node: real kubelets and containerd; `kubectl apply -k k8s/` brings every danm component up, Ready",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    cluster = await startNodeCluster({
      nodes: 2,
      nodeBridges: ["cbr-default", "cbr-e2e"],
      log: (l) => console.log(`[node] ${l}`),
    });
    lap("cluster up, danm deployed");

    // The nodes are real kubelets on containerd.
    const nodes = JSON.parse(await c().kubectl(["get", "nodes", "-o", "json"])).items as Array<
      { metadata: { name: string }; status: { nodeInfo: { kubeletVersion: string; containerRuntimeVersion: string } } }
    >;
    assertEquals(nodes.map((n) => n.metadata.name).sort(), ["node-1", "node-2"]);
    for (const n of nodes) {
      assertEquals(n.status.nodeInfo.kubeletVersion, "v1.34.4");
      assertMatch(n.status.nodeInfo.containerRuntimeVersion, /^containerd:\/\/1\.6\./);
    }
    // Node authorization: a kubelet may not touch another node.
    const denied = await run([
      `${c().binaries.dir}/kubectl`,
      `--kubeconfig=${c().dir}/kubelet-node-1.kubeconfig`,
      "label",
      "node",
      "node-2",
      "danm.test/by-node-1=yes",
    ]).then(() => "allowed", (e: Error) => e.message);
    assertMatch(denied, /forbidden/i, "node-1's kubelet identity may not label node-2");

    // Every component Ready: the DaemonSet on both nodes, two replicas each of the webhook and svcwatcher.
    const system = await podsIn("kube-system");
    const byApp = (app: string) => system.filter((p) => p.metadata.labels?.["app.kubernetes.io/name"] === app);
    assertEquals(byApp("danm-netwatcher").map((p) => p.spec.nodeName).sort(), ["node-1", "node-2"]);
    for (const app of ["danm-netwatcher", "danm-webhook", "danm-svcwatcher"]) {
      for (const p of byApp(app)) assert(isReady(p), `${app} ${p.metadata.name} Ready`);
    }
    assertEquals(byApp("danm-webhook").length, 2);
    assertEquals(byApp("danm-svcwatcher").length, 2);
    for (const p of system) {
      for (const ctr of [...(p.spec.containers ?? []), ...(p.spec.initContainers ?? [])]) {
        assertMatch(
          String(ctr.image),
          /^localhost\/danm-(node|webhook|svcwatcher):[0-9a-f]{12}$/,
          "the images built here",
        );
      }
    }

    // The install container put danm first in each node's CNI configuration directory, next to the primary CNI's.
    for (const n of c().nodes) {
      const confs = [...Deno.readDirSync(`${n.dir}/etc-cni-net.d`)].map((e) => e.name).sort();
      assertEquals(confs, ["00-danm.conflist", `${c().primaryNetwork}.conf`], `CNI configurations on ${n.name}`);
      const bins = [...Deno.readDirSync(`${n.dir}/opt-cni-bin`)].map((e) => e.name);
      assert(bins.includes("danm") && bins.includes("fakeipam"), `danm and fakeipam installed on ${n.name}`);
    }

    // The webhook's and svcwatcher's pods got their network through danm (kube-system's `default` network on the
    // primary CNI): a DanmEp each, with the pod's IP.
    const eps = (await c().kubeRun(c().kube.list(DanmEpResource, { namespace: "kube-system" }))).items;
    for (const p of [...byApp("danm-webhook"), ...byApp("danm-svcwatcher")]) {
      const ep = eps.find((e) => e.spec.Pod === p.metadata.name);
      assert(ep, `a DanmEp for ${p.metadata.name}`);
      assertEquals([ep.spec.NetworkName, ep.spec.Interface.Name], ["default", "eth0"]);
      assertEquals(
        bare(ep.spec.Interface.Address ?? ""),
        p.status?.podIP,
        `${p.metadata.name}: the DanmEp has the pod IP`,
      );
      const node = c().nodes.find((n) => n.name === p.spec.nodeName)!;
      assert(p.status!.podIP!.startsWith(node.podSubnet.replace(/0\/24$/, "")), `pod IP from ${node.podSubnet}`);
    }

    // The apiserver calls the webhook at its pods' addresses (aggregator routing): a bad network is refused by it.
    const refused = await c().kubectl(
      ["create", "--dry-run=server", "-f", "-"],
      JSON.stringify({
        apiVersion: "danm.io/v1",
        kind: "DanmNet",
        metadata: { name: "probe", namespace: "default" },
        spec: { NetworkID: "probe", Options: { host_device: "x", vlan: 1, vxlan: 2 } },
      }),
    ).then(() => "admitted", (e: Error) => e.message);
    assertMatch(refused, /mutually exclusive/, "the webhook's answer");
    lap("components checked");
  },
});

Deno.test({
  name: "node: the e2e's 5 networks and 20 pods through the real kubelet — interfaces, DanmEps, network-status, " +
    "pings across nodes, Service endpoints",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const k = c();
    // The static delegates' configurations, on every node, as an operator installs them.
    for (const f of ["e2edef.conf", "e2ebr.conflist"]) {
      await k.writeCniConfig(f, await Deno.readTextFile(`${manifests}/cni/${f}`));
    }
    await k.kubectl(["apply", "-f", "-"], list(load("networks.yaml")));
    const tn: TenantNetwork = await k.kubeRun(k.kube.get(TenantNetworkResource, "tn", { namespace: NS }));
    assertEquals([tn.spec.NetworkID, tn.spec.Options?.host_device], ["e2etn", "ens3"], "completed by the webhook");
    // Pods need their ServiceAccount (ServiceAccount admission), which the controller-manager creates.
    await eventually(
      "the default ServiceAccount of danm-e2e",
      async () => {
        await k.kubectl(["get", "serviceaccount", "default", "-n", NS]);
        return true;
      },
      60_000,
      500,
    );
    await k.kubectl(["apply", "-f", "-"], list(load("workloads.yaml").map(onPauseImage)));
    await eventually(
      "20 pods Running and Ready",
      async () => {
        k.assertAlive();
        const pods = await podsIn(NS);
        return pods.length === 20 && pods.every((p) => p.status?.phase === "Running" && isReady(p)) ? true : undefined;
      },
      300_000,
      1000,
    );
    lap("20 pods Running/Ready");

    const view = await observe(await podsIn(NS));
    const perNode = new Map<string, number>();
    for (const [name, { node, links, pod }] of view) {
      perNode.set(node, (perNode.get(node) ?? 0) + 1);
      const expected = name.startsWith("plain-") ? ["eth0"] : ["eth0", "mv1", "br2", "vx3", "tn4"];
      assertEquals(links.map((l) => l.name).sort(), [...expected].sort(), `interfaces of ${name}`);
      for (const l of links) {
        const net = networks[netOf(l.name)];
        assertEquals(l.kind, net.kind, `${name} ${l.name} link kind`);
        assertEquals(l.addresses.length, 1, `${name} ${l.name}: ${l.addresses}`);
        assert(l.addresses[0].startsWith(net.subnet), `${name} ${l.name} ${l.addresses[0]} from danm's pool`);
      }
      const addr = (ifname: string) => links.find((l) => l.name === ifname)?.addresses[0] ?? "";
      const m = /^static-(\d)$/.exec(name);
      if (m) assertEquals([addr("mv1"), addr("vx3")], [`10.89.1.20${m[1]}/24`, `10.89.3.20${m[1]}/24`], name);
      assertEquals(pod.status?.podIP, bare(addr("eth0")), `${name}: eth0's address is the pod IP the kubelet reports`);
      // network-status (NPWG) names every interface with its address, eth0 the default.
      const status = JSON.parse(pod.metadata.annotations?.[NetworkStatusAnnotation] ?? "[]") as Array<
        { interface: string; ips?: string[]; default?: boolean }
      >;
      assertEquals(
        status.map((s) => `${s.interface} ${(s.ips ?? []).join(",")}${s.default ? " default" : ""}`).sort(),
        links.map((l) => `${l.name} ${bare(l.addresses[0])}${l.name === "eth0" ? " default" : ""}`).sort(),
        `${name}: network-status`,
      );
    }
    assertEquals(perNode.size, 2, `pods on both nodes: ${JSON.stringify([...perNode])}`);

    // The DanmEps record exactly what the kernel has, on the node the scheduler chose.
    const eps = (await k.kubeRun(k.kube.list(DanmEpResource, { namespace: NS }))).items;
    assertEquals(
      eps.map((e) => `${e.spec.Pod} ${e.spec.Interface.Name} ${e.spec.Interface.Address} ${e.spec.Host}`).sort(),
      [...view].flatMap(([name, v]) => v.links.map((l) => `${name} ${l.name} ${l.addresses[0]} ${v.node}`)).sort(),
      "DanmEps vs the pods' interfaces",
    );

    // What the simulation says of the same manifests on two nodes with these NICs: the same interfaces on the same
    // networks for every pod, and the static pods' addresses.
    const scenario = [
      ...["node-1", "node-2"].map((n) =>
        `apiVersion: v1\nkind: Node\nmetadata:\n  name: ${n}\n  annotations:\n    sim.danm.io/host-interfaces: ens3,ens4\n`
      ),
      await Deno.readTextFile(`${manifests}/networks.yaml`),
      await Deno.readTextFile(`${manifests}/workloads.yaml`),
    ].map((text, i) => parseScenarioText(`doc-${i}`, text));
    const sim = await Effect.runPromise(
      Effect.scoped(runEmbedded({
        objects: scenario.flatMap((d) => d.objects),
        errors: scenario.flatMap((d) => d.errors),
      })).pipe(Effect.provideService(References.MinimumLogLevel, "Error")),
    );
    assertEquals([sim.errors, sim.rejected], [[], []], "the simulation of the same manifests");
    const signature = (interfaces: ReadonlyArray<{ name: string; kind: string; network: string; ips?: string }>) =>
      interfaces.map((i) => `${i.name} ${i.kind} ${i.network}${i.ips ? ` ${i.ips}` : ""}`).sort().join(", ");
    const staticIps = (pod: string, iface: string, ip: string) =>
      /^static-/.test(pod) && /^(mv|vx)/.test(iface) ? ip : undefined;
    const simulated = sim.pods.map((p) =>
      signature(p.interfaces.map((i) => ({ ...i, ips: staticIps(p.name, i.name, i.ips.join(",")) })))
    ).sort();
    const real = [...view].map(([name, v]) =>
      signature(v.links.map((l) => {
        const ep = eps.find((e) => e.spec.Pod === name && e.spec.Interface.Name === l.name)!;
        return {
          name: l.name,
          kind: ep.spec.apiType || "DanmNet",
          network: ep.spec.NetworkName,
          ips: staticIps(name, l.name, l.addresses.join(",")),
        };
      }))
    ).sort();
    assertEquals(real, simulated, "every pod's interfaces as the simulation has them");
    // Routes: none of these networks has routes or a gateway, and the simulation gives their pods none; the kernel
    // has exactly each interface's connected subnet.
    assert(sim.pods.every((p) => p.interfaces.every((i) => i.routes.length === 0)), "no routes in the simulation");
    await pool([...view], 4, async ([name, v]) => {
      const routes = JSON.parse(
        await k.podExec(NS, name, ["ip", "-4", "-json", "route", "show", "table", "all"]),
      ) as Array<
        { dst: string; dev: string; table?: string; type?: string }
      >;
      const main = routes.filter((r) => (r.table ?? "main") === "main" && (r.type ?? "unicast") === "unicast");
      assertEquals(
        main.map((r) => `${r.dst} ${r.dev}`).sort(),
        v.links.map((l) => `${l.addresses[0].replace(/\.\d+\/24$/, ".0/24")} ${l.name}`).sort(),
        `${name}: routes`,
      );
    });

    // Pings over every network: each pod to one pod on the other node and one on its own.
    const targets: Array<{ from: string; to: string; net: Net; address: string }> = [];
    for (const [a, va] of view) {
      for (const la of va.links) {
        const peers = [...view].filter(([b, vb]) => b !== a && vb.links.some((l) => netOf(l.name) === netOf(la.name)));
        for (const sameNode of [false, true]) {
          const peer = peers.find(([, vb]) => (vb.node === va.node) === sameNode);
          if (!peer) continue;
          const lb = peer[1].links.find((l) => netOf(l.name) === netOf(la.name))!;
          targets.push({ from: a, to: peer[0], net: netOf(la.name), address: bare(lb.addresses[0]) });
        }
      }
    }
    const unanswered: string[] = [];
    await pool(targets, 6, async (t) => {
      if (!(await k.podPing(NS, t.from, t.address, 2)) && !(await k.podPing(NS, t.from, t.address, 3))) {
        unanswered.push(`${t.from} → ${t.to} over ${t.net} (${t.address})`);
      }
    });
    assertEquals(unanswered, [], `${unanswered.length} of ${targets.length} pings unanswered`);
    lap(`${targets.length} pings`);

    // svcwatcher: the web pods' vx addresses in Endpoints and in EndpointSlices (the controller-manager runs too:
    // it must not mirror the Endpoints into slices of its own).
    const expected = [...view].filter(([name]) => name.startsWith("web-"))
      .map(([name, v]) => `${bare(v.links.find((l) => l.name === "vx3")!.addresses[0])} ${name}`).sort();
    assertEquals(expected.length, 15);
    const got = await eventually("Endpoints of web-vx", async () => {
      const e = await k.kubeRun(k.kube.get(EndpointsResource, "web-vx", { namespace: NS }));
      const ips = (e.subsets ?? []).flatMap((x) => (x.addresses ?? []).map((a) => `${a.ip} ${a.targetRef?.name}`));
      return ips.length === expected.length ? ips.sort() : undefined;
    }, 60_000);
    assertEquals(got, expected, "Endpoints addresses");
    const slices = await eventually("EndpointSlices of web-vx", async () => {
      const l = await k.kubeRun(
        k.kube.list(EndpointSliceResource, { namespace: NS, labelSelector: "kubernetes.io/service-name=web-vx" }),
      );
      return l.items.flatMap((x) => x.endpoints ?? []).length === expected.length ? l.items : undefined;
    }, 60_000);
    assertEquals(
      slices.flatMap((x) => (x.endpoints ?? []).map((e) => `${e.addresses.join(",")} ${e.targetRef?.name}`)).sort(),
      expected,
    );
    assertEquals(
      [...new Set(slices.map((s) => s.metadata.labels?.["endpointslice.kubernetes.io/managed-by"]))],
      ["svcwatcher.danm.io"],
      "slices only from svcwatcher",
    );
  },
});

Deno.test({
  name: "node: lifecycle through the real kubelet — pod delete frees everything, a kubelet restart keeps running " +
    "pods' networking, the node agent killed and restarted by its DaemonSet",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const k = c();
    const reservationsOf = async (uid: string) =>
      (await k.kubeRun(k.kube.list(ipBlockResource))).items.flatMap((b) =>
        Object.values(b.spec.reservations).filter((r) => r.podUid === uid)
      );

    // 1. Pod delete: CNI DEL through containerd frees every DanmEp and reservation; the ReplicaSet replaces it.
    const victim = (await podsIn(NS)).find((p) => p.metadata.name!.startsWith("web-"))!;
    const uid = victim.metadata.uid!;
    assert((await reservationsOf(uid)).length >= 4, "the pod holds reservations");
    await k.kubectl(["delete", "pod", "-n", NS, victim.metadata.name!, "--wait=true", "--timeout=120s"]);
    await eventually(`${victim.metadata.name}'s DanmEps and reservations gone`, async () => {
      const eps = (await k.kubeRun(k.kube.list(DanmEpResource, { namespace: NS }))).items;
      const left = eps.filter((e) => e.spec.Pod === victim.metadata.name).length + (await reservationsOf(uid)).length;
      return left === 0 ? true : undefined;
    }, 60_000);
    await eventually(
      "the ReplicaSet's replacement Running",
      async () => {
        const pods = await podsIn(NS);
        return pods.length === 20 && pods.every((p) => p.status?.phase === "Running" && isReady(p)) ? true : undefined;
      },
      180_000,
      1000,
    );
    lap("pod delete");

    // 2. Kubelet restart: the sandboxes stay (same IDs), no ADD runs again, pings still answered.
    const node1: ClusterNode = k.nodes[0];
    const sandboxes = async () =>
      (await k.crictl(node1.name, ["pods", "-q", "--state", "ready", "--namespace", NS])).trim().split("\n").sort();
    const before = await sandboxes();
    const epsBefore = (await k.kubeRun(k.kube.list(DanmEpResource, { namespace: NS }))).items
      .map((e) => `${e.metadata.uid}`).sort();
    await k.restartKubelet(node1.name);
    await eventually(
      "node-1 Ready after its kubelet restarted",
      async () => {
        return (await nodeReady(node1.name)) === "True" ? true : undefined;
      },
      120_000,
      1000,
    );
    await sleep(15_000); // a sync period of the restarted kubelet
    assertEquals(await sandboxes(), before, "the same sandboxes");
    assertEquals(
      (await k.kubeRun(k.kube.list(DanmEpResource, { namespace: NS }))).items.map((e) => `${e.metadata.uid}`).sort(),
      epsBefore,
      "the same DanmEps (no DEL/ADD)",
    );
    const onNode1 = (await podsIn(NS)).filter((p) =>
      p.spec.nodeName === node1.name && p.metadata.name!.startsWith("web-")
    );
    const peer = (await podsIn(NS)).find((p) => p.spec.nodeName !== node1.name && p.metadata.name!.startsWith("web-"))!;
    const peerVx = (await k.podLinks(NS, peer.metadata.name!)).find((l) => l.name === "vx3")!.addresses[0];
    for (const p of onNode1) {
      assert(
        await k.podPing(NS, p.metadata.name!, bare(peerVx)),
        `${p.metadata.name} still reaches ${peer.metadata.name}`,
      );
    }
    lap("kubelet restart");

    // 3. The node agent on node-2 killed; its DaemonSet restarts it. Meanwhile containerd 1.6 still reports the
    //    network ready (it never asks CNI STATUS), so the kubelet keeps node-2 Ready and starts pods there, whose
    //    ADD fails until the agent is back; then they run. Running pods keep their networking throughout.
    const node2 = k.nodes[1];
    const agent = (await podsIn("kube-system")).find((p) =>
      p.metadata.labels?.["app.kubernetes.io/name"] === "danm-netwatcher" && p.spec.nodeName === node2.name
    )!;
    const resident = (await podsIn(NS)).find((p) =>
      p.spec.nodeName === node2.name && p.metadata.name!.startsWith("web-")
    )!;
    const residentVx = (await k.podLinks(NS, resident.metadata.name!)).find((l) => l.name === "vx3")!;
    await k.kubectl(["delete", "pod", "-n", "kube-system", agent.metadata.name!, "--wait=false"]);
    await eventually(
      "the agent's socket gone on node-2",
      async () => {
        const sock = await Deno.stat(`${node2.dir}/run-danm/danm.sock`).then(() => true, () => false);
        return sock ? undefined : true;
      },
      60_000,
      200,
    );
    const networkReady = JSON.parse(await k.crictl(node2.name, ["info", "-o", "json"])).status.conditions.find((
      x: { type: string },
    ) => x.type === "NetworkReady");
    console.log(
      `[node] node agent down on ${node2.name}: containerd NetworkReady=${networkReady.status} ` +
        `(${networkReady.reason || "no reason"}), Node Ready=${await nodeReady(node2.name)}`,
    );
    assertEquals(networkReady.status, true, "containerd 1.6 does not ask CNI STATUS: the network stays ready");
    const late = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: "late",
        namespace: NS,
        annotations: {
          "danm.io/interfaces": JSON.stringify([{ clusterNetwork: "default", ip: "dynamic" }, {
            network: "vx",
            ip: "dynamic",
          }]),
        },
      },
      spec: {
        nodeName: node2.name,
        containers: [{ name: "app", image: pauseImage, imagePullPolicy: "Never" }],
      },
    };
    await k.kubectl(["apply", "-f", "-"], JSON.stringify(late));
    assert(
      await k.podPing(NS, resident.metadata.name!, bare(peerVx)),
      "a running pod keeps its network while the agent is down",
    );
    const lateRunning = await eventually(
      "the late pod Running once the agent is back",
      async () => {
        const p = (await podsIn(NS)).find((x) => x.metadata.name === "late");
        return p?.status?.phase === "Running" && isReady(p) ? p : undefined;
      },
      240_000,
      1000,
    );
    const events = await k.kubectl([
      "get",
      "events",
      "-n",
      NS,
      "--field-selector",
      "involvedObject.name=late",
      "-o",
      "json",
    ]);
    const failures = (JSON.parse(events).items as Array<{ reason: string; message: string }>)
      .filter((e) => e.reason === "FailedCreatePodSandBox").map((e) => e.message);
    console.log(
      `[node] while the agent was down: ${failures.length} failed sandbox creation(s)${
        failures.length ? `, e.g. ${failures[0]}` : ""
      }`,
    );
    const lateVx = (await k.podLinks(NS, "late")).find((l) => l.name === "vx1" || l.name === "vx3");
    assert(lateVx, `the late pod has its vx interface: ${JSON.stringify(await k.podLinks(NS, "late"))}`);
    assert(await k.podPing(NS, "late", bare(residentVx.addresses[0])), "the late pod reaches a pod that ran all along");
    assert(await k.podPing(NS, resident.metadata.name!, bare(peerVx)), "the resident pod still reaches node-1");
    assertEquals(lateRunning.spec.nodeName, node2.name);
    lap("node agent restart");
  },
});

Deno.test({
  name: "node: deleting the workloads and networks leaves no DanmEp, reservation or sandbox",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const k = c();
    const networkUids = new Set(
      (JSON.parse(await k.kubectl(["get", "danmnets,tenantnetworks,clusternetworks", "-A", "-o", "json"]))
        .items as Array<
          { metadata: { uid: string; namespace?: string } }
        >).filter((n) => n.metadata.namespace !== "kube-system").map((n) => n.metadata.uid),
    );
    await k.kubectl(["delete", "namespace", NS, "--wait=true", "--timeout=180s"]);
    await k.kubectl(["delete", "clusternetwork", "default", "--wait=true", "--timeout=60s"]);
    for (const n of k.nodes) {
      // Stopped sandboxes (their network already torn down) stay until the kubelet's garbage collection.
      const left = (await k.crictl(n.name, ["pods", "-q", "--state", "ready", "--namespace", NS])).trim();
      assertEquals(left, "", `no running sandbox of ${NS} on ${n.name}`);
      // The runtime's pod namespaces: one per running sandbox but the node agent's (host network).
      const netns = (await k.nodeExec(n.name, ["ip", "netns", "list"])).trim().split("\n").filter(Boolean);
      const running = (await k.crictl(n.name, ["pods", "-q", "--state", "ready"])).trim().split("\n").filter(Boolean);
      assertEquals(netns.length, running.length - 1, `${n.name}: pod namespaces ${netns}`);
    }
    assertEquals((await k.kubeRun(k.kube.list(DanmEpResource, { namespace: NS }))).items.length, 0, "DanmEps");
    const blocks = (await k.kubeRun(k.kube.list(ipBlockResource))).items
      .filter((b) => networkUids.has(b.metadata.labels?.[ipamLabels.networkUid] ?? ""));
    assertEquals(blocks.map((b) => b.metadata.name), [], "IPBlocks of the deleted networks");
    const report = await k.kubeRun(checkClusterConsistency({ graceSeconds: 0 }));
    assertEquals([report.duplicates, report.leakedReservations, report.orphanEndpoints], [[], [], []], "consistency");
  },
});

Deno.test({
  name: "node: the cluster stops and leaves nothing behind",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const k = cluster;
    cluster = undefined;
    await k?.stop();
    if (k) assert(!(await Deno.stat(k.dir).then(() => true, () => false)), "its directory is gone");
  },
});
