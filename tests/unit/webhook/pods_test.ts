// Pod admission through the in-memory apiserver with the webhook registered: the danm and NPWG selection
// annotations, network existence, AllowedTenants, static addresses, interface names, device-pool requests.
import { Effect } from "effect";
import { ClusterNetworkResource, DanmNetResource, decodeDanmObject } from "../../../core/api/danm.ts";
import { type IPBlock, ipBlockResource, labels } from "../../../core/api/ipam.ts";
import { NetworkAttachmentDefinitionResource, type Pod, PodResource } from "../../../core/api/k8s.ts";
import type { KubeError } from "../../../core/ports/kube.ts";
import { blockName } from "../../../core/ipam/allocator.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { type Env, type EnvOptions, type Json, registerWebhook, review, withEnv } from "./harness.ts";

const net = (env: Env, kind: "DanmNet" | "ClusterNetwork", name: string, spec: Json) =>
  Effect.gen(function* () {
    const meta = kind === "DanmNet" ? { name, namespace: "default" } : { name };
    const obj = yield* Effect.orDie(decodeDanmObject(kind, { metadata: meta, spec }));
    return kind === "DanmNet"
      ? yield* Effect.orDie(env.kube.create(DanmNetResource, obj))
      : yield* Effect.orDie(env.kube.create(ClusterNetworkResource, obj));
  });

const setup = (env: Env) =>
  Effect.gen(function* () {
    yield* net(env, "DanmNet", "net1", {
      NetworkID: "net1",
      Options: { cidr: "10.10.0.0/24", routes: { "10.20.0.0/16": "10.10.0.1" }, container_prefix: "int" },
    });
    yield* net(env, "DanmNet", "l2", { NetworkID: "l2", Options: { host_device: "ens4" } });
    yield* net(env, "DanmNet", "wide", { NetworkID: "wide", Options: { container_prefix: "üüüüüüü" } });
    yield* net(env, "DanmNet", "vf", {
      NetworkID: "vf",
      NetworkType: "sriov",
      Options: { device_pool: "nokia.k8s.io/sriov_ens1f0", cidr: "10.30.0.0/24" },
    });
    yield* net(env, "ClusterNetwork", "cn", { NetworkID: "cn", AllowedTenants: ["default"] });
    yield* Effect.orDie(env.kube.create(NetworkAttachmentDefinitionResource, {
      metadata: { name: "nad1", namespace: "default" },
      spec: { config: '{"cniVersion":"1.0.0","type":"macvlan","master":"ens5"}' },
    }));
  });

const pod = (
  name: string,
  annotations: Record<string, string>,
  extra: Partial<Pod["spec"]> = {},
  ns = "default",
): Pod => ({
  metadata: { name, namespace: ns, annotations },
  spec: { containers: [{ name: "c", image: "busybox" }], ...extra },
});

const interfaces = (entries: unknown[]) => ({ "danm.io/interfaces": JSON.stringify(entries) });

const create = (env: Env, p: Pod) =>
  env.kube.create(PodResource, p).pipe(
    Effect.map(() => ({ ok: true as const })),
    Effect.catch((e: KubeError) => Effect.succeed({ ok: false as const, message: e.message })),
  );

const withPods = <A>(body: (env: Env) => Effect.Effect<A, unknown, never>, o: EnvOptions = {}) =>
  withEnv((env) =>
    Effect.acquireUseRelease(
      Effect.sync(() => registerWebhook(env)),
      () => Effect.andThen(setup(env), body(env)),
      (off) => Effect.sync(off),
    ), o);

const admitted = (env: Env, p: Pod) =>
  Effect.flatMap(create(env, p), (r) =>
    Effect.sync(() => {
      if (!r.ok) fail(`pod ${p.metadata.name} refused: ${r.message}`);
    }));

const refusedWith = (env: Env, p: Pod, re: RegExp) =>
  Effect.flatMap(create(env, p), (r) =>
    Effect.sync(() => {
      if (r.ok) return fail(`pod ${p.metadata.name} admitted, expected ${re}`);
      assertMatch(r.message, re);
      assertMatch(r.message, new RegExp(`Pod ${p.metadata.namespace}/${p.metadata.name}: `));
    }));

