// Which networks a pod gets (core/podnetworks/selection.ts), over a fake directory.
import { Effect } from "effect";
import {
  NetworkDirectory,
  type NetworkDirectoryService,
  type PodAttachments,
  resolvePodAttachments,
} from "../../../core/podnetworks/selection.ts";
import type { ClusterNetwork, DanmNet, TenantNetwork } from "../../../core/api/danm.ts";
import type { NetworkAttachmentDefinition } from "../../../core/api/k8s.ts";
import { assertEquals, assertMatch, fail } from "../../harness/assert.ts";

interface World {
  danmNets?: DanmNet[];
  tenantNets?: TenantNetwork[];
  clusterNets?: ClusterNetwork[];
  nads?: NetworkAttachmentDefinition[];
}

const dn = (ns: string, name: string, options: DanmNet["spec"]["Options"] = {}): DanmNet => ({
  metadata: { name, namespace: ns },
  spec: { NetworkID: name, Options: options },
});
const cn = (name: string, allowed?: string[], options: ClusterNetwork["spec"]["Options"] = {}): ClusterNetwork => ({
  metadata: { name },
  spec: { NetworkID: name, Options: options, ...(allowed ? { AllowedTenants: allowed } : {}) },
});

function directory(w: World): NetworkDirectoryService {
  const find = <T extends { metadata: { name?: string; namespace?: string } }>(
    xs: T[] | undefined,
    ns: string | undefined,
    name: string,
  ) => Effect.succeed(xs?.find((x) => x.metadata.name === name && (ns === undefined || x.metadata.namespace === ns)));
  return {
    danmNet: (ns, name) => find(w.danmNets, ns, name),
    tenantNetwork: (ns, name) => find(w.tenantNets, ns, name),
    clusterNetwork: (name) => find(w.clusterNets, undefined, name),
    attachmentDefinition: (ns, name) => find(w.nads, ns, name),
  };
}

const resolve = (
  w: World,
  annotations: Record<string, string> | undefined,
  namespace = "default",
  scheme: "" | "legacy" = "",
) =>
  Effect.runPromise(
    resolvePodAttachments({ namespace, ...(annotations ? { annotations } : {}) }, scheme).pipe(
      Effect.provideService(NetworkDirectory, directory(w)),
      Effect.map((r): PodAttachments | string => r),
      Effect.catch((e) => Effect.succeed(e.message)),
    ),
  );

const summary = (r: PodAttachments | string) =>
  typeof r === "string"
    ? fail(r)
    : r.attachments.map((a) => `${a.ifName}:${a.network.kind}/${a.network.object.metadata.name}`);

const world: World = {
  danmNets: [
    dn("default", "a", { cidr: "10.0.0.0/24", container_prefix: "ext" }),
    dn("default", "default"),
    dn("other", "b"),
  ],
  tenantNets: [{
    metadata: { name: "t", namespace: "default" },
    spec: { NetworkID: "t", Options: { net6: "2001:db8::/64" } },
  }],
  clusterNets: [cn("c", ["default"]), cn("default"), cn("b")],
  nads: [{ metadata: { name: "a", namespace: "default" } }, { metadata: { name: "x", namespace: "other" } }],
};

Deno.test("selection: the danm annotation wins, in order, with DANM's names; NPWG next to it is a warning", async () => {
  const r = await resolve(world, {
    "danm.io/interfaces":
      '[{"network":"a"},{"network":"a","ip":"dynamic"},{"clusterNetwork":"c"},{"tenantNetwork":"t"}]',
    "k8s.v1.cni.cncf.io/networks": "a",
  });
  assertEquals(summary(r), ["eth0:DanmNet/a", "ext1:DanmNet/a", "eth2:ClusterNetwork/c", "eth3:TenantNetwork/t"]);
  if (typeof r !== "string") {
    assertEquals(r.source, "danm");
    assertEquals(r.attachments[1].ip, "dynamic");
    assertEquals(r.warnings, ["k8s.v1.cni.cncf.io/networks is ignored: danm.io/interfaces takes precedence"]);
  }
  const legacy = await resolve(world, { "danm.k8s.io/interfaces": '[{"network":"a"}]' });
  if (typeof legacy !== "string") assertEquals(legacy.attachments[0].annotation, "danm.k8s.io/interfaces");
});

