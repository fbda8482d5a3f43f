// Multus v4.3.0 (thin) + Whereabouts v0.9.2, built from the Go module proxy and installed as their manifests install
// them (tests/harness/peers), on a real apiserver: a few pods with the CNI bench's three attachments — the cluster
// network (bridge + host-local) and two NADs (MACVLAN and bridge, both allocating from Whereabouts) — through the
// real `multus` exec'd by the fake kubelet exactly as a runtime does, then DEL. Catches a broken peer build or
// install before a bench would.
import { Effect, Exit, Scope } from "effect";
import { makeLiveKube } from "../../adapters/kube/live.ts";
import { PodResource } from "../../core/api/k8s.ts";
import { startApiServer } from "../harness/apiserver.ts";
import { assert, assertEquals } from "../harness/assert.ts";
import { Fakelet } from "../harness/fakelet.ts";
import { linkAddresses, netnsScope } from "../harness/netns.ts";
import { adminRest, peerBinDir } from "../harness/peers/install.ts";
import { installMultus, multusNetworksAnnotation, nadGroup } from "../harness/peers/multus.ts";
import { installWhereabouts, whereaboutsNamespace } from "../harness/peers/whereabouts.ts";
import { pick } from "../integration/api/rest.ts";

Deno.test("Multus + Whereabouts attach the cluster network and two NADs per pod and free them on DEL", async () => {
  const api = await startApiServer();
  const scope = Scope.makeUnsafe();
  const net = netnsScope();
  const rest = adminRest(api);
  const dir = await Deno.makeTempDir({ prefix: "peers-mw-" });
  const whereabouts = await installWhereabouts(api);
  const multus = await installMultus(api);
  try {
    const kube = await Effect.runPromise(
      makeLiveKube({ config: { _tag: "Kubeconfig", path: api.kubeconfigPath } }).pipe(Scope.provide(scope)),
    );
    await net.veth({ name: "pmw0" }, { name: "pmw1" });
    // Whereabouts' node controller, as its DaemonSet runs it on every node (it looks its Node up).
    const node = await rest.call("POST", "/api/v1/nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "peer-node" },
    });
    assertEquals(node.status, 201, JSON.stringify(node.body));
    const controlLoop = await whereabouts.startControlLoop("peer-node");
    const binDir = await peerBinDir(`${dir}/bin`, { multus: multus.plugin, whereabouts: whereabouts.plugin });
    const nads = [
      multus.nad("default", "mv", {
        cniVersion: "0.3.1",
        name: "mv",
        type: "macvlan",
        master: "pmw0",
        ipam: whereabouts.ipam("10.250.1.0/24"),
      }),
      multus.nad("default", "dn", {
        cniVersion: "0.3.1",
        name: "dn",
        type: "bridge",
        bridge: "pmwbr1",
        ipam: whereabouts.ipam("10.251.1.0/24"),
      }),
    ];
    for (const nad of nads) {
      const r = await rest.call("POST", `/apis/${nadGroup}/v1/namespaces/default/network-attachment-definitions`, nad);
      assertEquals(r.status, 201, JSON.stringify(r.body));
    }
    const fakelet = new Fakelet({
      nodeName: "peer-node",
      kube,
      binDir,
      netconf: multus.netconf({
        cniVersion: "0.3.1",
        name: "cluster",
        type: "bridge",
        bridge: "pmwbr0",
        ipam: { type: "host-local", subnet: "10.252.1.0/24", dataDir: `${dir}/host-local` },
      }, binDir),
    });
    const pools = async () => {
      const r = await rest.call(
        "GET",
        `/apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/${whereaboutsNamespace}/ippools`,
      );
      const items = pick(r.body, "items");
      return Object.fromEntries(
        (Array.isArray(items) ? items : []).map((p) => [
          String(pick(p, "spec", "range")),
          Object.keys((pick(p, "spec", "allocations") ?? {}) as Record<string, unknown>).length,
        ]),
      );
    };
    const pods = ["p0", "p1", "p2"];
    const seen: string[] = [];
    for (const name of pods) {
      await Effect.runPromise(kube.create(PodResource, {
        metadata: { name, namespace: "default", annotations: { [multusNetworksAnnotation]: "mv,dn" } },
        spec: { nodeName: "peer-node", containers: [{ name: "c", image: "pause" }] },
      }));
      const sb = await fakelet.runPod("default", name);
      const links = await linkAddresses(sb.netnsName);
      assertEquals(links.map((l) => l.name).sort(), ["eth0", "net1", "net2"], JSON.stringify(links));
      const addresses = links.flatMap((l) => l.addresses);
      assert(addresses.some((a) => a.startsWith("10.252.1.")), `cluster network address: ${addresses}`);
      assert(addresses.some((a) => a.startsWith("10.250.1.")), `MACVLAN address from Whereabouts: ${addresses}`);
      assert(addresses.some((a) => a.startsWith("10.251.1.")), `bridge address from Whereabouts: ${addresses}`);
      seen.push(...addresses);
      const status = pick(
        (await rest.call("GET", `/api/v1/namespaces/default/pods/${name}`)).body,
        "metadata",
        "annotations",
        "k8s.v1.cni.cncf.io/network-status",
      );
      assert(typeof status === "string" && JSON.parse(status).length === 3, `Multus wrote network-status: ${status}`);
    }
    assertEquals(new Set(seen).size, seen.length, `addresses unique: ${seen}`);
    assertEquals(await pools(), { "10.250.1.0/24": 3, "10.251.1.0/24": 3 }, "Whereabouts' pools hold the pods");
    for (const name of pods) {
      const outs = await fakelet.stopPod("default", name);
      assert(outs.every((o) => o.code === 0), JSON.stringify(outs));
    }
    assertEquals(await pools(), { "10.250.1.0/24": 0, "10.251.1.0/24": 0 }, "DEL gave every address back");
    assert(!controlLoop.exited(), `ip-control-loop runs:\n${await controlLoop.log()}`);
    assert(/[Ss]tarting|informer|controller/.test(await controlLoop.log()), await controlLoop.log());
  } finally {
    await multus.stop();
    await whereabouts.stop();
    rest.close();
    await net.dispose();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Effect.runPromise(Scope.close(scope, Exit.void)).catch(() => {});
    await api.stop();
    await Deno.remove(api.dir, { recursive: true }).catch(() => {});
  }
});