const ann = (key: string, entry?: number, field?: string) =>
  `metadata\\.annotations\\["${key.replace(/[./]/g, (c) => `\\${c}`)}"\\]` +
  (entry === undefined ? "" : `\\[${entry}\\]`) + (field === undefined ? "" : `\\.${field}`);

Deno.test("pods: valid danm and NPWG selections are admitted", () =>
  withPods((env) =>
    Effect.gen(function* () {
      yield* admitted(env, pod("ok1", interfaces([{ network: "net1", ip: "10.10.0.7" }, { clusterNetwork: "cn" }])));
      yield* admitted(
        env,
        pod("ok2", interfaces([{ Network: "net1", IP: "dynamic", proutes: { "10.40.0.0/16": "10.10.0.1" } }])),
      );
      yield* admitted(env, pod("ok3", { "k8s.v1.cni.cncf.io/networks": "nad1, net1@ext5" }));
      yield* admitted(env, pod("ok4", { "k8s.v1.cni.cncf.io/networks": '[{"name":"net1","ips":["10.10.0.8"]}]' }));
      // hostNetwork pods get no CNI: their annotations do not matter.
      yield* admitted(env, pod("host", { "danm.io/interfaces": "not json" }, { hostNetwork: true }));
    })
  ));

Deno.test("pods: annotation syntax and one network reference per entry", () =>
  withPods((env) =>
    Effect.gen(function* () {
      yield* refusedWith(
        env,
        pod("p1", { "danm.io/interfaces": "[{" }),
        new RegExp(`${ann("danm.io/interfaces")}: not valid JSON`),
      );
      yield* refusedWith(
        env,
        pod("p2", interfaces([{ network: "net1", clusterNetwork: "cn" }])),
        new RegExp(
          `${
            ann("danm.io/interfaces", 0, "clusterNetwork")
          }: exactly one of "network", "tenantNetwork", "clusterNetwork" must be set \\(found: network, clusterNetwork\\)`,
        ),
      );
      yield* refusedWith(
        env,
        pod("p3", interfaces([{ network: "net1", foo: 1 }])),
        new RegExp(`${ann("danm.io/interfaces", 0, "foo")}: unknown key`),
      );
      yield* refusedWith(
        env,
        pod("p4", { "danm.k8s.io/interfaces": JSON.stringify([{ network: "net1", ip: "10.10.0.300" }]) }),
        new RegExp(`${ann("danm.k8s.io/interfaces", 0, "ip")}: must be "dynamic", "none" or an IPv4 address`),
      );
      yield* refusedWith(
        env,
        pod("p5", { "k8s.v1.cni.cncf.io/networks": "Bad_Name" }),
        new RegExp(`${ann("k8s.v1.cni.cncf.io/networks", 0, "name")}: "Bad_Name" must consist of lower case`),
      );
    })
  ));

Deno.test("pods: networks must exist and admit the namespace", () =>
  withPods((env) =>
    Effect.gen(function* () {
      yield* refusedWith(
        env,
        pod("m1", interfaces([{ network: "net1" }, { network: "nope" }])),
        new RegExp(`${ann("danm.io/interfaces", 1, "network")}: DanmNet default/nope does not exist`),
      );
      yield* refusedWith(
        env,
        pod("m2", interfaces([{ clusterNetwork: "cn" }]), {}, "kube-public"),
        /namespace kube-public is not in the AllowedTenants of ClusterNetwork cn \(default\)/,
      );
      yield* refusedWith(
        env,
        pod("m3", interfaces([{ network: "net1" }]), {}, "kube-public"),
        /DanmNet kube-public\/net1 does not exist/,
      );
      yield* refusedWith(
        env,
        pod("m4", { "k8s.v1.cni.cncf.io/networks": "nad1,missing" }),
        new RegExp(
          `${
            ann("k8s.v1.cni.cncf.io/networks", 1, "name")
          }: no NetworkAttachmentDefinition default/missing, DanmNet, TenantNetwork or ClusterNetwork named "missing" exists`,
        ),
      );
    })
  ));

