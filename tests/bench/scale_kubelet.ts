// `deno task bench:scale --kubelet`: the burst of bench:scale on the real-node cluster (tests/harness/node: kubelet +
// containerd per node) instead of fake kubelets, for danm, Multus v4.3.0 (thin) + Whereabouts v0.9.2 and DANM v4.3.0
// in the same run. BENCH_SCALE_PODS (default 200: every pod is a pause container and a containerd shim on the shared
// machine) pods, each with the primary network and 2 secondary networks with cluster-wide IPAM (MACVLAN on ens4, a
// bridge joined across the nodes; the CIDRs of bench:scale), created at once with their node set (round-robin over
// BENCH_SCALE_NODES nodes, default 2), as bench:scale does, so the scheduler is not measured.
//
// Each system gets a cluster of its own, one after the other, with the same nodes and networks, so neither weighs on
// the other's run:
//   - danm installed with `kubectl apply -k` from its images;
//   - Multus + Whereabouts, and DANM v4.3.0, installed as their manifests install them on a node
//     (tests/bench/peers/setup.ts multusWhereaboutsOnNodes, danmGoOnNodes: binaries and configuration in each node's
//     CNI directories, their ServiceAccounts' kubeconfigs and RBAC, NADs or DANM ClusterNetworks); their in-cluster
//     processes (Whereabouts' ip-control-loop once per node, DANM's webhook) as host processes with in-cluster
//     identities: the harness builds no image for them.
// BENCH_SCALE_PEERS (default "multus,danm-go") says which peers run.
//
// Measured per system from the first pod's creation: the time until every pod's sandbox is up with its networks (its
// PodReadyToStartContainers condition), the sandbox failures kubelet reported on the way (FailedCreatePodSandBox
// Events, with their repeat counts), duplicate addresses per network and pods missing one (danm and DANM: their
// DanmEps; Multus: the network-status annotation it writes on each pod), and the API writes (the kubelets' own included). A system that
// has not attached every pod after BENCH_SCALE_TIMEOUT_S (default 900) is reported as stalled with how far it got,
// and its ratio is a lower bound. A peer that fails to install or start fails the run with the reason.
import "../../adapters/runtime/effect_without_async_context.ts";
import { Effect, Fiber, Schema, Stream } from "effect";
import { type Pod, PodResource } from "../../core/api/k8s.ts";
import { DanmEpResource } from "../../core/api/danm.ts";
import { pick, type Rest } from "../integration/api/rest.ts";
import { isolated } from "../harness/isolate.ts";
import { agentStatus, logRestarted } from "../harness/node/agents.ts";
import { pauseImage, prepareNodeBinaries } from "../harness/node/binaries.ts";
import { defaultServiceAccount, type NodeCluster, startNodeCluster } from "../harness/node/cluster.ts";
import { ensureDanmGo, ensureMultus, ensureWhereabouts } from "../harness/peers/build.ts";
import { repoRoot, sleep } from "../harness/proc.ts";
import { apiRequestCounts, writesBetween } from "./accounting.ts";
import { danmGoGroup, privateVarLog } from "../harness/peers/danm_go.ts";
import { danmGoOnNodes, multusWhereaboutsOnNodes, type PeerSetup } from "./peers/setup.ts";

const isolatedEnv = "DANM_BENCH_ISOLATED";
const log = (s: string) => console.log(`[bench:scale --kubelet] ${s}`);
const fmt = (x: number) => Math.round(x * 10) / 10;
const networks = {
  hostDevice: "ens4",
  macvlanCidr: "10.71.0.0/16",
  secondary: { bridge: "scalebr", cidr: "10.72.0.0/16" },
} as const;

/** One system's burst as kubelet and the API saw it. */
interface BurstResult {
  readonly seconds: number;
  readonly completed: number;
  readonly stalled: boolean;
  readonly failures: number;
  readonly firstFailure?: string;
  readonly apiWrites: number;
  readonly writes: Record<string, number>;
  readonly loadAverage: number;
}

/** A pod's address on one secondary network, as the system recorded it. */
interface Attachment {
  readonly pod: string;
  readonly network: string;
  readonly address: string;
}

