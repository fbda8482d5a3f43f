// `deno task bench:node`: pods through real kubelets and containerd (tests/harness/node/cluster.ts, danm installed with
// `kubectl apply -k`). BENCH_PODS pods (default 100) as Deployments spread over BENCH_NODES nodes (default 2), each
// pod with the primary network and 2 secondary danm networks (MACVLAN on ens4, MACVLAN on a VXLAN netwatcher builds,
// both with danm's IPAM); then, in the same run, the same pods with the primary network only (the comparator: the
// same kubelet, containerd and danm, one delegate and no danm IPAM).
//
// Measured per run, from a watch on the pods: all Running (from the Deployments' creation to the last pod Running),
// pods/s, and per pod the latency from its creation (the watch's ADDED event) to its PodReadyToStartContainers
// condition (the sandbox with its network is up), p50/p99. The last line is one JSON object.
import "../../adapters/runtime/effect_without_async_context.ts";
import { Effect, Fiber, Stream } from "effect";
import { type Pod, PodResource } from "../../core/api/k8s.ts";
import { isolated } from "../harness/isolate.ts";
import { pauseImage, prepareNodeBinaries } from "../harness/node/binaries.ts";
import { agentStatus, logRestarted } from "../harness/node/agents.ts";
import { defaultServiceAccount, type NodeCluster, startNodeCluster } from "../harness/node/cluster.ts";
import { repoRoot, sleep } from "../harness/proc.ts";
import { eventually } from "../harness/eventually.ts";

const isolatedEnv = "DANM_BENCH_ISOLATED";
const pods = Number(Deno.env.get("BENCH_PODS") ?? "100");
const nodeCount = Number(Deno.env.get("BENCH_NODES") ?? "2");
const log = (s: string) => console.log(`[bench:node] ${s}`);

if (!Deno.env.get(isolatedEnv)) await prepareNodeBinaries(log);
const outside = await isolated(isolatedEnv, `${repoRoot}/tests/bench/node_bench.ts`, Deno.args, {
  BENCH_PODS: String(pods),
  BENCH_NODES: String(nodeCount),
});
if (outside !== undefined) Deno.exit(outside);

interface RunResult {
  readonly allRunningS: number;
  readonly podsPerS: number;
  readonly readyP50Ms: number;
  readonly readyP99Ms: number;
  readonly perNode: Record<string, number>;
  /** Restarts of danm's node agent during the run, and how each restarted container last ended. */
  readonly agentRestarts: number;
  readonly agentLastEnds: ReadonlyArray<string>;
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];

const condition = (p: Pod, type: string) => p.status?.conditions?.some((c) => c.type === type && c.status === "True");

/** Deployments of `total` pods in `namespace`, created at once; measured until every pod is Running. */
async function measure(c: NodeCluster, namespace: string, interfaces: string | undefined): Promise<RunResult> {
  const created = new Map<string, number>(), sandboxReady = new Map<string, number>();
  const running = new Set<string>(), nodeOf = new Map<string, string>();
  const watch = Effect.runFork(
    c.kube.watch(PodResource, { namespace }).pipe(Stream.runForEach((e) =>
      Effect.sync(() => {
        if (e._tag !== "Added" && e._tag !== "Modified") return;
        const p = e.object, uid = p.metadata.uid ?? "", now = performance.now();
        if (!created.has(uid)) created.set(uid, now);
        if (condition(p, "PodReadyToStartContainers") && !sandboxReady.has(uid)) sandboxReady.set(uid, now);
        if (p.status?.phase === "Running") running.add(uid);
        if (p.spec.nodeName) nodeOf.set(uid, p.spec.nodeName);
      })
    )),
  );
  await sleep(500); // the watch is established
  const restartsBefore = (await agentStatus(c)).restarts;
  const deployments = 4, per = Math.ceil(pods / deployments);
  const start = performance.now();
  const items = Array.from({ length: deployments }, (_, d) => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: `bench-${d}`, namespace },
    spec: {
      replicas: Math.min(per, pods - d * per),
      selector: { matchLabels: { app: `bench-${d}` } },
      template: {
        metadata: {
          labels: { app: `bench-${d}` },
          ...(interfaces ? { annotations: { "danm.io/interfaces": interfaces } } : {}),
        },
        spec: {
          terminationGracePeriodSeconds: 0,
          containers: [{ name: "app", image: pauseImage, imagePullPolicy: "Never" }],
        },
      },
    },
  }));
  await c.kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items }));
  await eventually(
    `${pods} pods Running in ${namespace}`,
    () => {
      c.assertAlive();
      return Promise.resolve(running.size >= pods ? true : undefined);
    },
    900_000,
    100,
  );
  const allRunningS = (performance.now() - start) / 1000;
  const after = await agentStatus(c);
  const restarts = after.restarts - restartsBefore;
  if (restarts) await logRestarted(c, after, log);
  await Fiber.interrupt(watch).pipe(Effect.runPromise);
  const latencies = [...sandboxReady].map(([uid, t]) => t - (created.get(uid) ?? t)).sort((a, b) => a - b);
  const perNode: Record<string, number> = {};
  for (const n of nodeOf.values()) perNode[n] = (perNode[n] ?? 0) + 1;
  // Tear the run down (not measured): every pod gone before the next run starts.
  await c.kubectl(["delete", "deployments", "--all", "-n", namespace, "--wait=true", "--timeout=600s"]);
  await eventually(
    `the pods of ${namespace} gone`,
    async () => {
      const left = (await c.kubeRun(c.kube.list(PodResource, { namespace }))).items.length;
      return left === 0 ? true : undefined;
    },
    600_000,
    1000,
  );
  return {
    allRunningS,
    podsPerS: pods / allRunningS,
    readyP50Ms: percentile(latencies, 50),
    readyP99Ms: percentile(latencies, 99),
    perNode,
    agentRestarts: restarts,
    agentLastEnds: restarts ? after.lastEnds : [],
  };
}

