// Nokia's DANM v4.3.0, built from its source and installed as its manifests install it (tests/harness/peers), on a
// real apiserver: a few pods with the three attachments the CNI bench gives every system (a generated MACVLAN with
// DANM's IPAM, a static bridge .conf with host-local, a static bridge .conf whose addresses DANM's IPAM assigns)
// through DANM's real `danm` binary exec'd by the fake kubelet exactly as a runtime does, then DEL.
// Catches a broken peer build or install before a bench would.
import { Effect, Exit, Scope } from "effect";
import { makeLiveKube } from "../../adapters/kube/live.ts";
import { PodResource } from "../../core/api/k8s.ts";
import { startApiServer } from "../harness/apiserver.ts";
import { assert, assertEquals } from "../harness/assert.ts";
import { Fakelet } from "../harness/fakelet.ts";
import { linkAddresses, netnsScope } from "../harness/netns.ts";
import {
  createDanmGoClusterNetwork,
  danmGoGroup,
  danmGoInterfacesAnnotation,
  installDanmGo,
} from "../harness/peers/danm_go.ts";
import { adminRest } from "../harness/peers/install.ts";
import { pick } from "../integration/api/rest.ts";

Deno.test("DANM v4.3.0's real binaries attach three networks per pod and free them on DEL", async () => {
  const api = await startApiServer();
  const scope = Scope.makeUnsafe();
  const net = netnsScope();
  const rest = adminRest(api);
  const danm = await installDanmGo(api);
  try {
    const kube = await Effect.runPromise(
      makeLiveKube({ config: { _tag: "Kubeconfig", path: api.kubeconfigPath } }).pipe(Scope.provide(scope)),
    );
    await net.veth({ name: "pgo0" }, { name: "pgo1" });
    const hostLocal = `${danm.cniDir}/host-local`;
    await danm.writeStaticConf("peerbr", {
      cniVersion: "0.3.1",
      name: "peerbr",
      type: "bridge",
      bridge: "pgobr0",
      ipam: { type: "host-local", subnet: "10.252.0.0/24", dataDir: hostLocal },
    });
    await danm.writeStaticConf("peerdn", { cniVersion: "0.3.1", name: "peerdn", type: "bridge", bridge: "pgobr1" });
    const networks = [
      {
        name: "mv",
        spec: { NetworkID: "peermv", NetworkType: "macvlan", Options: { host_device: "pgo0", cidr: "10.250.0.0/24" } },
      },
      { name: "br", spec: { NetworkID: "peerbr", NetworkType: "bridge", Options: {} } },
      { name: "dn", spec: { NetworkID: "peerdn", NetworkType: "bridge", Options: { cidr: "10.251.0.0/24" } } },
    ];
    for (const n of networks) await createDanmGoClusterNetwork(rest, n.name, n.spec);
    const allocOf = async (name: string) =>
      pick(
        (await rest.call("GET", `/apis/${danmGoGroup}/v1/clusternetworks/${name}`)).body,
        "spec",
        "Options",
        "alloc",
      );
    const freshAlloc = await allocOf("mv"), freshBridgeAlloc = await allocOf("dn");
    assert(typeof freshAlloc === "string" && freshAlloc.length > 0, "DANM's webhook initialised the bitmask");

    const fakelet = new Fakelet({ nodeName: "peer-node", kube, binDir: danm.binDir, netconf: danm.netconf });
    const annotation = JSON.stringify([
      { clusterNetwork: "mv", ip: "dynamic" },
      { clusterNetwork: "br" },
      { clusterNetwork: "dn", ip: "dynamic" },
    ]);
    const pods = ["p0", "p1", "p2"];
    const seen: string[] = [];
    for (const name of pods) {
      await Effect.runPromise(kube.create(PodResource, {
        metadata: { name, namespace: "default", annotations: { [danmGoInterfacesAnnotation]: annotation } },
        spec: { nodeName: "peer-node", containers: [{ name: "c", image: "pause" }] },
      }));
      const sb = await fakelet.runPod("default", name).catch(async (e) => {
        throw new Error(`${e.message}\n${await danm.logs()}`);
      });
      const links = await linkAddresses(sb.netnsName);
      assertEquals(links.length, 3, JSON.stringify(links));
      const addresses = links.flatMap((l) => l.addresses);
      assert(addresses.some((a) => a.startsWith("10.250.0.")), `MACVLAN address from DANM's IPAM: ${addresses}`);
      assert(addresses.some((a) => a.startsWith("10.252.0.")), `host-local address: ${addresses}`);
      assert(addresses.some((a) => a.startsWith("10.251.0.")), `bridge address from DANM's IPAM: ${addresses}`);
      seen.push(...addresses);
    }
    assertEquals(new Set(seen).size, seen.length, `addresses unique: ${seen}`);
    const eps = async () => {
      const items = pick((await rest.call("GET", `/apis/${danmGoGroup}/v1/namespaces/default/danmeps`)).body, "items");
      return Array.isArray(items) ? items.length : -1;
    };
    assertEquals(await eps(), 9, "one DanmEp per interface");
    assert((await allocOf("mv")) !== freshAlloc, "the MACVLAN network's bitmask records the allocations");

    for (const name of pods) {
      const outs = await fakelet.stopPod("default", name);
      assert(outs.every((o) => o.code === 0), JSON.stringify(outs));
    }
    assertEquals(await eps(), 0, "DEL removed every DanmEp");
    assertEquals(await allocOf("mv"), freshAlloc, "DEL gave every MACVLAN address back");
    assertEquals(await allocOf("dn"), freshBridgeAlloc, "DEL gave every bridge address back");
  } finally {
    await danm.stop();
    rest.close();
    await net.dispose();
    await Effect.runPromise(Scope.close(scope, Exit.void)).catch(() => {});
    await api.stop();
    await Deno.remove(api.dir, { recursive: true }).catch(() => {});
  }
});
