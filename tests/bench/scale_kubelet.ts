// `deno task bench:scale --kubelet`: the burst of bench:scale on the real-node cluster (tests/harness/node: kubelet +
// containerd per node, danm installed with `kubectl apply -k` from its images) instead of fake kubelets.
// BENCH_SCALE_PODS (default 200: every pod is a pause container and a containerd shim on the shared machine) pods,
// each with the primary network and 2 secondary networks with danm's cluster-wide IPAM (MACVLAN on ens4, a bridge
// joined across the nodes; the CIDRs of bench:scale), created at once with their node set (round-robin over
// BENCH_SCALE_NODES nodes, default 2), as bench:scale does, so the scheduler is not measured.
//
// Measured from the first pod's creation: the time until every pod's sandbox is up with its networks (its
// PodReadyToStartContainers condition), the sandbox failures kubelet reported on the way (FailedCreatePodSandBox
// Events, with their repeat counts), duplicate addresses per network and pods missing one (from the DanmEps), and the
// API writes (the kubelets' own included). A run that has not attached every pod after BENCH_SCALE_TIMEOUT_S (default
// 900) is reported with how far it got. The peers (DANM v4.3.0, Multus + Whereabouts) run only under the fake
// kubelets of bench:scale: the JSON says so rather than give figures for them.
import "../../adapters/runtime/effect_without_async_context.ts";
import { Effect, Fiber, Stream } from "effect";
import { type Pod, PodResource } from "../../core/api/k8s.ts";
import { type DanmEp, DanmEpResource } from "../../core/api/danm.ts";
import { pick, type Rest } from "../integration/api/rest.ts";
import { isolated } from "../harness/isolate.ts";
import { agentStatus, logRestarted } from "../harness/node/agents.ts";
import { pauseImage, prepareNodeBinaries } from "../harness/node/binaries.ts";
import { defaultServiceAccount, startNodeCluster } from "../harness/node/cluster.ts";
import { repoRoot, sleep } from "../harness/proc.ts";
import { apiRequestCounts, writesBetween } from "./accounting.ts";

const isolatedEnv = "DANM_BENCH_ISOLATED";
const log = (s: string) => console.log(`[bench:scale --kubelet] ${s}`);
const fmt = (x: number) => Math.round(x * 10) / 10;
const namespace = "scale-danm";
const networks = { macvlan: "10.71.0.0/16", bridge: "10.72.0.0/16", bridgeName: "scalebr" } as const;

/** Sums FailedCreatePodSandBox Events (with their repeats) in the namespace, and the first one's message. */
async function sandboxFailures(rest: Rest) {
  const items = pick((await rest.call("GET", `/api/v1/namespaces/${namespace}/events`)).body, "items");
  const failed = (Array.isArray(items) ? items : []) as Array<
    { reason?: string; count?: number; message?: string; series?: { count?: number }; firstTimestamp?: string }
  >;
  const sandbox = failed.filter((e) => e.reason === "FailedCreatePodSandBox")
    .sort((a, b) => (a.firstTimestamp ?? "").localeCompare(b.firstTimestamp ?? ""));
  return {
    failures: sandbox.reduce((n, e) => n + (e.series?.count ?? e.count ?? 1), 0),
    ...(sandbox[0]?.message ? { firstFailure: sandbox[0].message.slice(0, 300) } : {}),
  };
}