/** Sums FailedCreatePodSandBox Events (with their repeats) in the namespace, and the first one's message. */
async function sandboxFailures(rest: Rest, namespace: string) {
  const items = pick((await rest.call("GET", `/api/v1/namespaces/${namespace}/events`)).body, "items");
  const failed = (Array.isArray(items) ? items : []) as Array<
    { reason?: string; count?: number; message?: string; series?: { count?: number }; firstTimestamp?: string }
  >;
  const sandbox = failed.filter((e) => e.reason === "FailedCreatePodSandBox")
    .sort((a, b) => (a.firstTimestamp ?? "").localeCompare(b.firstTimestamp ?? ""));
  return {
    failures: sandbox.reduce((n, e) => n + (e.series?.count ?? e.count ?? 1), 0),
    ...(sandbox[0]?.message ? { firstFailure: sandbox[0].message.slice(0, 1000) } : {}),
  };
}

/**
 * Creates `pods` pods in `namespace` with `annotations`, round-robin over the nodes, 16 requests at a time, and waits
 * for each one's PodReadyToStartContainers condition until the bound.
 */
async function burst(
  cluster: NodeCluster,
  o: {
    readonly label: string;
    readonly namespace: string;
    readonly annotations: Readonly<Record<string, string>>;
    readonly pods: number;
    readonly timeoutMs: number;
    readonly alive: () => void;
  },
): Promise<BurstResult> {
  const attached = new Map<string, number>();
  const watch = Effect.runFork(
    cluster.kube.watch(PodResource, { namespace: o.namespace }).pipe(Stream.runForEach((e) =>
      Effect.sync(() => {
        if (e._tag !== "Added" && e._tag !== "Modified") return;
        const p: Pod = e.object;
        const ready = p.status?.conditions?.some((c) => c.type === "PodReadyToStartContainers" && c.status === "True");
        if (ready && !attached.has(p.metadata.name!)) attached.set(p.metadata.name!, performance.now());
      })
    )),
  );
  try {
    await sleep(500); // the watch is established
    const before = await apiRequestCounts(cluster.rest);
    const started = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < o.pods) {
        const i = next++;
        const r = await cluster.rest.call("POST", `/api/v1/namespaces/${o.namespace}/pods`, {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: `p-${i}`, namespace: o.namespace, annotations: o.annotations },
          spec: {
            nodeName: cluster.nodes[i % cluster.nodes.length].name,
            terminationGracePeriodSeconds: 0,
            containers: [{ name: "c", image: pauseImage, imagePullPolicy: "Never" }],
          },
        });
        if (r.status !== 201) throw new Error(`creating pod p-${i}: ${JSON.stringify(r.body)}`);
      }
    }));
    let stalled = false, lastReport = started;
    while (attached.size < o.pods) {
      cluster.assertAlive();
      o.alive();
      const now = performance.now();
      if (now - started > o.timeoutMs) {
        stalled = true;
        break;
      }
      if (now - lastReport > 30_000) {
        lastReport = now;
        log(`${o.label}: ${attached.size}/${o.pods} attached after ${fmt((now - started) / 1000)}s`);
      }
      await sleep(100);
    }
    const seconds = ((stalled ? performance.now() : Math.max(...attached.values())) - started) / 1000;
    const loadAverage = Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
    await sleep(1000); // the last status patches land
    const writes = writesBetween(before, await apiRequestCounts(cluster.rest), { "POST pods": o.pods });
    return {
      seconds,
      completed: attached.size,
      stalled,
      ...await sandboxFailures(cluster.rest, o.namespace),
      apiWrites: Object.values(writes).reduce((a, n) => a + n, 0),
      writes,
      loadAverage,
    };
  } finally {
    await Fiber.interrupt(watch).pipe(Effect.runPromise);
  }
}

/** Duplicate addresses per secondary network, and pods without an address on one of them. */
export function addressCheck(
  attachments: ReadonlyArray<Attachment>,
  networkNames: ReadonlyArray<string>,
  pods: number,
): { duplicates: number; missing: number } {
  let duplicates = 0, missing = 0;
  for (const net of networkNames) {
    const on = attachments.filter((a) => a.network === net && a.address !== "" && a.address !== "none");
    const seen = new Set<string>();
    for (const a of on) {
      if (seen.has(a.address)) duplicates++;
      seen.add(a.address);
    }
    missing += pods - new Set(on.map((a) => a.pod)).size;
  }
  return { duplicates, missing };
}

