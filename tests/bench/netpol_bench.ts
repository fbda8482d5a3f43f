// deno task bench:netpol — what MultiNetworkPolicy enforcement costs, each figure against a baseline of the same run.
//
//   throughput  iperf3 across a policed vs an unpoliced veth pair (two netns each, same host), the policed pods
//               carrying `--policies` policies' worth of rules and sets, the traffic allowed by the last rule;
//               alternating runs (see netpol/throughput.ts). throughput_ratio = the median per-round ratio
//               (policed / unpoliced) of bulk TCP, real connections' packet path. Target ≥ 0.9. Also reported:
//               udp.ratio, never-established datagrams that each walk the whole chain — the worst case, but the
//               received rate is bound by iperf3's receiver (it drops most datagrams at full rate), so it is noisy.
//
//   convergence `--pods` pods with real netns over `--nodes` nodes, `--policies` MultiNetworkPolicies on a real
//               apiserver, one policy controller per node as the node agent runs it; `--changes` pod changes one at
//               a time (label flip, policy edit, pod added, pod deleted): time from the API write until nft has
//               returned with the predicted ruleset on every affected pod (see netpol/converge.ts).
//               converge_p50_ms / converge_p99_ms; target p99 ≤ 1 s. Baseline: the write → the bench's own watch.
//
//   deno task bench:netpol [-- --pods N] [--policies P] [--nodes K] [--changes C] [--rounds N] [--seconds S] [--quick]
//
// --quick is the suite's smoke run (tests/integration/bench/netpol_bench_test.ts): a few pods, a couple of policies,
// one change of each kind, one short throughput round.
// Needs root; re-runs itself inside a private network + mount namespace, so its namespaces vanish with it.
// Readable lines, then one JSON object as the last line.
import { parseArgs } from "node:util";
import { ensureK8sBinaries } from "../harness/apiserver.ts";
import { isolated } from "../harness/isolate.ts";
import { ensureAptPackages } from "../harness/prereq.ts";
import { type ChangeResult, measureConvergence } from "./netpol/converge.ts";
import { pairRulesets } from "./netpol/pairworld.ts";
import { measureThroughput, median, type ShapeResult } from "./netpol/throughput.ts";

const log = (s: string) => console.log(`[bench:netpol] ${s}`);
const isolatedEnv = "DANM_BENCH_NETPOL_ISOLATED";
const prefix = "netpolbench";

const { values } = parseArgs({
  // `deno task … -- --flag` passes the "--" through.
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    rounds: { type: "string" },
    seconds: { type: "string" },
    policies: { type: "string" },
    pods: { type: "string" },
    nodes: { type: "string" },
    changes: { type: "string" },
  },
  strict: true,
});
const positive = (name: string, v: string | undefined, dflt: number) => {
  const n = Number(v ?? dflt);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`bench:netpol: --${name} must be an integer ≥ 1, got ${v}`);
    Deno.exit(2);
  }
  return n;
};
const quick = values.quick;
const rounds = positive("rounds", values.rounds, quick ? 1 : 10);
const seconds = positive("seconds", values.seconds, quick ? 1 : 3);
const policies = positive("policies", values.policies, quick ? 2 : 100);
const pods = positive("pods", values.pods, quick ? 12 : 1000);
const nodes = positive("nodes", values.nodes, quick ? 2 : 4);
const changes = positive("changes", values.changes, quick ? 4 : 20);

if (!Deno.env.get(isolatedEnv)) {
  // Out here, where apt and the Go module proxy are reachable.
  await ensureAptPackages(["ip", "unshare", "nsenter", "nft", "iperf3", "openssl"], log);
  await ensureK8sBinaries();
}
const outside = await isolated(isolatedEnv, import.meta.filename!, Deno.args).catch((e) => {
  console.error(`bench:netpol: ${e instanceof Error ? e.message : e}`);
  return 1;
});
if (outside !== undefined) Deno.exit(outside);

const loadavg = () => Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).map(Number);
const round3 = (x: number) => Math.round(x * 1000) / 1000;
const gbit = (bps: number) => Math.round(bps / 1e7) / 100;
const load: number[][] = [loadavg()];

