// DANM's own good deployment (example/4_0_examples/10_good_deployment.yaml) on a real kernel with ipvlan and 802.1Q
// (the QEMU guest) and a real apiserver (the kernel tier's, reached through QEMU's user-mode network): netwatcher
// creates the VLAN host interfaces of ClusterNetwork `external` (8_external_cnet.yaml) and TenantNetwork `internal`
// (3_chosen_device.yaml, with the VLAN the webhook assigns from 1_good_tconf.yaml: 1000), the CNI attaches the
// pod exactly as DANM describes — eth0 on the flannel TenantNetwork `management` without a cidr (6_static_tnet.yaml,
// NetworkID `flannel` from the TenantConfig's networkIds; its own IPAM answers `"ip":"dynamic"`), ext1 and int2 as
// ipvlans over external.500 and internal.1000 with addresses from danm's pools. The admission of these objects is
// proven on the real apiserver with the webhook (integration tier, tests/integration/webhook/tenant_test.ts, and
// the e2e tier); the guest cannot be called back by the apiserver, so they are created as the webhook leaves them.
import { Effect, Exit, Layer, Scope } from "effect";
import { makeLiveKube } from "../../../adapters/kube/live.ts";
import * as LiveNetlink from "../../../adapters/netlink/live.ts";
import {
  ClusterNetworkResource,
  DanmEpResource,
  decodeDanmObject,
  TenantNetworkResource,
} from "../../../core/api/danm.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import { make as makeNetwatcher } from "../../../core/netwatcher/agent.ts";
import { Kube } from "../../../core/ports/kube.ts";
import { Netlink } from "../../../core/ports/netlink.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { useCluster } from "../../harness/cluster.ts";
import { ensureCniPlugins } from "../../harness/cniplugins.ts";
import { danmExample } from "../../harness/danm_examples.ts";
import { eventually } from "../../harness/eventually.ts";
import { run } from "../../harness/proc.ts";
import { installDanmCrds } from "../../integration/api/danm_crds.ts";
import { addrs, links, setup } from "./support.ts";

type Json = Record<string, unknown>;
const example = (file: string): Json => danmExample(`4_0_examples/${file}`)[0];
const withOptions = (doc: Json, extra: Json, networkId?: string): Json => {
  const spec = doc.spec as Json;
  return {
    ...doc,
    spec: {
      ...spec,
      ...(networkId ? { NetworkID: networkId } : {}),
      Options: { ...(spec.Options as Json | undefined), ...extra },
    },
  };
};
/** A QEMU guest answers slowly (one emulated CPU). */
const guestWaitMs = 60_000;