Deno.test("selection: NPWG elements name a NAD first, else a danm network; an empty danm list defers to NPWG", async () => {
  const r = await resolve(world, {
    "danm.io/interfaces": "[]",
    "k8s.v1.cni.cncf.io/networks": "a, t@data, c, other/x",
  });
  assertEquals(summary(r), [
    "eth0:NetworkAttachmentDefinition/a",
    "data:TenantNetwork/t",
    "eth2:ClusterNetwork/c",
    "eth3:NetworkAttachmentDefinition/x",
  ]);
  if (typeof r !== "string") {
    assertEquals(r.attachments[1].ip6, "dynamic", "no ips: every family of the network, dynamically");
    assertEquals(r.attachments[1].ip, undefined);
  }
  assertMatch(
    String(await resolve(world, { "k8s.v1.cni.cncf.io/networks": "other/b" })),
    /references to danm networks are namespace-local/,
  );
  assertMatch(
    String(await resolve(world, { "k8s.v1.cni.cncf.io/networks": '[{"name":"a","namespace":"nope"}]' })),
    /no NetworkAttachmentDefinition nope\/a/,
  );
  const ips = await resolve({ danmNets: [dn("default", "v", { cidr: "10.0.0.0/24", net6: "2001:db8::/64" })] }, {
    "k8s.v1.cni.cncf.io/networks": '[{"name":"v","ips":["10.0.0.5/24","2001:db8::5"]}]',
  });
  if (typeof ips === "string") return fail(ips);
  assertEquals([ips.attachments[0].ip, ips.attachments[0].ip6], ["10.0.0.5/24", "2001:db8::5"]);
  assertMatch(
    String(
      await resolve({ danmNets: [dn("default", "v", { cidr: "10.0.0.0/24" })] }, {
        "k8s.v1.cni.cncf.io/networks": '[{"name":"v","ips":["10.0.0.5","10.0.0.6"]}]',
      }),
    ),
    /entry 0, field ips\[1\]: a danm network takes at most one IPv4 address per interface/,
  );
});

Deno.test("selection: the default network is DanmNet, then TenantNetwork, then ClusterNetwork 'default'", async () => {
  assertEquals(summary(await resolve(world, undefined)), ["eth0:DanmNet/default"]);
  const tnDefault: TenantNetwork = { metadata: { name: "default", namespace: "x" }, spec: { NetworkID: "d" } };
  assertEquals(summary(await resolve({ ...world, tenantNets: [tnDefault] }, {}, "x")), ["eth0:TenantNetwork/default"]);
  assertEquals(summary(await resolve(world, {}, "x")), ["eth0:ClusterNetwork/default"]);
  assertMatch(String(await resolve({}, {}, "x")), /no default network for namespace x/);
  assertMatch(
    String(await resolve({ clusterNets: [cn("default", ["y"])] }, {}, "x")),
    /default network: namespace x is not in the AllowedTenants of ClusterNetwork default \(y\)/,
  );
  const withCidr = await resolve({ clusterNets: [cn("default", undefined, { cidr: "10.1.0.0/24" })] }, {}, "x");
  if (typeof withCidr !== "string") assertEquals(withCidr.attachments[0].ip, "dynamic");
});

Deno.test("selection: AllowedTenants and missing networks fail naming the entry", async () => {
  assertMatch(
    String(await resolve(world, { "danm.io/interfaces": '[{"clusterNetwork":"c"}]' }, "kube-public")),
    /annotation danm\.io\/interfaces, entry 0, field clusterNetwork: namespace kube-public is not in the AllowedTenants/,
  );
  assertMatch(
    String(await resolve(world, { "danm.io/interfaces": '[{"network":"a"},{"tenantNetwork":"zz"}]' })),
    /entry 1, field tenantNetwork: TenantNetwork default\/zz does not exist/,
  );
});
