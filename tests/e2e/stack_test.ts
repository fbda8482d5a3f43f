// The whole danm stack end to end on the real apiserver (test-environment.md §6): the webhook, svcwatcher, and per
// node (three network namespaces) the node agent and a fake kubelet, all real processes (tests/harness/stack.ts).
// The DANM-style manifests under manifests/ bring five networks — the ClusterNetwork `default` (bridge, static
// .conf), a generated MACVLAN on ens4, a bridge through a static .conflist, a unicast VXLAN DanmNet and a
// TenantNetwork the webhook completes from a TenantConfig (multicast VXLAN) — and 20 pods with static and dynamic
// addresses, plus a Service over the VXLAN network.
//
// Asserted: the webhook's assignment; netwatcher's host interfaces; every pod's interfaces as the kernel sees them
// and as the DanmEps record them; every pod pings every other pod on every network it shares with it (all node
// pairs); svcwatcher's Endpoints and EndpointSlices list exactly the selected pods' addresses; a network in use
// cannot be deleted; deleting everything leaves no DanmEp, no IPBlock, no pod namespace and no host interface, and
// the consistency checker finds nothing.
import { Schema } from "effect";
import { DanmEpResource, type TenantNetwork, TenantNetworkResource } from "../../core/api/danm.ts";
import { ipBlockResource, labels as ipamLabels } from "../../core/api/ipam.ts";
import { EndpointSliceResource, EndpointsResource } from "../../core/api/k8s.ts";
import { checkClusterConsistency, type ConsistencyReport } from "../../core/ipam/consistency.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { useCluster } from "../harness/cluster.ts";
import { CommandFailed, run } from "../harness/proc.ts";
import { eventually } from "../harness/eventually.ts";
import { type PodLink, type Stack, startStack } from "../harness/stack.ts";
import { bare, load, manifests, type Net, netOf, networks, NS, pool } from "./manifests/manifests.ts";

const VxlanLinks = Schema.Array(Schema.Struct({
  ifname: Schema.String,
  flags: Schema.Array(Schema.String),
  linkinfo: Schema.Struct({
    info_kind: Schema.String,
    info_data: Schema.Struct({
      id: Schema.Number,
      group: Schema.optionalKey(Schema.String),
      link: Schema.optionalKey(Schema.String),
    }),
  }),
}));
const FdbEntries = Schema.Array(Schema.Struct({ mac: Schema.String, dst: Schema.optionalKey(Schema.String) }));

async function vxlanOn(stack: Stack, node: string, ifname: string) {
  const ns = stack.nodes.find((n) => n.name === node)!.netns;
  const raw = await run(["ip", "-n", ns, "-d", "-json", "link", "show", "dev", ifname]).catch(() => "");
  const [link] = raw.trim() ? Schema.decodeUnknownSync(VxlanLinks)(JSON.parse(raw)) : [];
  if (!link || !link.flags.includes("UP")) return undefined;
  const fdb = Schema.decodeUnknownSync(FdbEntries)(
    JSON.parse(await run(["ip", "netns", "exec", ns, "bridge", "-json", "fdb", "show", "dev", ifname]) || "[]"),
  );
  const flood = fdb.filter((e) => e.mac === "00:00:00:00:00:00" && e.dst).map((e) => e.dst!).sort();
  return { ...link.linkinfo.info_data, flood };
}

/**
 * The static configurations with host-local's state in `dir`: danm replaces their IPAM with its own (fakeipam),
 * but should it not, host-local must not write to the machine's /var/lib/cni.
 */
function withDataDir(text: string, dir: string): string {
  const conf = JSON.parse(text) as {
    plugins?: Array<{ ipam?: Record<string, unknown> }>;
    ipam?: Record<string, unknown>;
  };
  for (const p of [conf, ...(conf.plugins ?? [])]) if (p.ipam) p.ipam = { ...p.ipam, dataDir: dir };
  return JSON.stringify(conf);
}