// ---- Per-packet cost ------------------------------------------------------------------------------------------
const rulesets = pairRulesets(policies);
log(`throughput: ${rounds} alternating round(s) of ${seconds} s per shape, ${policies} policies on both pods`);
const tput = await measureThroughput({ rounds, seconds, rulesets, prefix, log });
load.push(loadavg());
const summary = (r: ShapeResult) => ({
  ratio: round3(median(r.ratios)),
  ratio_min: round3(Math.min(...r.ratios)),
  ratio_max: round3(Math.max(...r.ratios)),
  policed_gbit: gbit(median(r.policed)),
  unpoliced_gbit: gbit(median(r.unpoliced)),
});
const tcp = summary(tput.tcp), udp = summary(tput.udp);
for (const [shape, s] of [["tcp", tcp], ["udp", udp]] as const) {
  log(
    `${shape}: policed ${s.policed_gbit} vs unpoliced ${s.unpoliced_gbit} Gbit/s (medians), ratio ${s.ratio} ` +
      `(rounds ${s.ratio_min}–${s.ratio_max})`,
  );
}
const throughputRatio = tcp.ratio;
log(`throughput_ratio ${throughputRatio} (target ≥ 0.9: ${throughputRatio >= 0.9 ? "met" : "MISSED"})`);

// ---- Convergence ----------------------------------------------------------------------------------------------
log(`convergence: ${pods} pods, ${policies} policies, ${nodes} nodes, ${changes} changes`);
const conv = await measureConvergence({
  size: { pods, policies, nodes, prefix, namespaces: quick ? 2 : 10, apps: quick ? 3 : 20 },
  changes,
  timeoutMs: quick ? 30_000 : 120_000,
  log,
});
load.push(loadavg());
const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1))];
};
const ms = (x: number) => Math.round(x * 10) / 10;
const converge = conv.changes.map((c) => c.convergeMs), floor = conv.changes.map((c) => c.floorMs);
const byKind = (kind: ChangeResult["kind"]) => {
  const of = conv.changes.filter((c) => c.kind === kind);
  return {
    changes: of.length,
    p50_ms: ms(percentile(of.map((c) => c.convergeMs), 50)),
    max_ms: ms(Math.max(...of.map((c) => c.convergeMs))),
    affected_max: Math.max(...of.map((c) => c.affected)),
    nft_ms_p50: ms(percentile(of.map((c) => c.nftMs), 50)),
  };
};
const p50 = ms(percentile(converge, 50)), p99 = ms(percentile(converge, 99));
const timeouts = conv.changes.filter((c) => c.timedOut).length;
log(`change → rules converged on every affected pod: p50 ${p50} ms, p99 ${p99} ms (timeouts ${timeouts})`);
log(`baseline (write → own watch event): p50 ${ms(percentile(floor, 50))} ms, p99 ${ms(percentile(floor, 99))} ms`);
log(`target p99 ≤ 1000 ms: ${p99 <= 1000 && timeouts === 0 ? "met" : "MISSED"}`);
log(`kernel read-back: ${conv.kernelChecks} checked, ${conv.kernelMismatches} differing from the predicted ruleset`);

const leftovers = [...Deno.readDirSync("/run/netns")].length;
if (leftovers) log(`namespaces left behind: ${leftovers}`);
log(`load average during the run: ${load.map((l) => l.join(" ")).join(" → ")}`);
console.log(JSON.stringify({
  bench: "netpol",
  pods,
  policies,
  nodes,
  converge_p50_ms: p50,
  converge_p99_ms: p99,
  throughput_ratio: throughputRatio,
  changes,
  converge_timeouts: timeouts,
  converge_max_ms: ms(Math.max(...converge)),
  affected_p50: percentile(conv.changes.map((c) => c.affected), 50),
  affected_max: Math.max(...conv.changes.map((c) => c.affected)),
  by_kind: { label: byKind("label"), policy: byKind("policy"), add: byKind("add"), delete: byKind("delete") },
  baseline_p50_ms: ms(percentile(floor, 50)),
  baseline_p99_ms: ms(percentile(floor, 99)),
  program_all_ms: ms(conv.programAllMs),
  setup_ms: ms(conv.setupMs),
  kernel_checks: conv.kernelChecks,
  kernel_mismatches: conv.kernelMismatches,
  throughput_rounds: rounds,
  throughput_seconds: seconds,
  tcp,
  udp,
  load,
  leftovers,
}));
Deno.exit(leftovers === 0 && timeouts === 0 && conv.kernelMismatches === 0 ? 0 : 1);
