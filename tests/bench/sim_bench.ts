// deno task bench:sim — `deno task sim` at cluster scale (issue #23): one Deployment whose pods attach to three
// networks (a flannel ClusterNetwork, a VXLAN ipvlan DanmNet and a VLAN macvlan DanmNet, the DanmNets with /16
// pools), at 1,000 pods over 10 nodes and 10,000 pods over 100 nodes, each run as a user runs it (`deno run
// cmd/sim.ts <scenario> -o json`, a process of its own). Every pod must come up Running with its three
// interfaces, or the bench fails.
//
//   wall        the command's wall time; `startup` is the same command on the scenario with 0 replicas (process
//               start, module load, nodes and networks), the baseline of the same run
//   pods/s      pods / (wall − startup)
//   peak RSS    the process's VmHWM (read from /proc while it runs)
//   CPU         the process's user + system time (/proc/<pid>/stat, sampled with the RSS): other work on the shared
//               machine inflates it far less than wall time, though not zero (shared caches, memory bandwidth)
//   linearity   (10k − startup) / (10 × (1k − startup)): 1.0 is linear; `linearity_cpu` the same on CPU seconds,
//               which a loaded machine distorts less than wall time
//
// Targets on the 2-core machine: 10,000 pods ≤ 60 s, linearity ≤ 1.3, peak RSS ≤ 1.5 GB. Readable lines, then one
// JSON object as the last line. BENCH_SIM_SIZES=1000:10,10000:100 chooses the runs (pods:nodes).
import { repoRoot } from "../harness/proc.ts";

const log = (s: string) => console.log(`[bench:sim] ${s}`);

/** The scenario of the issue as YAML. */
export function benchScenario(pods: number, nodes: number): string {
  const docs: string[] = [];
  for (let i = 1; i <= nodes; i++) docs.push(`apiVersion: v1\nkind: Node\nmetadata:\n  name: node-${i}`);
  docs.push(`apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench`);
  docs.push(`apiVersion: danm.io/v1
kind: ClusterNetwork
metadata:
  name: default
spec:
  NetworkID: flannel
  NetworkType: flannel`);
  docs.push(`apiVersion: danm.io/v1
kind: DanmNet
metadata:
  name: overlay
  namespace: bench
spec:
  NetworkID: overlay
  NetworkType: ipvlan
  Options:
    host_device: ens3
    vxlan: 600
    container_prefix: vx
    cidr: 10.60.0.0/16`);
  docs.push(`apiVersion: danm.io/v1
kind: DanmNet
metadata:
  name: access
  namespace: bench
spec:
  NetworkID: access
  NetworkType: macvlan
  Options:
    host_device: ens4
    vlan: 500
    container_prefix: vl
    cidr: 10.70.0.0/16`);
  docs.push(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: bench
spec:
  replicas: ${pods}
  selector:
    matchLabels:
      app: app
  template:
    metadata:
      labels:
        app: app
      annotations:
        danm.io/interfaces: |
          [{"clusterNetwork": "default"}, {"network": "overlay", "ip": "dynamic"}, {"network": "access", "ip": "dynamic"}]
    spec:
      containers:
        - name: app
          image: example/app:1.0`);
  return docs.join("\n---\n") + "\n";
}

interface Run {
  readonly pods: number;
  readonly nodes: number;
  readonly wallS: number;
  readonly rssPeakMb: number;
  readonly cpuS: number;
}

interface SimJson {
  readonly pods: ReadonlyArray<{ readonly status: string; readonly interfaces: ReadonlyArray<unknown> }>;
  readonly errors: ReadonlyArray<string>;
}

/** Runs the simulation as a process of its own; fails unless every pod is Running with its three interfaces. */
async function runSim(pods: number, nodes: number, dir: string): Promise<Run> {
  const file = `${dir}/scenario-${pods}-${nodes}.yaml`;
  await Deno.writeTextFile(file, benchScenario(pods, nodes));
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}/cmd/sim.ts`, file, "-o", "json"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let hwmKb = 0, cpuTicks = 0;
  const sample = async () => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(await Deno.readTextFile(`/proc/${child.pid}/status`));
      if (m) hwmKb = Math.max(hwmKb, Number(m[1]));
      // utime and stime, the 14th and 15th fields, counted after the parenthesised command name.
      const stat = (await Deno.readTextFile(`/proc/${child.pid}/stat`)).split(") ")[1]?.split(" ");
      if (stat) cpuTicks = Math.max(cpuTicks, Number(stat[11]) + Number(stat[12]));
    } catch { /* exited */ }
  };
  const poll = setInterval(sample, 100);
  const [out, err] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
  const status = await child.status;
  clearInterval(poll);
  const wallS = (performance.now() - started) / 1000;
  let outcome: SimJson;
  try {
    outcome = JSON.parse(out) as SimJson;
  } catch {
    throw new Error(`sim ${pods} pods: exit ${status.code}, no JSON outcome\n${err.slice(-2000)}`);
  }
  const up = outcome.pods.filter((p) => p.status === "Running" && p.interfaces.length === 3).length;
  if (!status.success || up !== pods || outcome.errors.length > 0) {
    throw new Error(
      `sim ${pods} pods: exit ${status.code}, ${up}/${pods} pods Running with 3 interfaces, errors: ${
        outcome.errors.slice(0, 5).join("; ")
      }`,
    );
  }
  // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ); the last sample misses at most the final 100 ms.
  return { pods, nodes, wallS, rssPeakMb: hwmKb / 1024, cpuS: cpuTicks / 100 };
}

