// DANM v4.3.0's own examples (tests/fixtures/danm-compat/v4.3.0/example) on the real stack — apiserver, webhook,
// svcwatcher, two nodes with the node agent and a fake kubelet calling the danm CNI — applied in the order of DANM's
// walkthrough, with DANM's verdicts. The host kernel has neither ipvlan nor 802.1Q, so the ipvlan networks are
// created and admitted here but not attached (the kernel tier attaches ipvlan); what runs is everything on the
// flannel networks: the `management` TenantNetwork (no cidr: `"ip":"dynamic"` is flannel's IPAM's to answer) and the
// default ClusterNetwork.
//
// flannel's CNI plugin is not served by the Go module proxy; `flannel.conf` is what it hands on to, the reference
// bridge plugin with host-local (one store for both nodes, so addresses are unique cluster-wide), on a bridge the
// stack joins across the nodes.
import { DanmEpResource } from "../../core/api/danm.ts";
import { EndpointsResource } from "../../core/api/k8s.ts";
import { checkClusterConsistency } from "../../core/ipam/consistency.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { useCluster } from "../harness/cluster.ts";
import { danmExample } from "../harness/danm_examples.ts";
import { eventually } from "../harness/eventually.ts";
import { type Json, type Stack, startStack } from "../harness/stack.ts";

const load = danmExample;

const flannelConf = (dataDir: string) =>
  JSON.stringify({
    cniVersion: "0.3.1",
    name: "flannel",
    type: "bridge",
    bridge: "cni0",
    isGateway: true,
    ipam: { type: "host-local", subnet: "10.244.0.0/16", dataDir },
  });

/** A Deployment of `replicas` pods on the management network, and a selectorless Service over it (svcwatcher_demo's
 * pattern, on the network DANM's walkthrough gives every VNF). */
const managementWorkload: Json[] = [
  {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "lb", namespace: "default" },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: "lb" } },
      template: {
        metadata: {
          labels: { app: "lb" },
          annotations: { "danm.k8s.io/interfaces": '[{"tenantNetwork":"management", "ip":"dynamic"}]' },
        },
        spec: { containers: [{ name: "c", image: "busybox" }] },
      },
    },
  },
  {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: "bystander",
      namespace: "default",
      labels: { app: "other" },
      annotations: { "danm.io/interfaces": '[{"tenantNetwork":"management", "ip":"dynamic"}]' },
    },
    spec: { containers: [{ name: "c", image: "busybox" }] },
  },
  {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: "lb-management",
      namespace: "default",
      annotations: { "danm.k8s.io/selector": '{"app":"lb"}', "danm.k8s.io/tenantNetwork": "management" },
    },
    spec: { clusterIP: "None", ports: [{ name: "http", port: 80, protocol: "TCP" }] },
  },
];

const bare = (cidr: string) => cidr.split("/")[0];