/** Runs the bench; returns the process's exit code. */
export async function scaleOnKubelet(): Promise<number> {
  if (!Deno.env.get(isolatedEnv)) await prepareNodeBinaries(log);
  const outside = await isolated(isolatedEnv, `${repoRoot}/tests/bench/scale_bench.ts`, ["--kubelet"]);
  if (outside !== undefined) return outside;

  const pods = Number(Deno.env.get("BENCH_SCALE_PODS") ?? 200);
  const nodeCount = Number(Deno.env.get("BENCH_SCALE_NODES") ?? 2);
  const timeoutMs = Number(Deno.env.get("BENCH_SCALE_TIMEOUT_S") ?? 900) * 1000;
  const cluster = await startNodeCluster({
    nodes: nodeCount,
    nodeBridges: [networks.bridgeName],
    maxPods: Math.ceil(pods / nodeCount) + 20,
    log,
  });
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, () => void cluster.stop().finally(() => Deno.exit(130)));
  }
  try {
    await cluster.writeCniConfig(
      "scaledn.conf",
      JSON.stringify({ cniVersion: "1.0.0", name: "scaledn", type: "bridge", bridge: networks.bridgeName }),
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
          Options: { host_device: "ens4", cidr: networks.macvlan },
        },
      },
      {
        apiVersion: "danm.io/v1",
        kind: "ClusterNetwork",
        metadata: { name: "scale-dn" },
        spec: { NetworkID: "scaledn", NetworkType: "bridge", Options: { cidr: networks.bridge } },
      },
    ];
    await cluster.kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }));
    await defaultServiceAccount(cluster, namespace);
    const nodeInfo = JSON.parse(await cluster.kubectl(["get", "nodes", "-o", "json"])).items[0].status.nodeInfo;
    log(`${pods} pods, ${nodeCount} nodes, kubelet ${nodeInfo.kubeletVersion}, ${nodeInfo.containerRuntimeVersion}`);

    const attached = new Map<string, number>();
    const watch = Effect.runFork(
      cluster.kube.watch(PodResource, { namespace }).pipe(Stream.runForEach((e) =>
        Effect.sync(() => {
          if (e._tag !== "Added" && e._tag !== "Modified") return;
          const p: Pod = e.object;
          const ready = p.status?.conditions?.some((c) =>
            c.type === "PodReadyToStartContainers" && c.status === "True"
          );
          if (ready && !attached.has(p.metadata.name!)) attached.set(p.metadata.name!, performance.now());
        })
      )),
    );
    await sleep(500); // the watch is established
    const annotation = JSON.stringify([
      { network: "default" },
      { clusterNetwork: "scale-mv", ip: "dynamic" },
      { clusterNetwork: "scale-dn", ip: "dynamic" },
    ]);
    const restartsBefore = (await agentStatus(cluster)).restarts;
    const before = await apiRequestCounts(cluster.rest);
    const started = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < pods) {
        const i = next++;
        const r = await cluster.rest.call("POST", `/api/v1/namespaces/${namespace}/pods`, {
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: `p-${i}`, namespace, annotations: { "danm.io/interfaces": annotation } },
          spec: {
            nodeName: cluster.nodes[i % nodeCount].name,
            terminationGracePeriodSeconds: 0,
            containers: [{ name: "c", image: pauseImage, imagePullPolicy: "Never" }],
          },
        });
        if (r.status !== 201) throw new Error(`creating pod p-${i}: ${JSON.stringify(r.body)}`);
      }
    }));
    let stalled = false, lastReport = started;
    while (attached.size < pods) {
      cluster.assertAlive();
      const now = performance.now();
      if (now - started > timeoutMs) {
        stalled = true;
        break;
      }
      if (now - lastReport > 30_000) {
        lastReport = now;
        log(`${attached.size}/${pods} attached after ${fmt((now - started) / 1000)}s`);
      }
      await sleep(100);
    }
    const seconds = ((stalled ? performance.now() : Math.max(...attached.values())) - started) / 1000;
    await Fiber.interrupt(watch).pipe(Effect.runPromise);
    await sleep(1000); // the last status patches land
    const writes = writesBetween(before, await apiRequestCounts(cluster.rest), { "POST pods": pods });
    const { failures, firstFailure } = await sandboxFailures(cluster.rest);
    const eps = (await cluster.kubeRun(cluster.kube.list(DanmEpResource, { namespace }))).items;
    const { duplicates, missing } = addressCheck(eps, pods);
    const danmeps = eps.length;
    const agents = await agentStatus(cluster);
    const agentRestarts = agents.restarts - restartsBefore;
    if (agentRestarts) await logRestarted(cluster, agents, log);
    const loadAverage = Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
    const apiWrites = Object.values(writes).reduce((a, n) => a + n, 0);
    log(
      `danm: ${attached.size}/${pods} pods attached in ${fmt(seconds)}s${stalled ? " (STALLED at the bound)" : ""}, ` +
        `${failures} sandbox failures${firstFailure ? ` (first: ${firstFailure})` : ""}, ${duplicates} duplicate and ` +
        `${missing} missing secondary addresses, ${danmeps} DanmEps; ${apiWrites} API writes (${
          Object.entries(writes).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v} ${k}`).join(", ")
        }); node agent restarts ${agentRestarts}${
          agentRestarts ? ` (${agents.lastEnds.join("; ")})` : ""
        }; load average ${loadAverage}`,
    );
    console.log(JSON.stringify({
      bench: "scale",
      mode: "kubelet",
      pods,
      nodes: nodeCount,
      networks_per_pod: 2,
      bound_s: timeoutMs / 1000,
      kubelet: nodeInfo.kubeletVersion,
      runtime: nodeInfo.containerRuntimeVersion,
      danm_s: fmt(seconds),
      danm_completed: attached.size,
      danm_stalled: stalled,
      danm_failures: failures,
      ...(firstFailure ? { danm_first_failure: firstFailure } : {}),
      danm_duplicates: duplicates,
      danm_missing: missing,
      danm_api_writes: apiWrites,
      danm_agent_restarts: agentRestarts,
      ...(agentRestarts ? { danm_agent_last_ends: agents.lastEnds } : {}),
      danm_load_average: loadAverage,
      peers: "not run on the real-node cluster (only under bench:scale's fake kubelets)",
    }));
    return 0;
  } catch (e) {
    console.error(`bench:scale --kubelet failed: ${e instanceof Error ? e.message : e}\n${await cluster.logs(10)}`);
    return 1;
  } finally {
    await cluster.stop();
  }
}

/** Duplicate addresses per secondary network across the namespace's DanmEps, and pods without one on a network. */
function addressCheck(eps: ReadonlyArray<DanmEp>, pods: number) {
  let duplicates = 0, missing = 0;
  for (const net of ["scale-mv", "scale-dn"]) {
    const addressed = eps.filter((e) =>
      e.spec.NetworkName === net && (e.spec.Interface.Address ?? "") !== "" && e.spec.Interface.Address !== "none"
    );
    const seen = new Set<string>();
    for (const e of addressed) {
      if (seen.has(e.spec.Interface.Address!)) duplicates++;
      seen.add(e.spec.Interface.Address!);
    }
    missing += pods - new Set(addressed.map((e) => e.spec.Pod)).size;
  }
  return { duplicates, missing };
}
