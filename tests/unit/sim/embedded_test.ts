// The embedded simulation end to end on the in-memory layers: the bundled demo and DANM's own 4.0 examples.
import { Effect } from "effect";
import { layerLiveFs } from "../../../adapters/fs/live.ts";
import { runEmbedded } from "../../../adapters/sim/embedded.ts";
import type { SimOutcome } from "../../../core/sim/report.ts";
import { loadScenario } from "../../../core/sim/scenario.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { repoRoot } from "../../harness/proc.ts";

const simulate = (path: string): Promise<SimOutcome> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const scenario = yield* loadScenario([path]).pipe(Effect.provide(layerLiveFs));
      return yield* Effect.scoped(runEmbedded(scenario));
    }),
  );

/** Simulates a scenario given as YAML text (written to a temporary file, as the CLI reads it). */
async function simulateYaml(yaml: string): Promise<SimOutcome> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/s.yaml`, yaml);
    return await simulate(`${dir}/s.yaml`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("sim: the demo scenario — pods, interfaces, host interfaces, Service endpoints, IPAM, refusals", async () => {
  const o = await simulate(`${repoRoot}/k8s/examples/demo.yaml`);
  assertEquals(o.errors, []);
  assertEquals(o.rejected.map((r) => `${r.kind} ${r.namespace}/${r.name}`), [
    "TenantNetwork telco/sneaky",
    "Pod telco/typo",
  ]);
  assert(o.rejected[0].reason.includes("spec.Options.vlan"), o.rejected[0].reason);
  assert(o.rejected[1].reason.includes("sigtrann does not exist"), o.rejected[1].reason);

  assertEquals(o.pods.map((p) => [p.name.replace(/-[a-z0-9]{7}-/, "-H-"), p.status]), [
    ["mme-H-0", "Running"],
    ["mme-H-1", "Running"],
    ["mme-H-2", "Running"],
    ["hss-0", "Running"],
    ["plain", "Running"],
  ]);
  const mme = o.pods.filter((p) => p.name.startsWith("mme-"));
  for (const p of mme) {
    // DANM naming: eth0 first, then prefix + sequence.
    assertEquals(p.interfaces.map((i) => [i.name, i.network, i.type]), [
      ["eth0", "default", "veth"],
      ["ext3", "external", "ipvlan"],
      ["int1", "internal", "ipvlan"],
      ["sig2", "sigtran", "ipvlan"],
    ]);
    const ext = p.interfaces.find((i) => i.name === "ext3")!;
    assert(ext.routes.includes("10.200.0.0/16 via 10.100.0.1"), ext.routes.join("; "));
    assert(ext.routes.includes("10.201.0.0/16 via 10.100.0.1 table 10"), ext.routes.join("; "));
    assertEquals(p.interfaces.find((i) => i.name === "int1")!.ips.length, 2, "dual stack on the tenant network");
  }
  // Static address outside the pool; dynamic ones from the pool (.10–.50), no address twice.
  const hss = o.pods.find((p) => p.name === "hss-0")!;
  assertEquals(hss.interfaces.find((i) => i.network === "external")?.ips, ["10.100.0.100/24"]);
  const all = o.pods.flatMap((p) => p.interfaces.flatMap((i) => i.ips));
  assertEquals(new Set(all).size, all.length);
  // The unannotated pod got the default network only.
  assertEquals(o.pods.find((p) => p.name === "plain")!.interfaces.map((i) => i.network), ["default"]);

  // netwatcher: VLAN host interfaces for the admin and the tenant network (VLAN 1000 from the TenantConfig),
  // VXLAN for sigtran, on both nodes.
  for (const n of o.nodes) {
    assertEquals(n.hostInterfaces.map((h) => [h.name, h.kind, h.vlan ?? h.vni, h.parent]), [
      ["external.300", "vlan", 300, "ens3"],
      ["internal.1000", "vlan", 1000, "ens4"],
      ["vx_sigtran", "vxlan", 600, "ens3"],
    ]);
  }
  // svcwatcher: the Service lists exactly the mme pods' sigtran addresses.
  const sigtran = mme.map((p) => p.interfaces.find((i) => i.name === "sig2")!.ips[0].split("/")[0]).sort();
  assertEquals(o.services.map((s) => [s.name, [...s.endpoints].sort()]), [["mme-sigtran", sigtran]]);
  // IPAM usage per network.
  const usage = Object.fromEntries(o.networks.map((n) => [n.name, n.pools.map((p) => p.used)]));
  assertEquals(usage, { sigtran: [3], internal: [3, 3], default: [], external: [4] });
  assert(
    o.networks.every((n) => n.pools.length === 0 || n.hostInterfaces.startsWith("ready")),
    JSON.stringify(o.networks),
  );
});

Deno.test("sim: DANM's 4.0 examples get DANM's verdicts and assignments; its good deployment runs", async () => {
  const o = await simulate(`${repoRoot}/k8s/examples/danm-4_0`);
  assertEquals(o.errors, []);
  assertEquals(o.rejected.map((r) => `${r.kind} ${r.name}`), [
    "TenantConfig wrong-tconf",
    "TenantNetwork internal",
    "TenantNetwork internal3",
    "Pod test-deployment-1l15sva-0",
  ]);
  const nets = Object.fromEntries(o.networks.map((n) => [n.name, [n.networkId, n.hostDevice ?? "", n.vlan ?? 0]]));
  assertEquals(nets, {
    default: ["flannel", "", 0],
    external: ["external", "ens4", 500],
    internal: ["internal", "ens4", 1000],
    internal2: ["internal2", "ens5", 2000],
    management: ["flannel", "", 0],
  });
  const pods = o.pods.map((p) => ({
    pod: `${p.namespace}/${p.name}`,
    status: p.status,
    interfaces: p.interfaces.map((i) => `${i.name} ${i.network} ${i.type} ${i.ips.join(",")}`),
  }));
  // 10_good_deployment: eth0 from the flannel network's own IPAM (management has no cidr), ext1 and int2 from
  // danm's pools; 11: the default ClusterNetwork; 12: kube-system is not among its AllowedTenants.
  assertEquals(pods, [
    {
      pod: "default/test-deployment-11m8xx3-0", // 10_good_deployment.yaml
      status: "Running",
      interfaces: [
        "eth0 management veth 10.244.1.2/24",
        "ext1 external ipvlan 10.100.1.100/24",
        "int2 internal ipvlan 10.240.1.100/24",
      ],
    },
    {
      pod: "default/test-deployment-1v3giqj-0", // 11_allowed_default.yaml
      status: "Running",
      interfaces: ["eth0 default veth 10.244.2.2/24"],
    },
    { pod: "kube-system/test-deployment-1v3giqj-0", status: "Failed", interfaces: [] }, // 12_not_allowed_default
  ]);
  assert(/not in the AllowedTenants of ClusterNetwork default/.test(o.pods[2].error ?? ""), o.pods[2].error);
});

Deno.test("sim: a selectorless Service over a flannel network without a cidr lists every matching pod", async () => {
  const o = await simulateYaml(`