Deno.test("pods: references to networks of another namespace are refused as namespace-local", () =>
  withPods((env) =>
    Effect.gen(function* () {
      // net1 exists in default; the pods live in kube-public.
      yield* refusedWith(
        env,
        pod("x1", interfaces([{ network: "default/net1" }]), {}, "kube-public"),
        new RegExp(
          `${ann("danm.io/interfaces", 0, "network")}: "default/net1" is in namespace default: DanmNet references ` +
            `are namespace-local \\(a pod in kube-public attaches the DanmNets of kube-public\\); to share a ` +
            `network between namespaces use a ClusterNetwork`,
        ),
      );
      yield* refusedWith(
        env,
        pod("x2", interfaces([{ tenantNetwork: "other/tn" }])),
        /\[0\]\.tenantNetwork: "other\/tn" is in namespace other: TenantNetwork references are namespace-local/,
      );
      yield* refusedWith(
        env,
        pod("x3", interfaces([{ network: "default/net1" }])),
        /"default\/net1": references are namespace-local, name the DanmNet without its namespace \("net1"\)/,
      );
      yield* refusedWith(
        env,
        pod("x4", interfaces([{ clusterNetwork: "default/cn" }])),
        /"default\/cn": a ClusterNetwork is cluster-scoped, name it without a namespace \("cn"\)/,
      );
      yield* refusedWith(
        env,
        pod("x5", { "k8s.v1.cni.cncf.io/networks": "default/net1" }, {}, "kube-public"),
        new RegExp(
          `${ann("k8s.v1.cni.cncf.io/networks", 0, "name")}: no NetworkAttachmentDefinition default/net1 exists, ` +
            `and references to danm networks are namespace-local: a pod in kube-public attaches the DanmNets and ` +
            `TenantNetworks of kube-public, and ClusterNetworks`,
        ),
      );
      // A NAD is the one kind NPWG may take from another namespace.
      yield* admitted(env, pod("x6", { "k8s.v1.cni.cncf.io/networks": "default/nad1" }, {}, "kube-public"));
    })
  ));

Deno.test("pods: static addresses inside the CIDR, not reserved, not taken by another pod, not twice", () =>
  withPods((env) =>
    Effect.gen(function* () {
      yield* refusedWith(
        env,
        pod("s1", interfaces([{ network: "net1", ip: "10.11.0.5" }])),
        new RegExp(
          `${
            ann("danm.io/interfaces", 0, "ip")
          }: 10\\.11\\.0\\.5 is not inside cidr 10\\.10\\.0\\.0/24 of DanmNet default/net1`,
        ),
      );
      for (const reserved of ["10.10.0.1", "10.10.0.0", "10.10.0.255/24"]) {
        yield* refusedWith(
          env,
          pod("s2", interfaces([{ network: "net1", ip: reserved }])),
          /is reserved on DanmNet default\/net1 \(network, broadcast or route gateway address\)/,
        );
      }
      yield* refusedWith(
        env,
        pod("s3", interfaces([{ network: "l2", ip: "dynamic" }])),
        new RegExp(
          `${
            ann("danm.io/interfaces", 0, "ip")
          }: DanmNet default/l2 has no cidr: no IPv4 address can be allocated on it`,
        ),
      );
      yield* refusedWith(
        env,
        pod("s4", interfaces([{ network: "net1", ip6: "dynamic" }])),
        /DanmNet default\/net1 has no net6: no IPv6 address can be allocated on it/,
      );
      yield* refusedWith(
        env,
        pod("s5", interfaces([{ network: "net1", ip: "10.10.0.9" }, { network: "net1", ip: "10.10.0.9/24" }])),
        /\[1\]\.ip: 10\.10\.0\.9 is also requested by entry 0 on DanmNet default\/net1/,
      );
      // 10.10.0.9 reserved by another pod in the network's IPBlock.
      const n = yield* Effect.orDie(env.kube.get(DanmNetResource, "net1", { namespace: "default" }));
      const ref = { kind: "DanmNet" as const, namespace: "default", name: "net1", uid: n.metadata.uid ?? "" };
      const block: IPBlock = {
        metadata: { name: blockName(ref, 4, 0n), labels: { [labels.networkUid]: ref.uid } },
        spec: {
          network: ref,
          family: "IPv4",
          cidr: "10.10.0.0/26",
          reservations: {
            "9": {
              pod: "default/other",
              podUid: "u",
              sandbox: "s",
              iface: "int1",
              node: "n",
              since: "2024-01-01T00:00:00Z",
            },
          },
        },
      };
      yield* Effect.orDie(env.kube.create(ipBlockResource, block));
      yield* refusedWith(
        env,
        pod("s6", interfaces([{ network: "net1", ip: "10.10.0.9" }])),
        /10\.10\.0\.9 on DanmNet default\/net1 is already reserved by pod default\/other \(interface int1\)/,
      );
      // The same pod name (a StatefulSet pod coming back) may ask for its address again.
      yield* admitted(env, pod("other", interfaces([{ network: "net1", ip: "10.10.0.9" }])));
      yield* admitted(env, pod("s7", interfaces([{ network: "net1", ip: "10.10.0.10" }])));
      yield* refusedWith(
        env,
        pod("s8", { "k8s.v1.cni.cncf.io/networks": '[{"name":"net1","ips":["10.10.0.9"]}]' }),
        new RegExp(
          `${
            ann("k8s.v1.cni.cncf.io/networks", 0, "ips")
          }: 10\\.10\\.0\\.9 on DanmNet default/net1 is already reserved`,
        ),
      );
    })
  ));