const summary = (label: string, pods: number, r: BurstResult, c: { duplicates: number; missing: number }) =>
  `${label}: ${r.completed}/${pods} pods attached in ${fmt(r.seconds)}s${
    r.stalled ? " (STALLED at the bound)" : ""
  }, ${r.failures} sandbox failures${r.firstFailure ? ` (first: ${r.firstFailure})` : ""}, ${c.duplicates} duplicate ` +
  `and ${c.missing} missing secondary addresses; ${r.apiWrites} API writes (${
    Object.entries(r.writes).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v} ${k}`).join(", ")
  }); load average ${r.loadAverage}`;

/** A cluster of `nodeCount` nodes for one system, stopped after `body` (also on a signal). */
async function withCluster<A>(
  o: { readonly nodes: number; readonly pods: number; readonly deployDanm: boolean },
  body: (cluster: NodeCluster) => Promise<A>,
): Promise<A> {
  const cluster = await startNodeCluster({
    nodes: o.nodes,
    nodeBridges: [networks.secondary.bridge],
    maxPods: Math.ceil(o.pods / o.nodes) + 20,
    deployDanm: o.deployDanm,
    log,
  });
  const onSignal = () => void cluster.stop().finally(() => Deno.exit(130));
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, onSignal);
  try {
    return await body(cluster);
  } catch (e) {
    throw new Error(`${e instanceof Error ? e.message : e}\n${await cluster.logs(10)}`);
  } finally {
    for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(sig, onSignal);
    await cluster.stop();
  }
}

async function danmPhase(cluster: NodeCluster, pods: number, timeoutMs: number) {
  const namespace = "scale-danm";
  await cluster.writeCniConfig(
    "scaledn.conf",
    JSON.stringify({ cniVersion: "1.0.0", name: "scaledn", type: "bridge", bridge: networks.secondary.bridge }),
  );
  const objects = [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } },
    {
      apiVersion: "danm.io/v1",
      kind: "DanmNet",
      metadata: { name: "default", namespace },
      spec: { NetworkID: cluster.primaryNetwork, NetworkType: "bridge" },
    },
    {
      apiVersion: "danm.io/v1",
      kind: "ClusterNetwork",
      metadata: { name: "scale-mv" },
      spec: {
        NetworkID: "scalemv",
        NetworkType: "macvlan",
        Options: { host_device: networks.hostDevice, cidr: networks.macvlanCidr },
      },
    },
    {
      apiVersion: "danm.io/v1",
      kind: "ClusterNetwork",
      metadata: { name: "scale-dn" },
      spec: { NetworkID: "scaledn", NetworkType: "bridge", Options: { cidr: networks.secondary.cidr } },
    },
  ];
  await cluster.kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }));
  await defaultServiceAccount(cluster, namespace);
  const nodeInfo = JSON.parse(await cluster.kubectl(["get", "nodes", "-o", "json"])).items[0].status.nodeInfo;
  log(
    `danm: ${pods} pods, ${cluster.nodes.length} nodes, kubelet ${nodeInfo.kubeletVersion}, ${nodeInfo.containerRuntimeVersion}`,
  );
  const restartsBefore = (await agentStatus(cluster)).restarts;
  const r = await burst(cluster, {
    label: "danm",
    namespace,
    pods,
    timeoutMs,
    alive: () => {},
    annotations: {
      "danm.io/interfaces": JSON.stringify([
        { network: "default" },
        { clusterNetwork: "scale-mv", ip: "dynamic" },
        { clusterNetwork: "scale-dn", ip: "dynamic" },
      ]),
    },
  });
  const eps = (await cluster.kubeRun(cluster.kube.list(DanmEpResource, { namespace }))).items;
  const check = addressCheck(
    eps.map((e) => ({ pod: e.spec.Pod, network: e.spec.NetworkName, address: e.spec.Interface.Address ?? "" })),
    ["scale-mv", "scale-dn"],
    pods,
  );
  const agents = await agentStatus(cluster);
  const agentRestarts = agents.restarts - restartsBefore;
  if (agentRestarts) await logRestarted(cluster, agents, log);
  log(
    `${summary("danm", pods, r, check)}; ${eps.length} DanmEps; node agent restarts ${agentRestarts}${
      agentRestarts ? ` (${agents.lastEnds.join("; ")})` : ""
    }`,
  );
  return {
    seconds: r.seconds,
    fields: {
      kubelet: nodeInfo.kubeletVersion as string,
      runtime: nodeInfo.containerRuntimeVersion as string,
      danm_s: fmt(r.seconds),
      danm_completed: r.completed,
      danm_stalled: r.stalled,
      danm_failures: r.failures,
      ...(r.firstFailure ? { danm_first_failure: r.firstFailure } : {}),
      danm_duplicates: check.duplicates,
      danm_missing: check.missing,
      danm_api_writes: r.apiWrites,
      danm_agent_restarts: agentRestarts,
      ...(agentRestarts ? { danm_agent_last_ends: agents.lastEnds } : {}),
      danm_load_average: r.loadAverage,
    },
  };
}

/** Multus' `k8s.v1.cni.cncf.io/network-status` pod annotation: each attachment with its addresses. */
const NetworkStatus = Schema.fromJsonString(Schema.Array(Schema.Struct({
  name: Schema.String,
  ips: Schema.optionalKey(Schema.Array(Schema.String)),
})));
const decodeNetworkStatus = Schema.decodeUnknownSync(NetworkStatus);

/** DANM v4.3.0's DanmEps (group danm.k8s.io), as far as the address check reads them. */
const DanmGoEps = Schema.Struct({
  items: Schema.Array(Schema.Struct({
    spec: Schema.Struct({
      Pod: Schema.String,
      NetworkName: Schema.String,
      Interface: Schema.Struct({ Address: Schema.optionalKey(Schema.String) }),
    }),
  })),
});
const decodeDanmGoEps = Schema.decodeUnknownSync(DanmGoEps);

/** A peer on the real nodes: how it is installed, and where its pods' addresses are recorded. */
interface KubeletPeer {
  /** The JSON keys' prefix. */
  readonly key: "multus_whereabouts" | "danm_go";
  /** Before the cluster starts (the nodes copy this process's mounts). */
  readonly beforeCluster?: () => Promise<void>;
  readonly install: (c: NodeCluster, namespace: string) => Promise<Omit<PeerSetup, "binDir" | "netconf">>;
  readonly networks: (namespace: string) => ReadonlyArray<string>;
  readonly attachments: (c: NodeCluster, namespace: string) => Promise<Attachment[]>;
}

const kubeletPeers: Record<string, KubeletPeer> = {
  multus: {
    key: "multus_whereabouts",
    install: (c, namespace) => multusWhereaboutsOnNodes(c, networks, namespace),
    networks: (namespace) => [`${namespace}/mv`, `${namespace}/dn`],
    attachments: async (c, namespace) =>
      (await c.kubeRun(c.kube.list(PodResource, { namespace }))).items.flatMap((p) => {
        const status = p.metadata.annotations?.["k8s.v1.cni.cncf.io/network-status"];
        return status === undefined
          ? []
          : decodeNetworkStatus(status).flatMap((s) =>
            (s.ips ?? []).map((address) => ({ pod: p.metadata.name!, network: s.name, address }))
          );
      }),
  },
  "danm-go": {
    key: "danm_go",
    beforeCluster: privateVarLog,
    install: (c, namespace) => danmGoOnNodes(c, networks, namespace),
    networks: () => ["mv", "dn"],
    attachments: async (c, namespace) => {
      const r = await c.rest.call("GET", `/apis/${danmGoGroup}/v1/namespaces/${namespace}/danmeps`);
      return decodeDanmGoEps(r.body).items.map((e) => ({
        pod: e.spec.Pod,
        network: e.spec.NetworkName,
        address: e.spec.Interface.Address ?? "",
      }));
    },
  },
};

async function peerPhase(cluster: NodeCluster, peer: KubeletPeer, pods: number, timeoutMs: number) {
  const namespace = `scale-${peer.key.replace("_", "-")}`;
  const setup = await peer.install(cluster, namespace);
  try {
    await defaultServiceAccount(cluster, namespace);
    log(`${setup.label}: installed on ${cluster.nodes.length} nodes; ${pods} pods`);
    const r = await burst(cluster, {
      label: setup.label,
      namespace,
      pods,
      timeoutMs,
      annotations: setup.annotations,
      alive: () => {
        const dead = setup.processes().filter((p) => p.exited());
        if (dead.length) throw new Error(`exited: ${dead.map((p) => `${p.name} (${p.logFile})`).join(", ")}`);
      },
    });
    const check = addressCheck(await peer.attachments(cluster, namespace), peer.networks(namespace), pods);
    log(summary(setup.label, pods, r, check));
    return { label: setup.label, r, check };
  } catch (e) {
    throw new Error(`${setup.label}: ${e instanceof Error ? e.message : e}\n${await setup.logs()}`);
  } finally {
    await setup.stop();
  }
}

/** A peer's figures in the JSON line; ratio = peer time / danm time, a lower bound when the peer stalled. */
const peerFields = (key: string, p: Awaited<ReturnType<typeof peerPhase>>, danmSeconds: number) => ({
  [`${key}_s`]: fmt(p.r.seconds),
  [`${key}_completed`]: p.r.completed,
  [`${key}_stalled`]: p.r.stalled,
  [`${key}_failures`]: p.r.failures,
  ...(p.r.firstFailure ? { [`${key}_first_failure`]: p.r.firstFailure } : {}),
  [`${key}_duplicates`]: p.check.duplicates,
  [`${key}_missing`]: p.check.missing,
  [`${key}_api_writes`]: p.r.apiWrites,
  [`${key}_load_average`]: p.r.loadAverage,
  [`ratio_${key}`]: fmt(p.r.seconds / danmSeconds),
});

/** Runs the bench; returns the process's exit code. */
export async function scaleOnKubelet(): Promise<number> {
  const peers = new Set((Deno.env.get("BENCH_SCALE_PEERS") ?? "multus,danm-go").split(",").filter((x) => x));
  if (!Deno.env.get(isolatedEnv)) {
    await prepareNodeBinaries(log);
    // Built (or found in the cache) before the run moves into its private network namespace.
    if (peers.has("multus")) log(`peers: ${(await ensureWhereabouts()).dir}, ${(await ensureMultus()).dir}`);
    if (peers.has("danm-go")) log(`peers: ${(await ensureDanmGo()).dir}`);
  }
  const outside = await isolated(isolatedEnv, `${repoRoot}/tests/bench/scale_bench.ts`, ["--kubelet"]);
  if (outside !== undefined) return outside;

  const pods = Number(Deno.env.get("BENCH_SCALE_PODS") ?? 200);
  const nodes = Number(Deno.env.get("BENCH_SCALE_NODES") ?? 2);
  const timeoutMs = Number(Deno.env.get("BENCH_SCALE_TIMEOUT_S") ?? 900) * 1000;
  try {
    const danm = await withCluster({ nodes, pods, deployDanm: true }, (c) => danmPhase(c, pods, timeoutMs));
    const fields: Record<string, unknown> = {};
    for (const [name, peer] of Object.entries(kubeletPeers)) {
      if (!peers.has(name)) {
        fields[peer.key] = "not run (BENCH_SCALE_PEERS)";
        continue;
      }
      await peer.beforeCluster?.();
      const p = await withCluster({ nodes, pods, deployDanm: false }, (c) => peerPhase(c, peer, pods, timeoutMs));
      log(
        `${p.label} took ${fmt(p.r.seconds / danm.seconds)}× danm's time${
          p.r.stalled ? " (at least: it stalled)" : ""
        }`,
      );
      Object.assign(fields, peerFields(peer.key, p, danm.seconds));
    }
    console.log(JSON.stringify({
      bench: "scale",
      mode: "kubelet",
      pods,
      nodes,
      networks_per_pod: 2,
      bound_s: timeoutMs / 1000,
      ...danm.fields,
      ...fields,
    }));
    return 0;
  } catch (e) {
    console.error(`bench:scale --kubelet failed: ${e instanceof Error ? e.message : e}`);
    return 1;
  }
}