apiVersion: danm.io/v1
kind: DanmNet
metadata: {name: management, namespace: vnf}
spec: {NetworkID: flannel, NetworkType: flannel}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: lb, namespace: vnf}
spec:
  replicas: 3
  selector: {matchLabels: {app: lb}}
  template:
    metadata:
      labels: {app: lb}
      annotations:
        danm.k8s.io/interfaces: '[{"network":"management", "ip":"dynamic"}]'
    spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: other
  namespace: vnf
  labels: {app: other}
  annotations: {danm.io/interfaces: '[{"network":"management", "ip":"dynamic"}]'}
spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Service
metadata:
  name: lb-management
  namespace: vnf
  annotations:
    danm.k8s.io/selector: '{"app":"lb"}'
    danm.k8s.io/network: management
spec:
  clusterIP: None
  ports: [{name: http, port: 80}]
`);
  assertEquals([o.errors, o.rejected], [[], []]);
  assertEquals(o.pods.map((p) => p.status), ["Running", "Running", "Running", "Running"]);
  const lb = o.pods.filter((p) => p.owner === "Deployment vnf/lb")
    .map((p) => p.interfaces[0].ips[0].split("/")[0]).sort();
  assertEquals(lb.length, 3);
  assertEquals(o.services.map((s) => [s.name, [...s.endpoints].sort()]), [["lb-management", lb]]);
});

Deno.test("sim: a ReservedIP keeps its address from dynamic pods; the pod naming it gets it; a bad one is refused", async () => {
  const o = await simulateYaml(`
apiVersion: danm.io/v1
kind: DanmNet
metadata: {name: lb, namespace: default}
spec:
  NetworkID: lb
  NetworkType: macvlan
  Options: {host_device: ens4, cidr: 10.40.0.0/24, allocation_pool: {start: 10.40.0.10, end: 10.40.0.12}}
---
apiVersion: danm.io/v1
kind: ReservedIP
metadata: {name: vip, namespace: default}
spec:
  network: {name: lb, type: DanmNet}
  ips: [{address: 10.40.0.10}]
