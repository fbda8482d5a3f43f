// The upgrade a DANM user makes: Nokia's DANM v4.3.0 (its real `danm`, `fakeipam` and webhook, installed as its
// manifests install it) runs pods on a node; `danmctl migrate` moves its objects to danm.io and reserves the running
// pods' addresses in danm's IPAM; danm then takes the node over in place — its thin clients replace DANM's binaries
// in the same CNI bin directory, its node agent starts, the runtime keeps its sandboxes. Asserted: new pods never get
// an address a DANM pod still holds (a pool of six per network: the migrated reservations leave exactly the rest),
// the consistency checker finds every running interface reserved and nothing twice, a DEL of a DANM-made pod through
// danm tears it down and frees exactly its addresses, and after all pods are gone nothing is left.
import { Effect, Exit, Scope } from "effect";
import * as k8s from "@kubernetes/client-node";
import { makeLiveKube } from "../../adapters/kube/live.ts";
import { ClusterNetworkResource, DanmEpResource } from "../../core/api/danm.ts";
import { ipBlockResource, labels as ipamLabels } from "../../core/api/ipam.ts";
import { PodResource } from "../../core/api/k8s.ts";
import { checkClusterConsistency } from "../../core/ipam/consistency.ts";
import { Kube } from "../../core/ports/kube.ts";
import { startApiServer } from "../harness/apiserver.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { Fakelet } from "../harness/fakelet.ts";
import { netnsScope } from "../harness/netns.ts";
import { repoRoot } from "../harness/proc.ts";
import { danmGoGroup, danmGoInterfacesAnnotation, installDanmGo } from "../harness/peers/danm_go.ts";
import { adminRest } from "../harness/peers/install.ts";
import { installDanmCrds } from "../integration/api/danm_crds.ts";
import { startCniNode } from "../integration/cni/support.ts";

const nodeName = "upgrade-node";
const pool = (net: string) => ({ start: `${net}.1`, end: `${net}.6` });
const networks = [
  {
    name: "mv",
    spec: {
      NetworkID: "upmv",
      NetworkType: "macvlan",
      Options: { host_device: "upg0", cidr: "10.250.0.0/24", allocation_pool: pool("10.250.0") },
    },
  },
  {
    name: "dn",
    spec: {
      NetworkID: "upbr",
      NetworkType: "bridge",
      Options: { cidr: "10.251.0.0/24", allocation_pool: pool("10.251.0") },
    },
  },
];