/** The consistency report, restricted to the given network labels and IPBlock names. */
function ours(r: ConsistencyReport, labels: ReadonlySet<string>, blocks: ReadonlySet<string>) {
  return {
    duplicates: r.duplicates.filter((x) => labels.has(x.network)),
    leakedReservations: r.leakedReservations.filter((x) => labels.has(x.network)),
    unrecordedReservations: r.unrecordedReservations.filter((x) => labels.has(x.network)),
    orphanEndpoints: r.orphanEndpoints.filter((x) => labels.has(x.network)),
    unreservedEndpoints: r.unreservedEndpoints.filter((x) => labels.has(x.network)),
    staleBlocks: r.staleBlocks.filter((b) => blocks.has(b)),
  };
}
const clean = {
  duplicates: [],
  leakedReservations: [],
  unrecordedReservations: [],
  orphanEndpoints: [],
  unreservedEndpoints: [],
  staleBlocks: [],
};

Deno.test({
  name: "e2e: 3 nodes, 5 networks, 20 pods — webhook, netwatcher, CNI, svcwatcher; full ping mesh; clean teardown",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const t0 = performance.now();
    const lap = (what: string) => console.log(`[e2e] ${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const cluster = await useCluster();
    const hostLocal = await Deno.makeTempDir({ prefix: "danm-e2e-host-local-" });
    let stack: Stack | undefined;
    try {
      stack = await startStack(cluster, {
        nodes: 3,
        nodeBridges: ["cbr-default", "cbr-e2e"],
        cniConfigs: Object.fromEntries(
          ["e2edef.conf", "e2ebr.conflist"].map((f) => {
            const text = Deno.readTextFileSync(`${manifests}/cni/${f}`);
            return [f, withDataDir(text, hostLocal)];
          }),
        ),
      });
      const s = stack;
      lap("stack up");
      const baseline = new Map(
        await Promise.all(s.nodes.map(async (n) => [n.name, await s.nodeLinks(n.name)] as const)),
      );

      // ---- Networks: the webhook completes the TenantNetwork, netwatcher builds the VXLANs on every node.
      const nets = await s.apply(load("networks.yaml"));
      assertEquals(nets.refused, [], "refused network manifests");
      const networkUids = new Set(
        nets.created.filter((r) => ["DanmNet", "TenantNetwork", "ClusterNetwork"].includes(r.kind)).map((r) => r.uid),
      );
      assertEquals(networkUids.size, 5);
      const tn: TenantNetwork = await s.kubeRun(s.kube.get(TenantNetworkResource, "tn", { namespace: NS }));
      assertEquals(
        [tn.spec.NetworkID, tn.spec.Options?.host_device],
        ["e2etn", "ens3"],
        "NetworkID and host device assigned by the webhook",
      );
      const vni = tn.spec.Options?.vxlan ?? 0;
      assert(vni >= 700 && vni <= 709, `VNI ${vni} from the TenantConfig's 700-709`);
      for (const n of s.nodes) {
        const others = s.nodes.filter((o) => o !== n).map((o) => o.underlayIp).sort();
        // A condition, not a time limit: on a loaded machine a node agent's passes can take long, so the bound only
        // stands for "never"; the last state seen (thrown, so the timeout reports it) says how far the node got.
        const vx = await eventually(`vx_e2evx on ${n.name} with its peers`, async () => {
          const l = await vxlanOn(s, n.name, "vx_e2evx");
          if (l && l.flood.length === others.length) return l;
          throw new Error(l ? `up, flood list ${JSON.stringify(l.flood)}` : "absent or down");
        }, 120_000);
        assertEquals([vx.id, vx.link, vx.group, vx.flood], [600, "ens3", undefined, others], "unicast VXLAN");
        const t = await eventually(`vx_e2etn on ${n.name}`, () => vxlanOn(s, n.name, "vx_e2etn"), 120_000);
        assertEquals([t.id, t.link], [vni, "ens3"]);
        assert(t.group !== undefined, `multicast VXLAN has a group: ${JSON.stringify(t)}`);
      }
      lap("networks and host interfaces");

      // ---- 20 pods.
      const work = await s.apply(load("workloads.yaml"));
      assertEquals(work.refused, [], "refused workload manifests");
      const pods = await s.waitForPods({ timeoutMs: 240_000 });
      assertEquals(pods.length, 20);
      lap("20 pods Running/Ready");

      // Interfaces and addresses as the kernel sees them.
      const view = new Map<string, { node: string; links: PodLink[] }>();
      await pool(pods, 6, async (p) => {
        const ns = p.metadata.namespace!, name = p.metadata.name!;
        view.set(name, { node: s.sandbox(ns, name)!.node, links: await s.podLinks(ns, name) });
      });
      const perNode = new Map<string, number>();
      for (const [name, { node, links }] of view) {
        perNode.set(node, (perNode.get(node) ?? 0) + 1);
        const expected = name.startsWith("plain-") ? ["eth0"] : ["eth0", "mv1", "br2", "vx3", "tn4"];
        assertEquals(links.map((l) => l.name).sort(), [...expected].sort(), `interfaces of ${name}`);
        for (const l of links) {
          const net = networks[netOf(l.name)];
          assertEquals(l.kind, net.kind, `${name} ${l.name} link kind`);
          assertEquals(l.addresses.length, 1, `${name} ${l.name}: ${l.addresses}`);
          assert(
            l.addresses[0].startsWith(net.subnet) && l.addresses[0].endsWith("/24"),
            `${name} ${l.name} ${l.addresses[0]} is from danm's pool of ${net.label}`,
          );
        }
        const addr = (ifname: string) => links.find((l) => l.name === ifname)?.addresses[0] ?? "";
        const m = /^static-(\d)$/.exec(name);
        if (m) {
          assertEquals([addr("mv1"), addr("vx3")], [`10.89.1.20${m[1]}/24`, `10.89.3.20${m[1]}/24`], `${name} static`);
        } else if (name.startsWith("web-")) {
          for (const ifname of ["mv1", "vx3"]) {
            const last = Number(bare(addr(ifname)).split(".")[3]);
            assert(last >= 10 && last <= 199, `${name} ${ifname} ${addr(ifname)} inside the allocation pool`);
          }
        }
        const pod = pods.find((p) => p.metadata.name === name)!;
        assertEquals(pod.status?.podIP, bare(addr("eth0")), `${name}: eth0's address is the pod IP`);
      }
      assertEquals([...perNode.values()].sort(), [6, 7, 7], "pods spread over the three nodes");

      // The DanmEps record exactly what the kernel has.
      const eps = (await s.kubeRun(s.kube.list(DanmEpResource, { namespace: NS }))).items;
      const recorded = eps.map((e) => `${e.spec.Pod} ${e.spec.Interface.Name} ${e.spec.Interface.Address}`).sort();
      const observed = [...view].flatMap(([name, { links }]) => links.map((l) => `${name} ${l.name} ${l.addresses[0]}`))
        .sort();
      assertEquals(recorded, observed, "DanmEps vs the pods' interfaces");
      assertEquals(observed.length, 18 * 5 + 2);
      for (const e of eps) assertEquals(e.spec.Host, view.get(e.spec.Pod)?.node, `Host of DanmEp ${e.metadata.name}`);
      const blocksInUse = new Set(
        (await s.kubeRun(s.kube.list(ipBlockResource))).items
          .filter((b) => networkUids.has(b.metadata.labels?.[ipamLabels.networkUid] ?? ""))
          .map((b) => b.metadata.name ?? ""),
      );
      assert(blocksInUse.size > 0, "the pods' reservations live in IPBlocks");
      const labels = new Set(Object.values(networks).map((n) => n.label));
      const running = await s.kubeRun(checkClusterConsistency({ graceSeconds: 0 }));
      assertEquals(ours(running, labels, blocksInUse), clean, "consistency while the pods run");

      // ---- Every pod pings every other pod on every network they share (all node pairs, both directions).
      const pairs: Array<{ from: string; to: string; net: Net; target: string; nodes: string }> = [];
      for (const [a, va] of view) {
        for (const [b, vb] of view) {
          if (a === b) continue;
          for (const la of va.links) {
            const lb = vb.links.find((l) => netOf(l.name) === netOf(la.name));
            if (lb) {
              pairs.push({
                from: a,
                to: b,
                net: netOf(la.name),
                target: bare(lb.addresses[0]),
                nodes: `${va.node}>${vb.node}`,
              });
            }
          }
        }
      }
      const coverage = new Set(pairs.map((p) => `${p.net} ${p.nodes}`));
      assertEquals(coverage.size, 5 * 9, "every network between every ordered node pair");
      const unreachable: string[] = [];
      // One source pod at a time, its neighbour caches (and its peers') flushed afterwards: the kernel's ARP table
      // is shared by all namespaces and full at gc_thresh3 (1024 by default, settable only in the initial
      // namespace); a mesh answered all at once holds ~1600 entries, and sends then fail with ENOBUFS.
      for (const from of view.keys()) {
        await pool(pairs.filter((p) => p.from === from), 8, async (p) => {
          // One echo normally suffices. A miss is retried by deadline, not by count (`-c 1 -w 10`: an echo a second
          // until the first reply), so a loaded machine's late answer still counts. A ping killed from outside (exit
          // 128 + signal: once at load ~80) proves nothing either way and is run again; no reply at all is the
          // finding. Retries stop once the mesh is clearly broken, so a broken network fails in minutes.
          if (await s.ping(NS, p.from, p.target, 1)) return;
          let reason = "no reply to one echo";
          for (let attempt = 0; attempt < 3 && unreachable.length < 10; attempt++) {
            const failed = await s.exec(NS, p.from, ["ping", "-4", "-c", "1", "-w", "10", p.target]).then(
              () => undefined,
              (e: Error) => e,
            );
            if (failed === undefined) return;
            reason = failed.message.split("\n").slice(-3).join(" ");
            if (!(failed instanceof CommandFailed && failed.code >= 128)) break;
          }
          unreachable.push(`${p.from} → ${p.to} over ${p.net} (${p.target}, ${p.nodes}): ${reason}`);
        });
        await pool([...view.keys()], 8, (name) => s.exec(NS, name, ["ip", "neigh", "flush", "all"]).then(() => {}));
      }
      assertEquals(unreachable, [], `${unreachable.length} of ${pairs.length} pairs cannot ping`);
      lap(`${pairs.length} pings`);

      // ---- svcwatcher: exactly the web pods' vx addresses, in Endpoints and in EndpointSlices.
      const expected = [...view].filter(([name]) => name.startsWith("web-"))
        .map(([name, { links }]) => `${bare(links.find((l) => l.name === "vx3")!.addresses[0])} ${name}`).sort();
      assertEquals(expected.length, 15);
      const endpoints = await eventually("Endpoints of web-vx", async () => {
        const e = await s.kubeRun(s.kube.get(EndpointsResource, "web-vx", { namespace: NS }));
        const got = (e.subsets ?? []).flatMap((x) => (x.addresses ?? []).map((a) => `${a.ip} ${a.targetRef?.name}`));
        return got.length === expected.length ? e : undefined;
      });
      const subsets = endpoints.subsets ?? [];
      assertEquals(
        subsets.flatMap((x) => (x.addresses ?? []).map((a) => `${a.ip} ${a.targetRef?.name}`)).sort(),
        expected,
        "Endpoints addresses",
      );
      assertEquals(subsets.flatMap((x) => x.notReadyAddresses ?? []), []);
      assertEquals(subsets.flatMap((x) => (x.ports ?? []).map((p) => `${p.name} ${p.port} ${p.protocol}`)), [
        "http 80 TCP",
      ]);
      const slices = await eventually("EndpointSlices of web-vx", async () => {
        const l = await s.kubeRun(
          s.kube.list(EndpointSliceResource, { namespace: NS, labelSelector: "kubernetes.io/service-name=web-vx" }),
        );
        return l.items.flatMap((x) => x.endpoints ?? []).length === expected.length ? l.items : undefined;
      });
      assertEquals(
        slices.flatMap((x) => (x.endpoints ?? []).map((e) => `${e.addresses.join(",")} ${e.targetRef?.name}`)).sort(),
        expected,
        "EndpointSlice endpoints",
      );
      assert(
        slices.every((x) => x.addressType === "IPv4" && (x.endpoints ?? []).every((e) => e.conditions?.ready === true)),
        "IPv4 slices, every endpoint ready",
      );
      lap("service endpoints");

      // The webhook protects networks in use (dry run: nothing is deleted either way).
      const inUse = await s.rest.call("DELETE", `/apis/danm.io/v1/namespaces/${NS}/danmnets/mv?dryRun=All`);
      assertEquals(inUse.status, 403, `deleting DanmNet mv while pods use it: ${JSON.stringify(inUse.body)}`);
      assertMatch(JSON.stringify(inUse.body), /static-0|web-\d+/, "the refusal names a pod");

      // ---- Delete everything: pods through the fake kubelets (CNI DEL), then the Service and the networks.
      const sandboxes = s.sandboxes().map((x) => x.netns);
      const report = await s.teardown({ timeoutMs: 120_000 });
      assertEquals(report, { delFailures: [], refused: [], remaining: [] }, "teardown");
      lap("teardown");
      await eventually("svcwatcher to remove web-vx's Endpoints and EndpointSlices", async () => {
        const e = await s.kubeRun(s.kube.list(EndpointsResource, { namespace: NS }));
        const l = await s.kubeRun(
          s.kube.list(EndpointSliceResource, { namespace: NS, labelSelector: "kubernetes.io/service-name=web-vx" }),
        );
        return e.items.some((x) => x.metadata.name === "web-vx") || l.items.length > 0 ? undefined : true;
      });
      const nodeNames = new Set(s.nodes.map((n) => n.name));
      const leftEps = (await s.kubeRun(s.kube.list(DanmEpResource))).items.filter((e) =>
        e.metadata.namespace === NS || nodeNames.has(e.spec.Host ?? "")
      );
      assertEquals(leftEps.map((e) => e.metadata.name), [], "DanmEps left");
      const leftBlocks = (await s.kubeRun(s.kube.list(ipBlockResource))).items.filter((b) =>
        networkUids.has(b.metadata.labels?.[ipamLabels.networkUid] ?? "") || blocksInUse.has(b.metadata.name ?? "")
      );
      assertEquals(
        leftBlocks.map((b) => `${b.metadata.name}: ${Object.keys(b.spec.reservations).length} reservation(s)`),
        [],
        "IPBlocks left",
      );
      const namespaces = (await run(["ip", "netns", "list"])).split("\n").map((l) => l.split(" ")[0]);
      assertEquals(sandboxes.filter((n) => namespaces.includes(n)), [], "pod namespaces left");
      for (const n of s.nodes) {
        // netwatcher removes the VXLANs after the networks' deletion; the bridge plugin's host veths went with DEL.
        await eventually(`${n.name}'s links back to the baseline`, async () => {
          const links = await s.nodeLinks(n.name);
          return JSON.stringify(links) === JSON.stringify(baseline.get(n.name)) ? true : undefined;
        }).catch(async (e) => {
          throw new Error(
            `${e.message}: ${JSON.stringify(await s.nodeLinks(n.name))} vs ${JSON.stringify(baseline.get(n.name))}`,
          );
        });
      }
      const after = await s.kubeRun(checkClusterConsistency({ graceSeconds: 0 }));
      assertEquals(ours(after, labels, blocksInUse), clean, "consistency after the teardown");
      lap("clean");
    } catch (e) {
      if (stack) console.error(await stack.logs(40));
      throw e;
    } finally {
      await stack?.stop();
      await cluster.release();
      await Deno.remove(hostLocal, { recursive: true });
      lap("stopped");
    }
  },
});
