// `deno task bench:cni`: pod sandbox setup through danm as a runtime does it — the fake kubelet execs the thin
// `danm` launcher, which hands the request to the node daemon (cmd/danmd.ts, its own process) over the unix
// socket — for N pods with three attachments each (generated macvlan + danm IPAM via fakeipam, a bridge conflist
// with host-local, a bridge with danm IPAM via fakeipam), then DEL of all of them. In the same run, on the same
// apiserver, the same pods (one at a time) through
//   - a plain chain of the reference plugins (bridge + host-local, one attachment), the floor;
//   - the real peers (tests/bench/peers/cni.ts): DANM v4.3.0, and Multus v4.3.0 (thin) + Whereabouts v0.9.2;
// then BENCH_CONCURRENT_PODS (default 160) pods with 16 ADDs at a time on the node, through danm and DANM v4.3.0.
// Needs root; it re-runs itself inside a private network + mount namespace and starts its own apiserver.
//
//   deno task bench:cni [-- PODS]        default 200
//
// Prints human-readable lines, then one JSON object as the last line.
import * as k8s from "@kubernetes/client-node";
import { Effect, Exit, Scope } from "effect";
import { ClusterNetworkResource } from "../../core/api/danm.ts";
import { PodResource } from "../../core/api/k8s.ts";
import type { KubeService } from "../../core/ports/kube.ts";
import { makeLiveKube } from "../../adapters/kube/live.ts";
import { startApiServer } from "../harness/apiserver.ts";
import { makeCniBin } from "../harness/cnibin.ts";
import { Fakelet, type Sandbox } from "../harness/fakelet.ts";
import { apiRequestCounts, processCpuMs, writesBetween } from "./accounting.ts";
import { type BenchNetworks, danmGoSetup, multusWhereaboutsSetup, type PeerSetup } from "./peers/setup.ts";
import { isolated } from "../harness/isolate.ts";
import { freePort, repoRoot, run } from "../harness/proc.ts";
import { bucketDelta, ensurePromTool, histogramQuantile, parseExposition, samples } from "../harness/prom.ts";
import { installDanmCrds } from "../integration/api/danm_crds.ts";
import { restClient } from "../integration/api/rest.ts";

const isolatedEnv = "DANM_BENCH_ISOLATED";
const podsArg = Deno.args.find((a) => a !== "--"); // `deno task bench:cni -- N` passes the "--" on
const pods = Number(podsArg ?? 200);
if (!Number.isInteger(pods) || pods < 1) {
  console.error(`usage: cni_bench.ts [pods ≥ 1], got ${podsArg}`);
  Deno.exit(2);
}

const concurrentPods = Number(Deno.env.get("BENCH_CONCURRENT_PODS") ?? 160);
const concurrency = 16;

// Prometheus' parser reads the daemon's /metrics; built out here, where the Go module proxy is reachable.
if (!Deno.env.get(isolatedEnv)) await ensurePromTool();
const outside = await isolated(isolatedEnv, import.meta.filename!, Deno.args).catch((e) => {
  console.error(`bench:cni: ${e instanceof Error ? e.message : e}`);
  return 1;
});
if (outside !== undefined) Deno.exit(outside);

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const fmt = (x: number) => Math.round(x * 10) / 10;

const api = await startApiServer();
const tmp = await Deno.makeTempDir({ prefix: "danm-bench-cni-" });
const kc = new k8s.KubeConfig();
kc.loadFromFile(api.kubeconfigPath);
await installDanmCrds(kc);
const scope = Scope.makeUnsafe();
const kube: KubeService = await Effect.runPromise(
  makeLiveKube({ config: { _tag: "Kubeconfig", path: api.kubeconfigPath } }).pipe(Scope.provide(scope)),
);
const k = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e);