Deno.test({
  name: "e2e: DANM v4.3.0's examples — its verdicts; flannel-type networks without a cidr run pods with ip: dynamic, " +
    "a selectorless Service over one lists every matching pod",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await useCluster();
    const hostLocal = await Deno.makeTempDir({ prefix: "danm-e2e-flannel-" });
    let stack: Stack | undefined;
    try {
      stack = await startStack(cluster, {
        nodes: 2,
        nodeBridges: ["cni0"],
        cniConfigs: { "flannel.conf": flannelConf(hostLocal) },
      });
      const s = stack;

      // ---- The 4_0 walkthrough, in its order.
      const apply = async (file: string) => ({ file, ...(await s.apply(load(`4_0_examples/${file}`))) });
      const steps = [];
      for (
        const f of [
          "0_wrong_tconf.yaml",
          "1_good_tconf.yaml",
          "2_tnet_with_vlan.yaml",
          "3_chosen_device.yaml",
          "4_random_device.yaml",
          "5_wrong_device.yaml",
          "6_static_tnet.yaml",
          "7_default_cnet.yaml",
          "8_external_cnet.yaml",
          "9_wrong_deployment.yaml",
          "11_allowed_default.yaml",
          "12_not_allowed_default.yaml",
        ]
      ) {
        const step = await apply(f);
        steps.push(step);
        // 9, 11 and 12 are all Deployment `test-deployment`: the walkthrough deletes one before applying the next.
        if (/^(9|11|12)_/.test(f)) {
          for (const o of step.created.filter((c) => c.kind === "Deployment")) await s.rest.call("DELETE", o.path);
        }
      }
      const refused = steps.flatMap((r) => r.refused.map((x) => `${r.file}: ${x.object}: ${x.message}`));
      assertEquals(refused.length, 4, refused.join("\n"));
      assertMatch(refused[0], /^0_wrong_tconf\.yaml: TenantConfig wrong-tconf: .*vniType and vniRange/);
      assertMatch(refused[1], /^2_tnet_with_vlan\.yaml: TenantNetwork default\/internal: .*spec\.Options\.vlan/);
      assertMatch(refused[2], /^5_wrong_device\.yaml: TenantNetwork default\/internal3: .*"ens6" is not allowed/);
      assertMatch(refused[3], /^9_wrong_deployment\.yaml: Pod default\/test-deployment-0: .*exactly one of/);
      const mgmt = await s.rest.call("GET", "/apis/danm.io/v1/namespaces/default/tenantnetworks/management");
      assertEquals((mgmt.body as { spec: Json }).spec.NetworkID, "flannel", "6_static_tnet: NetworkID from networkIds");

      // 10_good_deployment.yaml's pod is admitted on the real apiserver (a dry run: its ipvlan interfaces need the
      // kernel guest). Before, the webhook refused it: "management has no cidr".
      const good = load("4_0_examples/10_good_deployment.yaml")[0];
      const template = (good.spec as { template: Json }).template;
      const dry = await s.rest.call("POST", "/api/v1/namespaces/default/pods?dryRun=All", {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { ...(template.metadata as Json), name: "test-deployment-10", namespace: "default" },
        spec: template.spec,
      });
      assertEquals(dry.status, 201, `10_good_deployment's pod: ${JSON.stringify(dry.body)}`);

      // 11: no annotation in `default` → the default ClusterNetwork (flannel). 12: the same in kube-system fails at
      // CNI ADD, kube-system not being in its AllowedTenants (pods without annotations never reach the webhook).
      const [allowed] = await s.waitForPods({ pods: [{ namespace: "default", name: "test-deployment-0" }] });
      const links = await s.podLinks("default", "test-deployment-0");
      assertEquals(links.map((l) => `${l.name} ${l.kind}`), ["eth0 veth"]);
      assert(links[0].addresses[0]?.startsWith("10.244."), `flannel's address: ${links[0].addresses}`);
      assertEquals(allowed.status?.podIP, bare(links[0].addresses[0]));
      await eventually("12's sandbox refused for AllowedTenants", async () => {
        const log = await s.logs(200);
        return /FailedCreatePodSandBox kube-system\/test-deployment-0: .*not in the AllowedTenants of ClusterNetwork default/
            .test(log)
          ? true
          : undefined;
      });
      assertEquals(s.sandbox("kube-system", "test-deployment-0"), undefined);

      // ---- Pods on the cidr-less management network, and a Service over it.
      const work = await s.apply(managementWorkload);
      assertEquals(work.refused, [], "management workload refused");
      const lbNames = ["lb-0", "lb-1", "lb-2"];
      await s.waitForPods({ pods: [...lbNames, "bystander"].map((name) => ({ namespace: "default", name })) });
      const addressOf = new Map<string, string>();
      for (const name of [...lbNames, "bystander"]) {
        const [eth0, ...more] = await s.podLinks("default", name);
        assertEquals([eth0?.name, more.length], ["eth0", 0], `${name}'s interfaces`);
        assertEquals(eth0.addresses.length, 1, `${name}: ${eth0.addresses}`);
        assert(eth0.addresses[0].startsWith("10.244."), `${name} addressed by flannel's IPAM: ${eth0.addresses}`);
        addressOf.set(name, bare(eth0.addresses[0]));
      }
      assertEquals(new Set(addressOf.values()).size, 4, "distinct addresses");
      assert(
        new Set(lbNames.map((n) => s.sandbox("default", n)!.node)).size === 2,
        "the lb pods span both nodes",
      );
      // The DanmEps carry the delegate's addresses (svcwatcher reads them), and no IPBlock reservation exists for
      // them: danm's IPAM was not asked.
      const eps = (await s.kubeRun(s.kube.list(DanmEpResource, { namespace: "default" }))).items
        .filter((e) => e.spec.NetworkName === "management");
      assertEquals(
        eps.map((e) => `${e.spec.Pod} ${e.spec.apiType} ${bare(e.spec.Interface.Address ?? "")}`).sort(),
        [...addressOf].map(([name, ip]) => `${name} TenantNetwork ${ip}`).sort(),
      );
      for (const from of lbNames) {
        for (const to of lbNames.filter((n) => n !== from)) {
          assert(await s.ping("default", from, addressOf.get(to)!, 2), `${from} → ${to} over management`);
        }
      }
      const expected = lbNames.map((n) => `${addressOf.get(n)} ${n}`).sort();
      const endpoints = await eventually("Endpoints of lb-management", async () => {
        const e = await s.kubeRun(s.kube.get(EndpointsResource, "lb-management", { namespace: "default" }));
        const got = (e.subsets ?? []).flatMap((x) => (x.addresses ?? []).map((a) => `${a.ip} ${a.targetRef?.name}`));
        return got.length === expected.length ? got.sort() : undefined;
      });
      assertEquals(endpoints, expected, "every lb pod, through its management address; not the bystander");

      const report = await s.kubeRun(checkClusterConsistency({ graceSeconds: 0 }));
      const touching = (x: { network: string }) => /management|default|external|internal/.test(x.network);
      assertEquals(
        [report.duplicates.filter(touching), report.orphanEndpoints.filter(touching)],
        [[], []],
        "consistency",
      );
      assertEquals(await s.teardown({ timeoutMs: 120_000 }), { delFailures: [], refused: [], remaining: [] });
      const left = await s.kubeRun(s.kube.list(DanmEpResource, { namespace: "default" }));
      assertEquals(left.items.filter((e) => e.spec.NetworkName === "management").length, 0, "DanmEps left");
    } catch (e) {
      if (stack) console.error(await stack.logs(60));
      throw e;
    } finally {
      await stack?.stop();
      await cluster.release();
      await Deno.remove(hostLocal, { recursive: true });
    }
  },
});