---
apiVersion: danm.io/v1
kind: ReservedIP
metadata: {name: outside, namespace: default}
spec:
  network: {name: lb, type: DanmNet}
  ips: [{address: 10.41.0.10}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {danm.io/interfaces: '[{"network":"lb","ip":"dynamic"}]'}
    spec: {containers: [{name: c, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: vip-holder
  namespace: default
  annotations: {danm.io/interfaces: '[{"network":"lb","ip":"10.40.0.10"}]'}
spec: {containers: [{name: c, image: busybox}]}
`);
  assertEquals(o.errors, []);
  assertEquals(o.rejected.map((r) => `${r.kind} ${r.name}`), ["ReservedIP outside"]);
  assert(/10\.41\.0\.10 is not inside cidr 10\.40\.0\.0\/24/.test(o.rejected[0].reason), o.rejected[0].reason);
  const ips = Object.fromEntries(o.pods.map((p) => [p.name, p.interfaces[0]?.ips[0]]));
  assertEquals(ips, { "web-0": "10.40.0.11/24", "web-1": "10.40.0.12/24", "vip-holder": "10.40.0.10/24" });
});

Deno.test("sim CLI: -o json prints one document with pods, nodes, services and rejected", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}/cmd/sim.ts`, "-o", "json"],
    stdin: "null",
  }).output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  const doc = JSON.parse(new TextDecoder().decode(out.stdout));
  assertEquals(Object.keys(doc).sort(), ["errors", "networks", "nodes", "pods", "rejected", "services"]);
  assertEquals(doc.pods.length, 5);
  assert(doc.pods[0].interfaces[0].ips[0].includes("/"), "addresses carry their prefix");
  const bad = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}/cmd/sim.ts`, "/nonexistent-scenario.yaml"],
    stdin: "null",
  }).output();
  assertEquals(bad.code, 1);
  const err = new TextDecoder().decode(bad.stderr);
  assert(err.includes("/nonexistent-scenario.yaml"), err);
});

Deno.test("sim: SR-IOV — the nodes' simulated device plugins hand each pod the VF it requests; danm pops and reports it", async () => {
  const o = await simulate(`${repoRoot}/k8s/examples/sriov.yaml`);
  assertEquals([o.errors, o.rejected], [[], []]);
  assertEquals(o.pods.map((p) => p.status), ["Running", "Running", "Running", "Running"]);
  const vfs = o.pods.map((p) => {
    const fh = p.interfaces.find((i) => i.network === "fronthaul")!;
    return `${p.node} ${fh.name} ${fh.device}`;
  }).sort();
  // Four VFs per node, one per pod, handed out in order; a VF is never given twice on a node.
  assertEquals(vfs, [
    "worker-1 eth1 0000:81:10.0",
    "worker-1 eth1 0000:81:10.1",
    "worker-2 eth1 0000:81:10.0",
    "worker-2 eth1 0000:81:10.1",
  ]);
});

Deno.test("sim: SR-IOV — a malformed pool is named; a pod without the resource is refused, one asking too much fails", async () => {
  const pod = (name: string, limits: string) => `
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: default
  annotations:
    danm.io/interfaces: '[{"network": "vf"}]'
spec:
  containers:
    - name: c
      image: x${limits}
`;
  const o = await simulateYaml(
    [
      `
apiVersion: v1
kind: Node
metadata:
  name: n1
  annotations:
    sim.danm.io/sriov-pools: "nokia.k8s.io/vf=ens1f0:1, broken"
`,
      `
apiVersion: danm.io/v1
kind: DanmNet
metadata: { name: vf, namespace: default }
spec: { NetworkID: vf, NetworkType: sriov, Options: { device_pool: nokia.k8s.io/vf } }
`,
      pod("none", ""),
      pod("two", '\n      resources: { limits: { nokia.k8s.io/vf: "2" } }'),
    ].join("---"),
  );
  assertEquals(o.errors.length, 1);
  assert(o.errors[0].includes(`"broken" is not <resource>=<PF>:<VFs>`), o.errors[0]);
  // Without the resource the webhook refuses the pod; asking for more VFs than the node has fails its ADD.
  assertEquals(o.rejected.map((r) => r.name), ["none"]);
  assert(o.rejected[0].reason.includes("the containers request 0"), o.rejected[0].reason);
  const two = o.pods.find((p) => p.name === "two")!;
  assertEquals(two.status, "Failed");
  assert(two.error!.includes("node n1 has 1 free VF(s) of nokia.k8s.io/vf, the pod requests 2"), two.error);
});

Deno.test("sim: danm's IPAM addresses the built-in macvlan and a delegate (a bridge .conf, through fakeipam)", async () => {
  const o = await simulateYaml(`
apiVersion: v1
kind: Node
metadata:
  name: n1
  annotations:
    sim.danm.io/host-interfaces: "ens4, ens5"
---
apiVersion: danm.io/v1
kind: ClusterNetwork
metadata: { name: mv }
spec: { NetworkID: mv, NetworkType: macvlan, Options: { host_device: ens5, cidr: 10.70.0.0/24 } }
---
apiVersion: danm.io/v1
kind: ClusterNetwork
metadata: { name: br }
spec: { NetworkID: br, NetworkType: bridge, Options: { container_prefix: br, cidr: 10.71.0.0/24 } }
---
apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: default
  annotations:
    danm.io/interfaces: '[{"clusterNetwork": "mv", "ip": "dynamic"}, {"clusterNetwork": "br", "ip": "10.71.0.9"}]'
spec:
  containers: [{ name: c, image: x }]
`);
  assertEquals([o.errors, o.rejected], [[], []]);
  const [p] = o.pods;
  assertEquals(p.status, "Running", p.error);
  assertEquals(p.interfaces.map((i) => `${i.name} ${i.network} ${i.type} ${i.ips.join(",")}`).sort(), [
    "br1 br veth 10.71.0.9/24",
    "eth0 mv macvlan 10.70.0.1/24",
  ]);
});