const nodeName = "bench-node";
// Sandbox records on tmpfs, as on a node (/run): the daemon writes two per ADD.
const stateDir = `${tmp}/sandboxes`;
await Deno.mkdir(stateDir);
await run(["mount", "-t", "tmpfs", "danm-bench-state", stateDir]);
const socket = `${tmp}/danm.sock`;
const metricsPort = freePort();
const cniDir = `${tmp}/net.d`;
await Deno.mkdir(cniDir);
const daemon = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    `${repoRoot}/cmd/danmd.ts`,
    "--kubeconfig",
    api.kubeconfigPath,
    "--node-name",
    nodeName,
    "--socket",
    socket,
    "--state-dir",
    stateDir,
    "--metrics-port",
    String(metricsPort),
  ],
  stdin: "null",
  // The daemon logs every ADD with its duration; DANM_BENCH_VERBOSE=1 shows those lines.
  stdout: Deno.env.get("DANM_BENCH_VERBOSE") ? "inherit" : "null",
  stderr: "inherit",
}).spawn();
const bin = await makeCniBin({ socket });
const hostLocal = `${tmp}/host-local`;
// Parent NIC of the macvlan network: a veth pair with carrier.
await run(["ip", "link", "add", "benchp0", "type", "veth", "peer", "name", "benchq0"]);
await run(["ip", "link", "set", "benchp0", "up"]);
await run(["ip", "link", "set", "benchq0", "up"]);
await Deno.writeTextFile(
  `${cniDir}/benchbr.conflist`,
  JSON.stringify({
    cniVersion: "1.0.0",
    name: "benchbr",
    plugins: [{
      type: "bridge",
      bridge: "benchbr0",
      ipam: { type: "host-local", ranges: [[{ subnet: "10.240.0.0/16" }]], dataDir: hostLocal },
    }],
  }),
);
await Deno.writeTextFile(
  `${cniDir}/benchdn.conf`,
  JSON.stringify({ cniVersion: "1.0.0", name: "benchdn", type: "bridge", bridge: "benchbr1" }),
);
const networks = [
  {
    name: "mv",
    spec: { NetworkID: "benchmv", NetworkType: "macvlan", Options: { host_device: "benchp0", cidr: "10.241.0.0/16" } },
  },
  { name: "br", spec: { NetworkID: "benchbr", NetworkType: "bridge", Options: { container_prefix: "br" } } },
  {
    name: "dn",
    spec: { NetworkID: "benchdn", NetworkType: "bridge", Options: { container_prefix: "dn", cidr: "10.242.0.0/16" } },
  },
];
for (const n of networks) await k(kube.create(ClusterNetworkResource, { metadata: { name: n.name }, spec: n.spec }));
const annotation = JSON.stringify([
  { clusterNetwork: "mv", ip: "dynamic" },
  { clusterNetwork: "br" },
  { clusterNetwork: "dn", ip: "dynamic" },
]);

const danm = new Fakelet({
  nodeName,
  kube,
  binDir: bin.dir,
  netconf: { cniVersion: "1.1.0", name: "danm_meta_cni", type: "danm", cniDir },
});
const baseline = new Fakelet({
  nodeName,
  kube,
  binDir: bin.dir,
  netconf: {
    cniVersion: "1.0.0",
    name: "baseline",
    plugins: [{
      type: "bridge",
      bridge: "benchbr9",
      ipam: { type: "host-local", ranges: [[{ subnet: "10.243.0.0/16" }]], dataDir: hostLocal },
    }],
  },
});

// Ready when STATUS says so, as a runtime would check (caches synced, apiserver reachable).
for (let i = 0;; i++) {
  const [st] = await danm.status();
  if (st.code === 0) break;
  if (i > 600) throw new Error(`danmd not ready after 60 s: ${st.stdout}`);
  await new Promise((r) => setTimeout(r, 100));
}

const daemonCpuMs = () => processCpuMs(daemon.pid);
/** CPU of the long-running parties, to say where an ADD's machine CPU goes (the rest: process starts, kernel). */
const partyCpuMs = () => ({
  apiserver: processCpuMs(api.pids.apiserver),
  etcd: processCpuMs(api.pids.etcd),
  daemon: processCpuMs(daemon.pid),
  // Every process exec'd for an ADD, once reaped: by the runtime (this fake kubelet) danm's thin client, DANM's
  // danm, Multus' multus, and the plugins those run; by danm's daemon the delegate plugins.
  cni: processCpuMs(Deno.pid, true) - processCpuMs(Deno.pid) + processCpuMs(daemon.pid, true) -
    processCpuMs(daemon.pid),
});

const rest = restClient(kc);
/** CPU time (all processes, user + system) the machine has spent, in ms: the run is CPU-bound on small nodes. */
const machineCpuMs = () => {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return (f[0] + f[1] + f[2] + f[5] + f[6]) * 10; // user nice system irq softirq, in USER_HZ (100) ticks
};

/** The daemon's ADD histogram (every result) as Prometheus' parser reads its /metrics. */
async function daemonAddHistogram(): Promise<{ count: number; buckets: Record<string, number> }> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const adds = samples(await parseExposition(text), "danm_cni_request_duration_seconds", { command: "ADD" });
  const buckets: Record<string, number> = {};
  for (const s of adds) for (const [le, n] of Object.entries(s.buckets ?? {})) buckets[le] = (buckets[le] ?? 0) + n;
  return { count: adds.reduce((a, s) => a + (s.count ?? 0), 0), buckets };
}