Deno.test("pods: on a static delegate network without a cidr the delegate's own IPAM addresses the pod", () =>
  withPods((env) =>
    Effect.gen(function* () {
      yield* net(env, "DanmNet", "flannel", { NetworkID: "flannel", NetworkType: "flannel" });
      yield* net(env, "DanmNet", "bridged", {
        NetworkID: "br",
        NetworkType: "bridge",
        Options: { cidr: "10.60.0.0/24" },
      });
      yield* net(env, "DanmNet", "mv", { NetworkID: "mv", NetworkType: "macvlan", Options: { host_device: "ens4" } });
      // DANM's own examples: `ip: dynamic` on a flannel network is flannel's host-local giving the address.
      yield* admitted(env, pod("f1", interfaces([{ network: "flannel", ip: "dynamic" }, { network: "net1" }])));
      yield* admitted(env, pod("f2", interfaces([{ network: "flannel", ip: "dynamic", ip6: "dynamic" }])));
      yield* admitted(env, pod("f3", interfaces([{ network: "flannel", ip: "none" }])));
      // Only IPv6 asked on a network with only a cidr: still the delegate's IPAM.
      yield* admitted(env, pod("f4", interfaces([{ network: "bridged", ip6: "dynamic" }])));
      // A static address there is not danm's to honour: admitted, with a warning saying so.
      const r = yield* env.validate(
        review("CREATE", { kind: "Pod", ...pod("f5", interfaces([{ network: "flannel", ip: "10.9.0.5" }])) } as Json),
      );
      assert(r.response.allowed, "allowed");
      assertEquals(r.response.warnings, [
        'metadata.annotations["danm.io/interfaces"][0].ip: DanmNet default/flannel has no cidr, so flannel\'s own ' +
        'IPAM chooses the address and "10.9.0.5" is not honoured',
      ]);
      // danm's IPAM takes over for both families once one request makes sense: IPv6 then has nowhere to come from.
      yield* refusedWith(
        env,
        pod("f6", interfaces([{ network: "bridged", ip: "dynamic", ip6: "dynamic" }])),
        new RegExp(
          `${ann("danm.io/interfaces", 0, "ip6")}: DanmNet default/bridged has no net6: no IPv6 address can be ` +
            `allocated on it \\(the ip request puts this bridge interface under danm's IPAM`,
        ),
      );
      // macvlan (and ipvlan, sriov) are always danm's IPAM: an L2 network has no address to give.
      yield* refusedWith(
        env,
        pod("f7", interfaces([{ network: "mv", ip: "dynamic" }])),
        new RegExp(`${ann("danm.io/interfaces", 0, "ip")}: DanmNet default/mv has no cidr: no IPv4 address`),
      );
      yield* admitted(env, pod("f8", interfaces([{ network: "mv", ip: "none" }, { network: "mv" }])));
    })
  ));