Deno.test({
  name: "upgrade: DANM v4.3.0's pods keep their addresses through danmctl migrate; danm takes the node over in place",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const api = await startApiServer();
    const scope = Scope.makeUnsafe();
    const net = netnsScope();
    const rest = adminRest(api);
    const danmGo = await installDanmGo(api);
    let node: Awaited<ReturnType<typeof startCniNode>> | undefined;
    try {
      const kube = await Effect.runPromise(
        makeLiveKube({ config: { _tag: "Kubeconfig", path: api.kubeconfigPath } }).pipe(Scope.provide(scope)),
      );
      const kubeRun = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e);
      await net.veth({ name: "upg0" }, { name: "upg1" });
      await danmGo.writeStaticConf("upbr", { cniVersion: "0.3.1", name: "upbr", type: "bridge", bridge: "upbr0" });
      for (const n of networks) {
        const r = await rest.call("POST", `/apis/${danmGoGroup}/v1/clusternetworks`, {
          apiVersion: `${danmGoGroup}/v1`,
          kind: "ClusterNetwork",
          metadata: { name: n.name },
          spec: n.spec,
        });
        assertEquals(r.status, 201, JSON.stringify(r.body));
      }

      // ---- DANM runs three pods (one with a static address) on the node.
      // The runtime's configuration is a mutable object: the upgrade rewrites 00-danm.conf under it.
      const runtime = { nodeName, kube, binDir: danmGo.binDir, netconf: danmGo.netconf };
      const kubelet = new Fakelet(runtime);
      const podOf = async (name: string, annotations: Record<string, string>) =>
        await kubeRun(kube.create(PodResource, {
          metadata: { name, namespace: "default", annotations },
          spec: { nodeName, containers: [{ name: "c", image: "pause" }] },
        }));
      const danmPods = ["old-0", "old-1", "old-2"];
      const held = new Map<string, string[]>();
      for (const [i, name] of danmPods.entries()) {
        await podOf(name, {
          [danmGoInterfacesAnnotation]: JSON.stringify([
            { clusterNetwork: "mv", ip: i === 2 ? "10.250.0.5" : "dynamic" },
            { clusterNetwork: "dn", ip: "dynamic" },
          ]),
        });
        const sb = await kubelet.runPod("default", name).catch(async (e) => {
          throw new Error(`${e.message}\n${await danmGo.logs()}`);
        });
        const addrs = JSON.parse(await net.ip(undefined, "-n", sb.netnsName, "-json", "addr", "show")) as Array<
          { ifname: string; addr_info?: Array<{ local: string; family: string }> }
        >;
        held.set(
          name,
          addrs.flatMap((l) => (l.addr_info ?? []).filter((a) => a.family === "inet" && l.ifname !== "lo"))
            .map((a) => a.local).sort(),
        );
      }
      assertEquals(held.get("old-2")?.includes("10.250.0.5"), true, `static address: ${held.get("old-2")}`);
      const danmHeld = [...held.values()].flat();
      assertEquals(danmHeld.length, 6, `two addresses per DANM pod: ${danmHeld}`);

      // ---- The upgrade: danm's CRDs, `danmctl migrate`, then danm's plugins and node agent in place of DANM's.
      const kubeConfig = new k8s.KubeConfig();
      kubeConfig.loadFromFile(api.kubeconfigPath);
      await installDanmCrds(kubeConfig);
      const migrated = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${repoRoot}/cmd/danmctl.ts`, "migrate", "-o", "json", "--kubeconfig", api.kubeconfigPath],
        stdin: "null",
      }).output();
      const d = new TextDecoder();
      assertEquals(migrated.code, 0, `danmctl migrate: ${d.decode(migrated.stdout)} ${d.decode(migrated.stderr)}`);
      const rows = JSON.parse(d.decode(migrated.stdout)) as Array<{ kind: string; action: string; note?: string }>;
      const count = (kind: string, action: string) => rows.filter((r) => r.kind === kind && r.action === action).length;
      assertEquals(
        [count("ClusterNetwork", "created"), count("DanmEp", "created"), count("Reservation", "reserved")],
        [2, 6, 6],
        JSON.stringify(rows),
      );
      node = await startCniNode({
        cluster: {
          url: api.url,
          kubeconfigPath: api.kubeconfigPath,
          pki: api.pki,
          kubeConfig,
          release: async () => {},
        },
        nodeName,
        binDir: danmGo.binDir,
        cniDir: danmGo.cniDir,
      });
      const danm = node;
      // The runtime now finds danm's 00-danm.conf; its sandboxes are DANM's.
      runtime.netconf = { cniVersion: "1.1.0", name: "danm_meta_cni", type: "danm", cniDir: danmGo.cniDir };
      const networkUids = new Set<string>();
      for (const { name } of networks) {
        networkUids.add((await kubeRun(kube.get(ClusterNetworkResource, name))).metadata.uid ?? "");
      }
      const reservedTo = async () => {
        const blocks = (await kubeRun(kube.list(ipBlockResource))).items
          .filter((b) => networkUids.has(b.metadata.labels?.[ipamLabels.networkUid] ?? ""));
        const out = new Map<string, string>();
        for (const b of blocks) {
          const base = b.spec.cidr.split("/")[0].split(".").slice(0, 3).join(".");
          const first = Number(b.spec.cidr.split("/")[0].split(".")[3]);
          for (const [off, r] of Object.entries(b.spec.reservations)) {
            out.set(`${base}.${first + Number(off)}`, r.pod.split("/")[1]);
          }
        }
        return out;
      };
      const before = await reservedTo();
      assertEquals(
        [...before].sort().map(([ip, pod]) => `${ip} ${pod}`),
        [...held].flatMap(([pod, ips]) => ips.map((ip) => `${ip} ${pod}`)).sort(),
        "every DANM pod's address is reserved for it",
      );

      // ---- New pods through danm: they get exactly what DANM's pods left of the two pools of six.
      const newPods = ["new-0", "new-1", "new-2"];
      const annotation = {
        "danm.io/interfaces": JSON.stringify([
          { clusterNetwork: "mv", ip: "dynamic" },
          { clusterNetwork: "dn", ip: "dynamic" },
        ]),
      };
      for (const name of newPods) {
        await podOf(name, annotation);
        await danm.fakelet.runPod("default", name);
      }
      const after = await reservedTo();
      const newHeld = [...after].filter(([, pod]) => pod.startsWith("new-")).map(([ip]) => ip).sort();
      assertEquals(newHeld.length, 6);
      assertEquals(newHeld.filter((ip) => danmHeld.includes(ip)), [], "no new pod got an address a DANM pod holds");
      await podOf("new-3", annotation);
      const full = await danm.fakelet.runPod("default", "new-3").then(() => "started", (e: Error) => e.message);
      assertMatch(full, /ClusterNetwork mv: no free IPv4 address left in the allocation pool/);
      await kubeRun(kube.delete(PodResource, "new-3", { namespace: "default", gracePeriodSeconds: 0 }));

      const consistent = async (when: string) => {
        const r = await kubeRun(checkClusterConsistency({ graceSeconds: 0 }).pipe(Effect.provideService(Kube, kube)));
        assertEquals(
          {
            duplicates: r.duplicates,
            leakedReservations: r.leakedReservations,
            unreservedEndpoints: r.unreservedEndpoints,
            orphanEndpoints: r.orphanEndpoints,
          },
          { duplicates: [], leakedReservations: [], unreservedEndpoints: [], orphanEndpoints: [] },
          when,
        );
      };
      await consistent("DANM's pods and danm's running side by side");

      // ---- A DEL of a DANM-made pod, through danm, frees exactly its addresses.
      const sb = kubelet.sandboxes.get("default/old-0")!;
      const first = await kubelet.del(sb.pod, sb.containerId, sb.netns, sb.result);
      assert(first.every((o) => o.code === 0), JSON.stringify(first));
      const linksLeft = JSON.parse(await net.ip(undefined, "-n", sb.netnsName, "-json", "link", "show")) as Array<
        { ifname: string }
      >;
      assertEquals(linksLeft.map((l) => l.ifname), ["lo"], "DANM's macvlan and bridge interfaces are gone");
      // The runtime's own DEL when it removes the sandbox: a second DEL is a no-op.
      const outs = await kubelet.stopPod("default", "old-0");
      assert(outs.every((o) => o.code === 0), JSON.stringify(outs));
      await kubeRun(kube.delete(PodResource, "old-0", { namespace: "default", gracePeriodSeconds: 0 }));
      const now = await reservedTo();
      assertEquals(
        [...after].filter(([ip]) => !now.has(ip)).map(([ip, pod]) => `${ip} ${pod}`).sort(),
        held.get("old-0")!.map((ip) => `${ip} old-0`).sort(),
        "exactly old-0's addresses were freed",
      );
      const eps = (await kubeRun(kube.list(DanmEpResource, { namespace: "default" }))).items;
      assertEquals(eps.filter((e) => e.spec.Pod === "old-0"), [], "old-0's DanmEps are gone");
      await podOf("new-4", annotation);
      await danm.fakelet.runPod("default", "new-4");
      assertEquals(
        [...(await reservedTo())].filter(([, pod]) => pod === "new-4").map(([ip]) => ip).sort(),
        held.get("old-0"),
        "the next pod gets what old-0 freed",
      );
      await consistent("after the DEL of a DANM pod");

      // ---- Everything goes; nothing is left.
      for (const name of ["old-1", "old-2"]) {
        const o = await kubelet.stopPod("default", name);
        assert(o.every((x) => x.code === 0), JSON.stringify(o));
      }
      for (const name of [...newPods, "new-4"]) await danm.fakelet.stopPod("default", name);
      for (const name of [...danmPods, ...newPods, "new-4"]) {
        await kubeRun(Effect.ignore(kube.delete(PodResource, name, { namespace: "default", gracePeriodSeconds: 0 })));
      }
      assertEquals([...(await reservedTo())], [], "no reservation left");
      const left = (await kubeRun(kube.list(DanmEpResource, { namespace: "default" }))).items;
      assertEquals(left.map((e) => `${e.spec.Pod} ${e.spec.Interface.Name}`), [], "no danm.io DanmEp left");
      await consistent("after every pod is gone");
    } catch (e) {
      console.error(await danmGo.logs(40));
      throw e;
    } finally {
      await node?.dispose();
      await danmGo.stop();
      rest.close();
      await net.dispose();
      await Effect.runPromise(Scope.close(scope, Exit.void)).catch(() => {});
      await api.stop();
      await Deno.remove(api.dir, { recursive: true }).catch(() => {});
    }
  },
});