interface Timings {
  add: number[];
  del: number[];
  /** Machine CPU per ADD. */
  addCpuMs: number;
  /** Per ADD: CPU of the apiserver, etcd and the daemon during the ADD calls. */
  addPartyCpuMs: { apiserver: number; etcd: number; daemon: number; cni: number };
  /** Writes the apiserver served per pod while the pods were added (the pod's own creation left out). */
  writesPerPod: Record<string, number>;
}

/** The pod object and a network namespace for its sandbox (untimed). */
async function newSandbox(namespace: string, name: string, annotations: Record<string, string>) {
  const pod = await k(kube.create(PodResource, {
    metadata: { name, namespace, annotations },
    spec: { nodeName, containers: [{ name: "c", image: "pause" }] },
  }));
  const containerId = crypto.randomUUID().replaceAll("-", "") + crypto.randomUUID().replaceAll("-", "");
  const netnsName = `b-${containerId.slice(0, 12)}`;
  await run(["ip", "netns", "add", netnsName]);
  return { ref: { namespace, name, uid: pod.metadata.uid ?? "" }, containerId, netnsName };
}

/**
 * `count` pods, their objects and namespaces made first (untimed), then ADD with `width` at a time on the node
 * (timed), then DEL (untimed). Returns the ADD latencies.
 */
async function measureConcurrent(
  label: string,
  f: Fakelet,
  prefix: string,
  annotations: Record<string, string>,
  count: number,
  width: number,
  namespace = "default",
): Promise<number[]> {
  const ready: Array<Awaited<ReturnType<typeof newSandbox>>> = [];
  for (let i = 0; i < count; i++) ready.push(await newSandbox(namespace, `${prefix}-${i}`, annotations));
  const add: number[] = [];
  const sandboxes: Sandbox[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < ready.length) {
      const { ref, containerId, netnsName } = ready[next++];
      const netns = `/run/netns/${netnsName}`;
      const out = await f.add(ref, containerId, netns);
      add.push(out.ms);
      sandboxes.push({ pod: ref, containerId, netnsName, netns, result: out.result });
    }
  }));
  for (const sb of sandboxes) {
    await f.del(sb.pod, sb.containerId, sb.netns, sb.result);
    await run(["ip", "netns", "del", sb.netnsName]);
  }
  console.log(
    `${label}: ${count} pods, ${width} ADDs at a time  ADD p50 ${fmt(percentile(add, 50))} ms  p99 ${
      fmt(percentile(add, 99))
    } ms`,
  );
  return add;
}

/** Creates the pod objects and namespaces (untimed), then ADD each pod, then DEL each pod (timed). */
async function measure(
  label: string,
  f: Fakelet,
  prefix: string,
  annotations: Record<string, string>,
  count = pods,
  namespace = "default",
): Promise<Timings> {
  const sandboxes: Array<Sandbox> = [];
  const add: number[] = [], del: number[] = [];
  let addCpu = 0;
  const party = { apiserver: 0, etcd: 0, daemon: 0, cni: 0 };
  const requests0 = await apiRequestCounts(rest);
  for (let i = 0; i < count; i++) {
    const name = `${prefix}-${i}`;
    const { ref, containerId, netnsName } = await newSandbox(namespace, name, annotations);
    const cpu = machineCpuMs(), party0 = partyCpuMs();
    const out = await f.add(ref, containerId, `/run/netns/${netnsName}`);
    addCpu += machineCpuMs() - cpu;
    const party1 = partyCpuMs();
    for (const k of ["apiserver", "etcd", "daemon", "cni"] as const) party[k] += party1[k] - party0[k];
    add.push(out.ms);
    sandboxes.push({ pod: ref, containerId, netnsName, netns: `/run/netns/${netnsName}`, result: out.result });
  }
  // The network-status patch is written after the answer: let the last one land before counting.
  await new Promise((r) => setTimeout(r, 500));
  const writes = writesBetween(requests0, await apiRequestCounts(rest), { "POST pods": count });
  const writesPerPod: Record<string, number> = {};
  for (const [key, n] of Object.entries(writes)) {
    // Rounded to a tenth: lease renewals and the like over the run are noise, not writes of an ADD.
    if (fmt(n / count) > 0) writesPerPod[key] = fmt(n / count);
  }
  for (const sb of sandboxes) {
    const outs = await f.del(sb.pod, sb.containerId, sb.netns, sb.result);
    if (outs.some((o) => o.code !== 0)) throw new Error(`${label} DEL failed: ${outs.map((o) => o.stdout).join()}`);
    del.push(outs.reduce((a, o) => a + o.ms, 0));
    await run(["ip", "netns", "del", sb.netnsName]);
  }
  console.log(
    `${label}: ${count} pods  ADD p50 ${fmt(percentile(add, 50))} ms  p99 ${fmt(percentile(add, 99))} ms  ` +
      `DEL p50 ${fmt(percentile(del, 50))} ms  p99 ${fmt(percentile(del, 99))} ms  ` +
      `machine CPU per ADD ${fmt(addCpu / count)} ms (${navigator.hardwareConcurrency} CPUs): apiserver ` +
      `${fmt(party.apiserver / count)}, etcd ${fmt(party.etcd / count)}, node daemon ${
        fmt(party.daemon / count)
      }, CNI processes ${fmt(party.cni / count)} ms; ` +
      `API writes per pod: ${Object.entries(writesPerPod).map(([k, v]) => `${v} ${k}`).join(", ") || "none"}`,
  );
  const addPartyCpuMs = {
    apiserver: party.apiserver / count,
    etcd: party.etcd / count,
    daemon: party.daemon / count,
    cni: party.cni / count,
  };
  return { add, del, addCpuMs: addCpu / count, addPartyCpuMs, writesPerPod };
}

