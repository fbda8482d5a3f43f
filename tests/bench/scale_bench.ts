// `deno task bench:scale`: a burst of pods on a cluster, for danm and for each real peer in the same run on the same
// apiserver. BENCH_SCALE_PODS (default 1,000) pods, each with a primary attachment (bridge + host-local, node-local)
// and 2 secondary networks with cluster-wide IPAM (MACVLAN on ens4, a bridge joined across the nodes; same CIDRs
// for every system), spread over BENCH_SCALE_NODES (default 10) network-namespace nodes. Each node runs the same
// fake kubelet process (tests/harness/fakelet.ts via stack.ts), which sets sandboxes up in parallel as kubelet's
// pod workers do, at most BENCH_SCALE_PARALLEL (default 16) at a time per node, the same for every system — kubelet
// has no such bound (a pod worker per pod); 16 per node is already 160 sandboxes at once on two shared cores — and
// retries a failed sandbox with backoff until the bound, as kubelet does.
//
//   - danm: the whole stack (tests/harness/stack.ts): webhook, svcwatcher, a node agent per node;
//   - DANM v4.3.0: its CNI and webhook as its manifests install them (tests/harness/peers/danm_go.ts);
//   - Multus v4.3.0 (thin) + Whereabouts v0.9.2, with Whereabouts' ip-control-loop per node.
//
// Measured per system, from the first pod's creation: the time until every pod is attached (its sandbox set up and
// reported Running), the sandbox failures on the way (FailedCreatePodSandBox), duplicate addresses per network (as
// the pods' namespaces hold them), and the API writes and stored objects it made. A system that has not attached
// every pod after BENCH_SCALE_TIMEOUT_S (default 900) is stopped there and reported with how far it got.
// Prints readable lines, then one JSON object as the last line. Root: it re-runs itself in a private network +
// mount namespace and starts its own apiserver.
//
//   deno task bench:scale [--kubelet]    --kubelet: on the real-node cluster (real kubelet + containerd)
import { type ApiServer, startApiServer } from "../harness/apiserver.ts";
import { isolated } from "../harness/isolate.ts";
import { linkAddresses } from "../harness/netns.ts";
import { startPeerNodes } from "../harness/peers/nodes.ts";
import { adminRest } from "../harness/peers/install.ts";
import { whereaboutsNamespace } from "../harness/peers/whereabouts.ts";
import { sleep } from "../harness/proc.ts";
import { decodeFakeletEvent, type FakeletEvent, startStack } from "../harness/stack.ts";
import { pick, type Rest } from "../integration/api/rest.ts";
import { apiRequestCounts, processCpuMs, writesBetween } from "./accounting.ts";
import { type BenchNetworks, danmGoSetup, multusWhereaboutsSetup, type PeerSetup } from "./peers/setup.ts";

if (Deno.args.includes("--kubelet")) Deno.exit(await (await import("./scale_kubelet.ts")).scaleOnKubelet());
const outside = await isolated("DANM_BENCH_ISOLATED", import.meta.filename!, Deno.args).catch((e) => {
  console.error(`bench:scale: ${e instanceof Error ? e.message : e}`);
  return 1;
});
if (outside !== undefined) Deno.exit(outside);

const pods = Number(Deno.env.get("BENCH_SCALE_PODS") ?? 1000);
const nodeCount = Number(Deno.env.get("BENCH_SCALE_NODES") ?? 10);
const parallel = Number(Deno.env.get("BENCH_SCALE_PARALLEL") ?? 16);
const timeoutMs = Number(Deno.env.get("BENCH_SCALE_TIMEOUT_S") ?? 900) * 1000;
// Which peers run besides danm (a lock slot on a shared machine may not fit all three).
const peersToRun = new Set((Deno.env.get("BENCH_SCALE_PEERS") ?? "danm-go,multus").split(",").filter((x) => x));
// Each system gets nodes of its own: a fake kubelet takes every pod bound to its node's name, and the pods of the
// systems before it stay in the API.
const nodesOf = (system: string) => Array.from({ length: nodeCount }, (_, i) => `${system}-${i + 1}`);
// Enough attempts that only the time bound stops a system (backoff tops out at 10 s).
const tuning = { maxParallelSandboxes: parallel, sandboxAttempts: Math.ceil(timeoutMs / 10_000) + 10 };
const nets: BenchNetworks = {
  hostDevice: "ens4",
  primary: { bridge: "sprim", subnet: "10.70.0.0/16" },
  macvlanCidr: "10.71.0.0/16",
  secondary: { bridge: "scalebr", cidr: "10.72.0.0/16" },
};
const secondaryPrefixes = { macvlan: "10.71.", bridge: "10.72." } as const;
const fmt = (x: number) => Math.round(x * 10) / 10;

