// MultiNetworkPolicy on ipvlan interfaces (the QEMU guest: the host kernel lacks ipvlan), enforced for real: the CNI
// node handler with the node agent's policy controller beside it (in-memory apiserver, live netlink, live
// `nsenter … nft -f -`), pods set up by ADD requests, real TCP and UDP between their namespaces, IPv4 and IPv6.
// Default deny + an allow rule each way; a label change reaching the kernel; a restarted controller repairing a
// table removed while none ran.
import { Effect, Exit, Layer, Scope } from "effect";
import { ClusterNetworkResource, DanmEpResource } from "../../../core/api/danm.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import { type MultiNetworkPolicy, MultiNetworkPolicyResource, PolicyForAnnotation } from "../../../core/api/netpol.ts";
import { engineRenderer, make as makeNetpol } from "../../../core/netpol/controller.ts";
import { Kube } from "../../../core/ports/kube.ts";
import { Process } from "../../../core/ports/process.ts";
import { layerLivePolicyTables } from "../../../adapters/nftables/live.ts";
import { makeLiveProcess } from "../../../adapters/process/live.ts";
import { assertEquals, fail } from "../../harness/assert.ts";
import { netprobeServer, probeFrom } from "../../harness/netprobe.ts";
import { run } from "../../harness/proc.ts";
import { conf, type Env, setup } from "../cni/support.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const boundMs = 20_000; // the guest is software-emulated: generous, the measured times are printed

interface PodInfo {
  readonly ns: string;
  readonly v4: string;
  readonly v6: string;
}