let exitCode = 0;
try {
  // Warm-up outside the measurement: first IPBlocks, first deno start-up of the thin client.
  await measure("warm-up (danm)", danm, "warm", { "danm.io/interfaces": annotation }, 5).catch((e) => {
    throw new Error(`danm warm-up failed: ${e.message}`);
  });
  const cpu0 = daemonCpuMs();
  const scraped0 = await daemonAddHistogram();
  const d = await measure("danm, 3 attachments", danm, "danm", { "danm.io/interfaces": annotation });
  // The daemon's own account of the same ADDs, from its /metrics (the observations since the scrape before).
  const scraped = await daemonAddHistogram();
  const daemonAdds = scraped.count - scraped0.count, daemonBuckets = bucketDelta(scraped.buckets, scraped0.buckets);
  console.log(
    `danm daemon's /metrics: ${daemonAdds} ADDs, p50 ${fmt(histogramQuantile(0.5, daemonBuckets) * 1000)} ms, ` +
      `p99 ${fmt(histogramQuantile(0.99, daemonBuckets) * 1000)} ms (histogram estimates, inside the daemon)`,
  );
  const daemonCpuPerPod = (daemonCpuMs() - cpu0) / pods;
  console.log(`daemon CPU per pod (ADD + DEL): ${fmt(daemonCpuPerPod)} ms`);
  const b = await measure("reference bridge + host-local, 1 attachment", baseline, "base", {});

  // The real peers: same pods, same networks, same fake kubelet; one at a time, then 16 at a time.
  // Each its own bridges (the bridge plugin leaves them behind), same subnets.
  const nets = (prefix: string): BenchNetworks => ({
    hostDevice: "benchp0",
    primary: { bridge: `${prefix}br0`, subnet: "10.240.0.0/16" },
    macvlanCidr: "10.241.0.0/16",
    secondary: { bridge: `${prefix}br1`, cidr: "10.242.0.0/16" },
  });
  const withPeer = async <T>(
    setup: Promise<PeerSetup>,
    f: (p: PeerSetup, fakelet: Fakelet) => Promise<T>,
  ): Promise<T> => {
    const peer = await setup;
    try {
      return await f(peer, new Fakelet({ nodeName, kube, binDir: peer.binDir, netconf: peer.netconf }));
    } catch (e) {
      throw new Error(`${peer.label}: ${(e as Error).message}\n${await peer.logs()}`);
    } finally {
      await peer.stop();
    }
  };
  const [go, goConcurrent] = await withPeer(danmGoSetup(api, nets("go")), async (p, f) =>
    [
      await measure(`${p.label}, 3 attachments`, f, "go", p.annotations, pods, p.namespace),
      await measureConcurrent(p.label, f, "goc", p.annotations, concurrentPods, concurrency, p.namespace),
    ] as const);
  const mw = await withPeer(
    multusWhereaboutsSetup(api, nets("mu")),
    (p, f) => measure(`${p.label}, 3 attachments`, f, "mw", p.annotations, pods, p.namespace),
  );
  const ours = await measureConcurrent(
    "danm",
    danm,
    "conc",
    { "danm.io/interfaces": annotation },
    concurrentPods,
    concurrency,
  );
  const result = {
    pods,
    attachments_per_pod: 3,
    add_p50_ms: fmt(percentile(d.add, 50)),
    add_p99_ms: fmt(percentile(d.add, 99)),
    metrics_add_count: daemonAdds,
    daemon_add_p50_ms: fmt(histogramQuantile(0.5, daemonBuckets) * 1000),
    daemon_add_p99_ms: fmt(histogramQuantile(0.99, daemonBuckets) * 1000),
    del_p50_ms: fmt(percentile(d.del, 50)),
    del_p99_ms: fmt(percentile(d.del, 99)),
    baseline_add_p50_ms: fmt(percentile(b.add, 50)),
    baseline_add_p99_ms: fmt(percentile(b.add, 99)),
    baseline_del_p50_ms: fmt(percentile(b.del, 50)),
    ratio: fmt(percentile(d.add, 50) / percentile(b.add, 50)),
    daemon_cpu_ms_per_pod: fmt(daemonCpuPerPod),
    add_machine_cpu_ms: fmt(d.addCpuMs),
    add_apiserver_cpu_ms: fmt(d.addPartyCpuMs.apiserver),
    add_etcd_cpu_ms: fmt(d.addPartyCpuMs.etcd),
    add_daemon_cpu_ms: fmt(d.addPartyCpuMs.daemon),
    add_cni_processes_cpu_ms: fmt(d.addPartyCpuMs.cni),
    api_writes_per_pod: d.writesPerPod,
    baseline_add_machine_cpu_ms: fmt(b.addCpuMs),
    danm_go_add_p50_ms: fmt(percentile(go.add, 50)),
    danm_go_add_p99_ms: fmt(percentile(go.add, 99)),
    danm_go_del_p50_ms: fmt(percentile(go.del, 50)),
    danm_go_add_machine_cpu_ms: fmt(go.addCpuMs),
    danm_go_add_apiserver_cpu_ms: fmt(go.addPartyCpuMs.apiserver),
    danm_go_add_cni_processes_cpu_ms: fmt(go.addPartyCpuMs.cni),
    multus_add_p50_ms: fmt(percentile(mw.add, 50)),
    multus_add_p99_ms: fmt(percentile(mw.add, 99)),
    multus_del_p50_ms: fmt(percentile(mw.del, 50)),
    multus_add_machine_cpu_ms: fmt(mw.addCpuMs),
    multus_add_apiserver_cpu_ms: fmt(mw.addPartyCpuMs.apiserver),
    multus_add_cni_processes_cpu_ms: fmt(mw.addPartyCpuMs.cni),
    ratio_danm_go: fmt(percentile(go.add, 50) / percentile(d.add, 50)),
    ratio_multus: fmt(percentile(mw.add, 50) / percentile(d.add, 50)),
    concurrent_pods: concurrentPods,
    concurrent_adds_per_node: concurrency,
    concurrent_add_p50_ms: fmt(percentile(ours, 50)),
    concurrent_add_p99_ms: fmt(percentile(ours, 99)),
    danm_go_concurrent_add_p50_ms: fmt(percentile(goConcurrent, 50)),
    danm_go_concurrent_add_p99_ms: fmt(percentile(goConcurrent, 99)),
    ratio_danm_go_concurrent_p99: fmt(percentile(goConcurrent, 99) / percentile(ours, 99)),
    cpus: navigator.hardwareConcurrency,
  };
  console.log(`danm ADD p50 is ${result.ratio}× the reference chain's (3 attachments vs 1)`);
  console.log(
    `peer ADD p50 / danm ADD p50: DANM v4.3.0 ${result.ratio_danm_go}×, Multus + Whereabouts ${result.ratio_multus}×; ` +
      `at ${concurrency} ADDs at a time, DANM v4.3.0's p99 / danm's: ${result.ratio_danm_go_concurrent_p99}×`,
  );
  console.log(JSON.stringify(result));
} catch (e) {
  console.error(`bench:cni failed: ${(e as Error).message}`);
  exitCode = 1;
} finally {
  try {
    daemon.kill("SIGTERM");
  } catch { /* gone */ }
  await daemon.status;
  await Effect.runPromise(Scope.close(scope, Exit.void)).catch(() => {});
  rest.close();
  await bin.dispose();
  await api.stop();
  await Deno.remove(api.dir, { recursive: true }).catch(() => {});
  await run(["umount", stateDir]).catch(() => {});
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}
Deno.exit(exitCode);