Deno.test("DANM's 10_good_deployment (guest, real apiserver): eth0 by flannel's IPAM, ext1 and int2 ipvlans over VLANs", async () => {
  const cluster = await useCluster();
  await installDanmCrds(cluster.kubeConfig);
  const scope = Scope.makeUnsafe();
  const runE = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e);
  const kube = await runE(
    makeLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }).pipe(Scope.provide(scope)),
  );
  const tmp = await Deno.makeTempDir({ prefix: "danm-kdemo-" });
  const e = await setup({ kube });
  try {
    // The node: ens4 (the examples' host_device), netwatcher on the guest's own namespace.
    await run(["ip", "link", "add", "ens4", "type", "dummy"]);
    const netlink = await runE(LiveNetlink.make().pipe(Scope.provide(scope)));
    await runE(
      makeNetwatcher({ nodeName: "guest", reconcilePeriod: "1 second" }).pipe(
        Effect.provide(Layer.mergeAll(Layer.succeed(Kube, kube), Layer.succeed(Netlink, netlink))),
        Scope.provide(scope),
      ),
    );
    // flannel's plugin hands on to bridge + host-local; that is the `flannel` configuration here.
    const cniDir = `${tmp}/net.d`;
    await Deno.mkdir(cniDir);
    await Deno.writeTextFile(
      `${cniDir}/flannel.conf`,
      JSON.stringify({
        cniVersion: "0.3.1",
        name: "flannel",
        type: "bridge",
        bridge: "cni0",
        isGateway: true,
        ipam: { type: "host-local", subnet: "10.244.0.0/24", dataDir: `${tmp}/host-local` },
      }),
    );
    const create = async (kind: "ClusterNetwork" | "TenantNetwork", doc: Json) => {
      const o = await runE(decodeDanmObject(kind, doc, "strict"));
      if (kind === "ClusterNetwork") await runE(kube.create(ClusterNetworkResource, o as never));
      else await runE(kube.create(TenantNetworkResource, o as never));
    };
    await create("ClusterNetwork", example("8_external_cnet.yaml"));
    await create("TenantNetwork", withOptions(example("6_static_tnet.yaml"), {}, "flannel"));
    await create("TenantNetwork", withOptions(example("3_chosen_device.yaml"), { vlan: 1000 }));
    for (const vlan of ["external.500", "internal.1000"]) {
      await eventually(vlan, async () => {
        const l = (await links(e.scope, "")).find((x) => x.ifname === vlan);
        return l && l.flags.includes("UP") ? l : undefined;
      }, guestWaitMs);
    }

    const deployment = example("10_good_deployment.yaml");
    const template = (deployment.spec as Json).template as { metadata: Json; spec: Json };
    const pod = await runE(kube.create(PodResource, {
      metadata: { ...template.metadata, name: "test-deployment-0", namespace: "default" },
      spec: { ...template.spec, nodeName: "guest" } as never,
    }));
    const ns = await e.scope.netns("kdemo");
    const env = {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: `kdemo${"0".repeat(59)}`,
      CNI_NETNS: e.scope.path(ns),
      CNI_IFNAME: "eth0",
      CNI_PATH: await ensureCniPlugins(),
      CNI_ARGS:
        `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=test-deployment-0;K8S_POD_UID=${pod.metadata.uid}`,
    };
    const conf = { cniVersion: "1.1.0", name: "danm_meta_cni", type: "danm", cniDir };
    const added = await e.call(env, conf);
    assertEquals(added.code, 0, added.stdout);
    const shown = await links(e.scope, ns);
    const byName = Object.fromEntries(shown.map((l) => [l.ifname, l]));
    assertEquals(Object.keys(byName).sort(), ["eth0", "ext1", "int2", "lo"]);
    assertEquals(byName.eth0.linkinfo?.info_kind, "veth", "eth0 from the bridge flannel hands on to");
    for (const [ifname, parent] of [["ext1", "external.500"], ["int2", "internal.1000"]]) {
      assertEquals(byName[ifname].linkinfo?.info_kind, "ipvlan");
      const host = JSON.parse(await run(["ip", "-j", "link", "show", parent]))[0] as { ifindex: number };
      assertEquals(byName[ifname].link_index, host.ifindex, `${ifname} sits on ${parent}`);
    }
    const v4 = Object.fromEntries(
      (await addrs(e.scope, ns)).map((
        a,
      ) => [a.ifname, a.addr_info.filter((x) => x.family === "inet").map((x) => `${x.local}/${x.prefixlen}`)]),
    );
    assert(/^10\.244\.0\.\d+\/24$/.test(v4.eth0?.[0] ?? ""), `eth0 by flannel's IPAM: ${v4.eth0}`);
    assertEquals([v4.ext1, v4.int2], [["10.100.1.100/24"], ["10.240.1.100/24"]], "the pools' first addresses");
    const eps = (await runE(kube.list(DanmEpResource, { namespace: "default" }))).items
      .filter((x) => x.spec.Pod === "test-deployment-0");
    assertEquals(
      eps.map((x) => `${x.spec.Interface.Name} ${x.spec.apiType} ${x.spec.NetworkName}`).sort(),
      ["eth0 TenantNetwork management", "ext1 ClusterNetwork external", "int2 TenantNetwork internal"],
    );
    const del = await e.call({ ...env, CNI_COMMAND: "DEL" }, conf);
    assertEquals(del.code, 0, del.stdout);
    assertEquals((await links(e.scope, ns)).map((l) => l.ifname), ["lo"]);
  } finally {
    await e.dispose();
    await Effect.runPromise(Scope.close(scope, Exit.void));
    await run(["ip", "link", "del", "ens4"]).catch(() => {});
    await run(["ip", "link", "del", "cni0"]).catch(() => {});
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
});