interface ScaleResult {
  readonly label: string;
  readonly seconds: number;
  readonly completed: number;
  readonly stalled: boolean;
  readonly failures: number;
  readonly firstFailure?: string;
  readonly duplicates: number;
  /** Attached pods missing an address on a secondary network. */
  readonly missing: number;
  readonly writes: Record<string, number>;
  readonly objects: Record<string, number>;
  /** CPU per pod of each party during the burst, in ms. */
  readonly cpuMsPerPod: Record<string, number>;
  /** The machine's 1-minute load average at the end of the burst (other work on a shared machine shows here). */
  readonly loadAverage: number;
  /** … and just before the burst: what the machine was already doing. */
  readonly loadAverageAtStart: number;
}

/** What the fake kubelets reported for one system. */
class Tracker {
  readonly attached = new Map<string, { netns: string; at: number }>();
  failures = 0;
  firstFailure: string | undefined;
  constructor(readonly namespace: string) {}
  on(e: FakeletEvent): void {
    if (!("pod" in e) || !e.pod.startsWith(`${this.namespace}/`)) return;
    if (e.event === "sandbox") this.attached.set(e.pod, { netns: e.netns, at: performance.now() });
    if (e.event === "failed") {
      this.failures++;
      this.firstFailure ??= e.message.slice(0, 300);
    }
  }
}

/** Duplicate addresses per secondary network across the attached pods, and pods missing one. */
async function addressCheck(t: Tracker): Promise<{ duplicates: number; missing: number }> {
  const seen = { macvlan: new Set<string>(), bridge: new Set<string>() };
  let duplicates = 0, missing = 0;
  for (const { netns } of t.attached.values()) {
    const addrs = (await linkAddresses(netns).catch(() => [])).flatMap((l) => l.addresses.map((a) => a.split("/")[0]));
    for (const net of ["macvlan", "bridge"] as const) {
      const mine = addrs.filter((a) => a.startsWith(secondaryPrefixes[net]));
      if (mine.length === 0) missing++;
      for (const a of mine) {
        if (seen[net].has(a)) duplicates++;
        seen[net].add(a);
      }
    }
  }
  return { duplicates, missing };
}

async function count(rest: Rest, path: string): Promise<number> {
  const items = pick((await rest.call("GET", path)).body, "items");
  return Array.isArray(items) ? items.length : 0;
}

/** Processes whose CPU counts for a party: their own, or that of the children they reaped (the CNI processes). */
type Party = ReadonlyArray<{ readonly pid: number; readonly reaped?: boolean }>;

const partyCpuMs = (parties: Readonly<Record<string, Party>>): Record<string, number> =>
  Object.fromEntries(
    Object.entries(parties).map(([name, procs]) => [
      name,
      procs.reduce((a, p) => a + (p.reaped ? processCpuMs(p.pid, true) - processCpuMs(p.pid) : processCpuMs(p.pid)), 0),
    ]),
  );

/** The control plane's parties, and the CNI processes the fake kubelets (and node daemons) exec and reap. */
const commonParties = (api: ApiServer, kubelets: ReadonlyArray<number>, daemons: ReadonlyArray<number> = []) => ({
  apiserver: [{ pid: api.pids.apiserver }],
  etcd: [{ pid: api.pids.etcd }],
  "fake kubelets": kubelets.map((pid) => ({ pid })),
  "CNI processes": [...kubelets, ...daemons].map((pid) => ({ pid, reaped: true })),
});

interface BurstOptions {
  readonly annotations: Record<string, string>;
  readonly alive: () => void;
  readonly objects: () => Promise<Record<string, number>>;
  readonly parties: Readonly<Record<string, Party>>;
}

const loadAverage1m = () => Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);