const cluster = await startNodeCluster({ nodes: nodeCount, maxPods: Math.ceil(pods / nodeCount) + 20, log });
// Interrupted: take the nodes down (containers and shims outlive a killed harness otherwise).
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, () => void cluster.stop().finally(() => Deno.exit(130)));
}
try {
  const ns = "bench-danm", base = "bench-primary";
  const networks = [
    // Both namespaces' pods get the primary network (the nodes' bridge) as their namespace's `default`.
    ...[ns, base].flatMap((n) => [
      { apiVersion: "v1", kind: "Namespace", metadata: { name: n } },
      {
        apiVersion: "danm.io/v1",
        kind: "DanmNet",
        metadata: { name: "default", namespace: n },
        spec: { NetworkID: cluster.primaryNetwork, NetworkType: "bridge" },
      },
    ]),
    {
      apiVersion: "danm.io/v1",
      kind: "DanmNet",
      metadata: { name: "fronthaul", namespace: ns },
      spec: {
        NetworkID: "fronthaul",
        NetworkType: "macvlan",
        Options: { host_device: "ens4", container_prefix: "fh", cidr: "10.92.0.0/16" },
      },
    },
    {
      apiVersion: "danm.io/v1",
      kind: "DanmNet",
      metadata: { name: "backhaul", namespace: ns, annotations: { "danm.io/vxlan-mode": "unicast" } },
      spec: {
        NetworkID: "backhaul",
        NetworkType: "macvlan",
        Options: { host_device: "ens3", vxlan: 800, container_prefix: "bh", cidr: "10.93.0.0/16" },
      },
    },
  ];
  await cluster.kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: networks }));
  for (const n of [ns, base]) {
    await defaultServiceAccount(cluster, n);
  }
  const nodeInfo = JSON.parse(await cluster.kubectl(["get", "nodes", "-o", "json"])).items[0].status.nodeInfo;
  log(`${pods} pods, ${nodeCount} nodes, kubelet ${nodeInfo.kubeletVersion}, ${nodeInfo.containerRuntimeVersion}`);

  const danm = await measure(
    cluster,
    ns,
    JSON.stringify([
      { network: "default", ip: "dynamic" },
      { network: "fronthaul", ip: "dynamic" },
      { network: "backhaul", ip: "dynamic" },
    ]),
  );
  log(
    `primary + 2 danm networks: all Running in ${danm.allRunningS.toFixed(1)} s (${
      danm.podsPerS.toFixed(2)
    } pods/s), ` +
      `PodReadyToStartContainers p50 ${danm.readyP50Ms.toFixed(0)} ms, p99 ${danm.readyP99Ms.toFixed(0)} ms, ` +
      `per node ${JSON.stringify(danm.perNode)}, node agent restarts ${danm.agentRestarts}` +
      (danm.agentLastEnds.length ? ` (last ended: ${danm.agentLastEnds.join("; ")})` : ""),
  );
  const primary = await measure(cluster, base, undefined);
  log(
    `primary network only:      all Running in ${primary.allRunningS.toFixed(1)} s (${
      primary.podsPerS.toFixed(2)
    } pods/s), PodReadyToStartContainers p50 ${primary.readyP50Ms.toFixed(0)} ms, p99 ${
      primary.readyP99Ms.toFixed(0)
    } ms` + (primary.agentRestarts
      ? `, node agent restarts ${primary.agentRestarts} (${primary.agentLastEnds.join("; ")})`
      : ""),
  );
  const round = (x: number, d = 2) => Number(x.toFixed(d));
  console.log(JSON.stringify({
    pods,
    nodes: nodeCount,
    secondary_networks: 2,
    all_running_s: round(danm.allRunningS),
    pods_per_s: round(danm.podsPerS),
    ready_p50_ms: round(danm.readyP50Ms, 0),
    ready_p99_ms: round(danm.readyP99Ms, 0),
    baseline_all_running_s: round(primary.allRunningS),
    baseline_pods_per_s: round(primary.podsPerS),
    baseline_ready_p50_ms: round(primary.readyP50Ms, 0),
    baseline_ready_p99_ms: round(primary.readyP99Ms, 0),
    ratio: round(danm.allRunningS / primary.allRunningS),
    agent_restarts: danm.agentRestarts + primary.agentRestarts,
    kubelet: nodeInfo.kubeletVersion,
    runtime: nodeInfo.containerRuntimeVersion,
  }));
} finally {
  await cluster.stop();
}