Deno.test("pods: interface names follow DANM's rules and fit 15 bytes", () =>
  withPods((env) =>
    Effect.gen(function* () {
      // "üüüüüüü" is 14 bytes: indexes 1–9 fit, index 10 makes 16 bytes.
      const nine = Array.from({ length: 10 }, () => ({ network: "wide" }));
      yield* admitted(env, pod("n1", interfaces(nine)));
      yield* refusedWith(
        env,
        pod("n2", interfaces([...nine, { network: "wide" }])),
        new RegExp(
          `${
            ann("danm.io/interfaces", 10)
          }: interface name: "üüüüüüü10" is 16 bytes long; Linux interface names have at most 15`,
        ),
      );
      yield* refusedWith(
        env,
        pod("n3", { "k8s.v1.cni.cncf.io/networks": '[{"name":"net1"},{"name":"nad1","interface":"eth0"}]' }),
        /\[1\]\.interface: interface name: "eth0" is already the name of interface 0/,
      );
      yield* refusedWith(
        env,
        pod("n4", { "k8s.v1.cni.cncf.io/networks": '[{"name":"net1","interface":"net1"}]' }),
        /\[0\]\.interface: interface name: the first interface of a pod is always eth0; "net1" cannot be used/,
      );
      yield* admitted(
        env,
        pod("n5", { "k8s.v1.cni.cncf.io/networks": '[{"name":"net1"},{"name":"nad1","interface":"net1"}]' }),
      );
    })
  ));

Deno.test("pods: under namingScheme legacy two interfaces with one prefix collide", () =>
  withPods((env) =>
    refusedWith(
      env,
      pod("l1", interfaces([{ network: "l2" }, { network: "net1" }, { network: "net1" }])),
      /\[2\]: interface name: "int" is already the name of interface 1/,
    ), { namingScheme: "legacy" }));

Deno.test("pods: the default network is looked up as DANM does, AllowedTenants included", () =>
  withPods((env) =>
    Effect.gen(function* () {
      yield* refusedWith(
        env,
        pod("d1", interfaces([])),
        /the pod names no network and there is no default network for namespace default/,
      );
      yield* net(env, "ClusterNetwork", "default", { NetworkID: "def", AllowedTenants: ["kube-public"] });
      yield* refusedWith(
        env,
        pod("d2", interfaces([])),
        /default network: namespace default is not in the AllowedTenants/,
      );
      yield* admitted(env, pod("d3", interfaces([]), {}, "kube-public"));
      // A namespace's own default wins over the ClusterNetwork.
      yield* net(env, "DanmNet", "default", { NetworkID: "d", Options: { cidr: "10.50.0.0/24" } });
      yield* admitted(env, pod("d4", interfaces([])));
    })
  ));

Deno.test("pods: a device_pool network needs the pool's resource in the containers' requests", () =>
  withPods((env) =>
    Effect.gen(function* () {
      const two = interfaces([{ network: "vf", ip: "dynamic" }, { network: "vf" }]);
      yield* refusedWith(
        env,
        pod("v1", two),
        /2 interface\(s\) on device pool nokia\.k8s\.io\/sriov_ens1f0 need as many devices, but the containers request 0/,
      );
      const requesting = (n: string) => ({
        containers: [{
          name: "c",
          resources: { requests: { "nokia.k8s.io/sriov_ens1f0": n }, limits: { "nokia.k8s.io/sriov_ens1f0": n } },
        }],
      });
      yield* refusedWith(env, pod("v2", two, requesting("1")), /the containers request 1/);
      yield* admitted(env, pod("v3", two, requesting("2")));
    })
  ));

Deno.test("pods: a shadowed NPWG annotation and proutes without rt_tables are warnings, not refusals", () =>
  withPods((env) =>
    Effect.gen(function* () {
      const p = pod("w1", {
        ...interfaces([{ network: "net1", proutes: { "10.40.0.0/16": "10.10.0.1" } }]),
        "k8s.v1.cni.cncf.io/networks": "nad1",
      });
      const r = yield* env.validate(review("CREATE", { kind: "Pod", ...p } as unknown as Json));
      assert(r.response.allowed, "allowed");
      assertEquals(r.response.warnings, [
        "k8s.v1.cni.cncf.io/networks is ignored: danm.io/interfaces takes precedence",
        'metadata.annotations["danm.io/interfaces"][0].proutes: DanmNet default/net1 has no rt_tables, so the policy routes are not installed',
      ]);
    })
  ));