/** Creates the pods (16 POSTs at a time, round-robin over the nodes) and waits until all are attached or the bound. */
async function burst(
  label: string,
  nodeNames: ReadonlyArray<string>,
  rest: Rest,
  t: Tracker,
  { annotations, alive, objects, parties }: BurstOptions,
): Promise<ScaleResult> {
  await rest.call("POST", "/api/v1/namespaces", {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: t.namespace },
  });
  const before = await apiRequestCounts(rest);
  const loadAverageAtStart = loadAverage1m();
  const cpuBefore = partyCpuMs(parties);
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < pods) {
      const i = next++;
      const r = await rest.call("POST", `/api/v1/namespaces/${t.namespace}/pods`, {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: `p-${i}`, namespace: t.namespace, annotations },
        spec: { nodeName: nodeNames[i % nodeCount], containers: [{ name: "c", image: "pause" }] },
      });
      if (r.status !== 201) throw new Error(`${label}: creating pod p-${i}: ${JSON.stringify(r.body)}`);
    }
  }));
  let lastReport = 0, stalled = false;
  while (t.attached.size < pods) {
    alive();
    const now = performance.now();
    if (now - started > timeoutMs) {
      stalled = true;
      break;
    }
    if (now - lastReport > 30_000) {
      lastReport = now;
      console.log(
        `  ${label}: ${t.attached.size}/${pods} attached after ${fmt((now - started) / 1000)}s, ${t.failures} failures`,
      );
    }
    await sleep(100);
  }
  const cpuAfter = partyCpuMs(parties);
  const ends = [...t.attached.values()].map((a) => a.at);
  const seconds = ((stalled ? performance.now() : Math.max(...ends)) - started) / 1000;
  await sleep(1000); // the last status patches land
  const writes = writesBetween(before, await apiRequestCounts(rest), { "POST pods": pods, "POST namespaces": 1 });
  const { duplicates, missing } = await addressCheck(t);
  const result: ScaleResult = {
    label,
    seconds,
    completed: t.attached.size,
    stalled,
    failures: t.failures,
    ...(t.firstFailure ? { firstFailure: t.firstFailure } : {}),
    duplicates,
    missing,
    writes,
    objects: await objects(),
    loadAverage: loadAverage1m(),
    loadAverageAtStart,
    cpuMsPerPod: Object.fromEntries(
      Object.entries(cpuAfter).map(([k, v]) => [k, fmt((v - cpuBefore[k]) / Math.max(1, t.attached.size))]),
    ),
  };
  const total = Object.values(writes).reduce((a, n) => a + n, 0);
  console.log(
    `${label}: ${result.completed}/${pods} pods attached in ${fmt(seconds)}s${
      stalled ? ` (STALLED: stopped at the ${timeoutMs / 1000}s bound)` : ""
    }, ${result.failures} sandbox failures${result.firstFailure ? ` (first: ${result.firstFailure})` : ""}, ` +
      `${duplicates} duplicate and ${missing} missing secondary addresses; ${total} API writes (${
        Object.entries(writes).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v} ${k}`).join(", ")
      }); objects: ${
        Object.entries(result.objects).map(([k, v]) => `${v} ${k}`).join(", ")
      }; load average ${result.loadAverageAtStart} before, ${result.loadAverage} after; CPU per pod: ${
        Object.entries(result.cpuMsPerPod).map(([k, v]) => `${k} ${v} ms`).join(", ")
      }`,
  );
  return result;
}

/** Removes a finished system's pods from the API at once (no kubelet is left to run their DEL). */
async function deletePods(rest: Rest, namespace: string): Promise<void> {
  await rest.call("DELETE", `/api/v1/namespaces/${namespace}/pods?gracePeriodSeconds=0`);
}

async function danmPhase(api: ApiServer, rest: Rest): Promise<ScaleResult> {
  const t = new Tracker("scale-danm");
  const nodeNames = nodesOf("sd");
  const dataDir = await Deno.makeTempDir({ prefix: "scale-host-local-" });
  const stack = await startStack(api, {
    nodes: nodeNames,
    nodeBridges: [nets.secondary.bridge],
    cniConfigs: {
      "scaleprim.conf": JSON.stringify({
        cniVersion: "1.0.0",
        name: "scaleprim",
        type: "bridge",
        bridge: nets.primary.bridge,
        ipam: { type: "host-local", ranges: [[{ subnet: nets.primary.subnet }]], dataDir },
      }),
      "scaledn.conf": JSON.stringify({
        cniVersion: "1.0.0",
        name: "scaledn",
        type: "bridge",
        bridge: nets.secondary.bridge,
      }),
    },
    fakelet: tuning,
    // As the DaemonSet runs the agent (k8s/netwatcher): the test stack's 5 s makes netwatcher list every host link
    // (a veth per pod on the bridges) six times as often.
    agentFlags: { "reconcile-period": "30s" },
    onLog: (line) => {
      const m = /^\[fakelet-[^\]]+\] (\{.*\})$/.exec(line);
      if (!m) return;
      try {
        t.on(decodeFakeletEvent(JSON.parse(m[1])));
      } catch { /* an ordinary log line */ }
    },
  });
  try {
    const networks = [
      { name: "scale-prim", spec: { NetworkID: "scaleprim", NetworkType: "bridge", Options: {} } },
      {
        name: "scale-mv",
        spec: {
          NetworkID: "scalemv",
          NetworkType: "macvlan",
          Options: { host_device: nets.hostDevice, cidr: nets.macvlanCidr },
        },
      },
      {
        name: "scale-dn",
        spec: { NetworkID: "scaledn", NetworkType: "bridge", Options: { cidr: nets.secondary.cidr } },
      },
    ];
    const created = await stack.apply(
      networks.map((n) => ({
        apiVersion: "danm.io/v1",
        kind: "ClusterNetwork",
        metadata: { name: n.name },
        spec: n.spec,
      })),
    );
    if (created.refused.length) throw new Error(`danm networks refused: ${JSON.stringify(created.refused)}`);
    const annotation = JSON.stringify([
      { clusterNetwork: "scale-prim" },
      { clusterNetwork: "scale-mv", ip: "dynamic" },
      { clusterNetwork: "scale-dn", ip: "dynamic" },
    ]);
    const procs = stack.processes();
    const pidsOf = (prefix: string) => procs.filter((p) => p.name.startsWith(prefix)).map((p) => p.pid);
    return await burst("danm", nodeNames, rest, t, {
      annotations: { "danm.io/interfaces": annotation },
      alive: () => stack.assertAlive(),
      objects: async () => ({
        danmeps: await count(rest, `/apis/danm.io/v1/namespaces/${t.namespace}/danmeps`),
        ipblocks: await count(rest, "/apis/danm.io/v1/ipblocks"),
      }),
      parties: {
        ...commonParties(api, pidsOf("fakelet-"), pidsOf("agent-")),
        "node agents": pidsOf("agent-").map((pid) => ({ pid })),
        "webhook + svcwatcher": [...pidsOf("webhook"), ...pidsOf("svcwatcher")].map((pid) => ({ pid })),
      },
    });
  } catch (e) {
    throw new Error(`danm: ${(e as Error).message}\n${await stack.logs(10)}`);
  } finally {
    // The pods are not deleted one by one (teardown would run a thousand DELs): stop() removes namespaces and
    // processes; the apiserver objects stay, in a namespace of their own.
    await stack.stop();
    await deletePods(rest, t.namespace);
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

async function peerPhase(
  api: ApiServer,
  system: string,
  rest: Rest,
  setup: Promise<PeerSetup>,
  objects: (p: PeerSetup) => Promise<Record<string, number>>,
): Promise<ScaleResult> {
  const peer = await setup;
  const t = new Tracker(peer.namespace);
  const nodeNames = nodesOf(system);
  try {
    const nodes = await startPeerNodes(api, {
      names: nodeNames,
      nodeBridge: nets.secondary.bridge,
      binDir: peer.binDir,
      netconf: peer.netconf,
      tuning,
      onEvent: (_node, e) => t.on(e),
    });
    try {
      // Whereabouts' DaemonSet runs its ip-control-loop on every node (it looks its Node up at start).
      await Promise.all(nodeNames.map((n) => peer.whereabouts?.startControlLoop(n)));
      const alive = () => {
        nodes.assertAlive();
        const dead = peer.processes().filter((p) => p.exited());
        if (dead.length) throw new Error(`exited: ${dead.map((p) => p.name).join(", ")}`);
      };
      return await burst(peer.label, nodeNames, rest, t, {
        annotations: peer.annotations,
        alive,
        objects: () => objects(peer),
        parties: {
          ...commonParties(api, nodes.processes().map((p) => p.pid)),
          "in-cluster processes": peer.processes().map((p) => ({ pid: p.pid })),
        },
      });
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${await nodes.logs(10)}`);
    } finally {
      await nodes.stop();
      await deletePods(rest, t.namespace);
    }
  } catch (e) {
    throw new Error(`${peer.label}: ${(e as Error).message}\n${await peer.logs()}`);
  } finally {
    await peer.stop();
  }
}

