// deno task bench:netpol — what MultiNetworkPolicy enforcement costs, each figure against a baseline of the same run.
//
//   throughput  iperf3 across a policed vs an unpoliced veth pair (two netns each, same host), the policed pods
//               carrying `--policies` policies' worth of rules and sets, the traffic allowed by the last rule;
//               alternating runs (see netpol/throughput.ts). throughput_ratio = the median per-round ratio
//               (policed / unpoliced) of bulk TCP, real connections' packet path. Target ≥ 0.9. Also reported:
//               udp.ratio, never-established datagrams that each walk the whole chain — the worst case, but the
//               received rate is bound by iperf3's receiver (it drops most datagrams at full rate), so it is noisy.
//
//   deno task bench:netpol [-- --rounds N] [--seconds S] [--policies P] [--quick]
//
// --quick is the suite's smoke run (tests/integration/bench/netpol_bench_test.ts): one short round, few policies.
// Needs root; re-runs itself inside a private network + mount namespace, so its namespaces vanish with it.
// Readable lines, then one JSON object as the last line.
import { parseArgs } from "node:util";
import { isolated } from "../harness/isolate.ts";
import { ensureAptPackages } from "../harness/prereq.ts";
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
const policies = positive("policies", values.policies, quick ? 3 : 100);

if (!Deno.env.get(isolatedEnv)) await ensureAptPackages(["ip", "unshare", "nft", "iperf3"], log);
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

const leftovers = [...Deno.readDirSync("/run/netns")].length;
if (leftovers) log(`namespaces left behind: ${leftovers}`);
log(`load average during the run: ${load.map((l) => l.join(" ")).join(" → ")}`);
console.log(JSON.stringify({
  bench: "netpol",
  policies,
  throughput_ratio: throughputRatio,
  throughput_rounds: rounds,
  throughput_seconds: seconds,
  ruleset: "renderNft",
  tcp,
  udp,
  load,
  leftovers,
}));
Deno.exit(leftovers === 0 ? 0 : 1);