async function addPod(e: Env, name: string, app: string): Promise<PodInfo> {
  const pod = await Effect.runPromise(e.kube.create(PodResource, {
    metadata: {
      name,
      namespace: "default",
      labels: { app },
      annotations: {
        // eth0 (the primary interface, never policed) on kpolp; the policed ipvlan interface is the second one.
        "danm.io/interfaces": JSON.stringify([
          { clusterNetwork: "kpolp", ip: "dynamic" },
          { clusterNetwork: "kpol", ip: "dynamic", ip6: "dynamic" },
        ]),
      },
    },
    spec: { nodeName: "guest", containers: [{ name: "c" }] },
  }));
  const ns = await e.scope.netns("kpol");
  const r = await e.call({
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: `${name}${"0".repeat(30)}`,
    CNI_NETNS: e.scope.path(ns),
    CNI_IFNAME: "eth0",
    CNI_PATH: "/nonexistent",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name};K8S_POD_UID=${pod.metadata.uid}`,
  }, conf);
  assertEquals(r.code, 0, r.stdout);
  const ep = (await Effect.runPromise(e.kube.list(DanmEpResource, { namespace: "default" }))).items
    .find((x) => x.spec.Pod === name && x.spec.NetworkName === "kpol")!;
  const plain = (a?: string) => (a ?? "").split("/")[0];
  return { ns, v4: plain(ep.spec.Interface.Address), v6: plain(ep.spec.Interface.AddressIPv6) };
}

const table = (ns: string) =>
  run(["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "danm_netpol"]).catch(() => undefined);

async function untilTable(ns: string, pred: (listing: string | undefined) => boolean): Promise<number> {
  const started = performance.now();
  while (!pred(await table(ns))) {
    if (performance.now() - started > boundMs) fail(`the table in ${ns} did not change within ${boundMs} ms`);
    await sleep(50);
  }
  return performance.now() - started;
}

const policy = (name: string, spec: MultiNetworkPolicy["spec"]): MultiNetworkPolicy => ({
  metadata: { name, namespace: "default", annotations: { [PolicyForAnnotation]: "ClusterNetwork/kpol" } },
  ...(spec ? { spec } : {}),
});
const ports = [{ protocol: "TCP" as const, port: 7001 }, { protocol: "UDP" as const, port: 7002 }];
const flows = (to: PodInfo) =>
  [to.v4, to.v6].flatMap((a) => [`tcp:${a}:7001`, `udp:${a}:7002`, `tcp:${a}:7003`, `udp:${a}:7003`]);
const expect = (to: PodInfo, allowed: boolean) =>
  Object.fromEntries(flows(to).map((t) => [t, allowed && /:700[12]$/.test(t)]));

Deno.test("netpol on ipvlan (guest): default deny + allow, TCP/UDP, v4/v6; a label change; a restart repairs", async () => {
  const e = await setup({ policy: { resyncPeriod: "1 hour" } });
  const parent = `kn${e.run}`;
  const restartScope = Scope.makeUnsafe();
  try {
    await run(["ip", "link", "add", parent, "type", "dummy"]);
    await run(["ip", "link", "set", parent, "up"]);
    await Effect.runPromise(e.kube.create(ClusterNetworkResource, {
      metadata: { name: "kpolp" },
      spec: { NetworkID: "kpolp", NetworkType: "ipvlan", Options: { host_device: parent, cidr: "10.252.0.0/24" } },
    }));
    await Effect.runPromise(e.kube.create(ClusterNetworkResource, {
      metadata: { name: "kpol" },
      spec: {
        NetworkID: "kpol",
        NetworkType: "ipvlan",
        Options: { host_device: parent, cidr: "10.252.1.0/24", net6: "2001:db8:252:1::/64" },
      },
    }));
    const k = <A, E>(x: Effect.Effect<A, E>) => Effect.runPromise(x);
    await k(e.kube.create(
      MultiNetworkPolicyResource,
      policy("deny-all", {
        podSelector: {},
        policyTypes: ["Ingress", "Egress"],
      }),
    ));
    await k(e.kube.create(
      MultiNetworkPolicyResource,
      policy("server-in", {
        podSelector: { matchLabels: { app: "server" } },
        ingress: [{ from: [{ podSelector: { matchLabels: { app: "client" } } }], ports }],
      }),
    ));
    await k(e.kube.create(
      MultiNetworkPolicyResource,
      policy("client-out", {
        podSelector: { matchLabels: { app: "client" } },
        egress: [{ to: [{ podSelector: { matchLabels: { app: "server" } } }], ports }],
      }),
    ));
    const server = await addPod(e, `server-${e.run}`, "server");
    // The ADD programmed it before answering: no waiting.
    const serverAtAdd = await table(server.ns);
    assertEquals(serverAtAdd?.includes("table inet danm_netpol"), true, "server's table at its ADD");
    const client = await addPod(e, `client-${e.run}`, "client");
    const other = await addPod(e, `other-${e.run}`, "other");
    // The server's ingress follows the client's addresses (tables compared whole: the engine merges adjacent
    // addresses into CIDRs); the client's egress got the server's at its own ADD.
    await untilTable(server.ns, (l) => l !== undefined && l !== serverAtAdd);

    await using _s = await netprobeServer(server.ns, [7001, 7002, 7003]);
    await using _c = await netprobeServer(client.ns, [7001, 7002, 7003]);
    assertEquals(await probeFrom(client.ns, flows(server), 3000), expect(server, true), "client → server");
    assertEquals(await probeFrom(other.ns, flows(server), 3000), expect(server, false), "other → server");
    assertEquals(await probeFrom(server.ns, flows(client), 3000), expect(client, false), "server → client");

    const timings: Record<string, number> = {};
    const before = await table(server.ns);
    let t0 = performance.now();
    await k(e.kube.patch(PodResource, `other-${e.run}`, {
      type: "merge",
      patch: { metadata: { labels: { app: "client" } } },
    }, { namespace: "default" }));
    await untilTable(server.ns, (l) => l !== undefined && l !== before);
    timings.label_allow_ms = performance.now() - t0;
    assertEquals(await probeFrom(other.ns, flows(server), 3000), expect(server, true), "other (now client) → server");

    // A second controller over the same kernel, as after an agent restart, finds the server's table gone.
    await run(["ip", "netns", "exec", server.ns, "nft", "delete", "table", "inet", "danm_netpol"]);
    t0 = performance.now();
    await Effect.runPromise(
      makeNetpol({ nodeName: "guest", render: engineRenderer, resyncPeriod: "1 hour" }).pipe(
        Effect.provide(Layer.provideMerge(layerLivePolicyTables(), Layer.succeed(Process, makeLiveProcess()))),
        Effect.provideService(Kube, e.kube),
        Scope.provide(restartScope),
      ),
    );
    await untilTable(server.ns, (l) => l !== undefined);
    timings.restart_reprogram_ms = performance.now() - t0;
    assertEquals(await probeFrom(client.ns, flows(server), 3000), expect(server, true), "after restart: client");
    assertEquals(await probeFrom(server.ns, flows(client), 3000), expect(client, false), "after restart: server");
    console.log(`netpol convergence in the guest (ms, to the kernel): ${JSON.stringify(timings)}`);
  } finally {
    await Effect.runPromise(Scope.close(restartScope, Exit.void));
    await e.dispose();
    await run(["ip", "link", "del", parent]).catch(() => {});
  }
});