const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

if (import.meta.main) {
  const sizes = (Deno.env.get("BENCH_SIM_SIZES") ?? "1000:10,10000:100").split(",").map((s) => {
    const [p, n] = s.split(":").map(Number);
    return { pods: p, nodes: n };
  });
  const dir = await Deno.makeTempDir({ prefix: "danm-bench-sim-" });
  try {
    const load = async () => (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
    log(`load average ${await load()}`);
    const base = await runSim(0, 10, dir);
    // An empty pod list is the baseline: process start, module load, nodes and networks.
    const startupS = base.wallS;
    log(`startup (0 pods, 10 nodes): ${round(startupS)} s, peak RSS ${Math.round(base.rssPeakMb)} MB`);
    const runs: Run[] = [];
    for (const { pods, nodes } of sizes) {
      const r = await runSim(pods, nodes, dir);
      runs.push(r);
      log(
        `${pods.toLocaleString("en-US")} pods over ${nodes} nodes: ${round(r.wallS)} s wall, ${
          Math.round(pods / Math.max(0.001, r.wallS - startupS))
        } pods/s, CPU ${round(r.cpuS, 1)} s, peak RSS ${Math.round(r.rssPeakMb)} MB (load ${await load()})`,
      );
    }
    const small = runs.find((r) => r.pods === 1000), large = runs.find((r) => r.pods === 10000);
    const linearity = small && large ? (large.wallS - startupS) / (10 * (small.wallS - startupS)) : undefined;
    const linearityCpu = small && large ? (large.cpuS - base.cpuS) / (10 * (small.cpuS - base.cpuS)) : undefined;
    if (linearity !== undefined && linearityCpu !== undefined) {
      log(
        `linearity (10k − startup) / (10 × (1k − startup)): ${round(linearity, 3)} wall, ${round(linearityCpu, 3)} CPU`,
      );
    }
    const targets = large && linearity !== undefined
      ? {
        pods_10k_le_60s: large.wallS <= 60,
        linearity_le_1_3: linearity <= 1.3,
        rss_le_1_5gb: large.rssPeakMb <= 1536,
      }
      : {};
    console.log(JSON.stringify({
      startup_s: round(startupS),
      ...(small
        ? {
          pods_1k_s: round(small.wallS),
          pods_per_s_1k: Math.round(1000 / (small.wallS - startupS)),
          rss_peak_mb_1k: Math.round(small.rssPeakMb),
          cpu_s_1k: round(small.cpuS, 1),
        }
        : {}),
      ...(large
        ? {
          pods_10k_s: round(large.wallS),
          pods_per_s_10k: Math.round(10000 / (large.wallS - startupS)),
          rss_peak_mb_10k: Math.round(large.rssPeakMb),
          cpu_s_10k: round(large.cpuS, 1),
        }
        : {}),
      ...(linearity !== undefined ? { linearity: round(linearity, 3) } : {}),
      ...(linearityCpu !== undefined ? { linearity_cpu: round(linearityCpu, 3) } : {}),
      targets,
      load_average: await load(),
    }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