/** A peer's figures in the JSON line; ratio = peer time / danm time, a lower bound when the peer stalled. */
const peerFields = (key: string, r: ScaleResult, danm: ScaleResult) => ({
  [`${key}_s`]: fmt(r.seconds),
  [`${key}_completed`]: r.completed,
  [`${key}_stalled`]: r.stalled,
  [`${key}_failures`]: r.failures,
  [`${key}_duplicates`]: r.duplicates,
  [`${key}_api_writes`]: Object.values(r.writes).reduce((a, n) => a + n, 0),
  [`${key}_objects`]: r.objects,
  [`${key}_cpu_ms_per_pod`]: r.cpuMsPerPod,
  [`${key}_load_average`]: r.loadAverage,
  [`${key}_load_average_at_start`]: r.loadAverageAtStart,
  [`ratio_${key}`]: fmt(r.seconds / danm.seconds),
});

const api = await startApiServer();
const rest = adminRest(api);
let exitCode = 0;
try {
  console.log(
    `workload: ${pods} pods × (primary + 2 secondary networks) over ${nodeCount} nodes, ` +
      `≤ ${parallel} sandboxes at a time per node, bound ${timeoutMs / 1000}s per system`,
  );
  const danm = await danmPhase(api, rest);
  const go = peersToRun.has("danm-go")
    ? await peerPhase(api, "sg", rest, danmGoSetup(api, nets), async (p) => ({
      danmeps: await count(rest, `/apis/danm.k8s.io/v1/namespaces/${p.namespace}/danmeps`),
    }))
    : undefined;
  const mw = peersToRun.has("multus")
    ? await peerPhase(api, "sm", rest, multusWhereaboutsSetup(api, nets), async () => ({
      ippools: await count(rest, `/apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/${whereaboutsNamespace}/ippools`),
      overlappingrangeipreservations: await count(
        rest,
        `/apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/${whereaboutsNamespace}/overlappingrangeipreservations`,
      ),
    }))
    : undefined;
  const writes = (r: ScaleResult) => Object.values(r.writes).reduce((a, n) => a + n, 0);
  const result = {
    bench: "scale",
    pods,
    nodes: nodeCount,
    networks_per_pod: 2,
    parallel_sandboxes_per_node: parallel,
    bound_s: timeoutMs / 1000,
    danm_s: fmt(danm.seconds),
    danm_completed: danm.completed,
    danm_failures: danm.failures,
    danm_duplicates: danm.duplicates,
    danm_missing: danm.missing,
    danm_api_writes: writes(danm),
    danm_objects: danm.objects,
    danm_cpu_ms_per_pod: danm.cpuMsPerPod,
    danm_load_average: danm.loadAverage,
    danm_load_average_at_start: danm.loadAverageAtStart,
    ...(go ? peerFields("danm_go", go, danm) : { danm_go: "not run (BENCH_SCALE_PEERS)" }),
    ...(mw ? peerFields("multus_whereabouts", mw, danm) : { multus_whereabouts: "not run (BENCH_SCALE_PEERS)" }),
  };
  for (const [label, r] of [["Multus + Whereabouts", mw], ["DANM v4.3.0", go]] as const) {
    if (r) {
      console.log(
        `bench:scale: ${label} took ${fmt(r.seconds / danm.seconds)}× danm's time${
          r.stalled ? " (at least: it stalled)" : ""
        }`,
      );
    }
  }
  console.log(JSON.stringify(result));
} catch (e) {
  console.error(`bench:scale failed: ${e instanceof Error ? e.message : e}`);
  exitCode = 1;
} finally {
  rest.close();
  await api.stop();
  await Deno.remove(api.dir, { recursive: true }).catch(() => {});
}
Deno.exit(exitCode);
