// deno task bench:netpol — what MultiNetworkPolicy enforcement costs, each figure against a baseline of the same run.
//
//   throughput  iperf3 across three veth pairs (two netns each, same host): unpoliced, connection tracking only
//               (`ct state established,related accept` — what any stateful firewall pays), and the engine's ruleset
//               for `--policies` policies on both pods, the traffic allowed by the last rule. Short rounds, each
//               running the three in a rotating order and moving them to the next pair, iperf3's client and server
//               pinned to the same CPUs in every run (see netpol/throughput.ts). throughput_ratio = the median per-round ratio engine /
//               unpoliced of bulk TCP, real connections' packet path. Target ≥ 0.9. Also: throughput_ratio_ct_only
//               (ct-only / unpoliced), engine_over_ct_ratio (engine / ct-only), cpu_ratio (the same comparison from
//               CPU time per byte), each run's other load on the machine and the ratios over the quiet rounds;
//               udp, never-established datagrams that each walk the whole chain — the worst case, but the received
//               rate is bound by iperf3's receiver (it drops most datagrams at full rate), so it is noisy.
//
//   convergence `--pods` pods with real netns over `--nodes` nodes, `--policies` MultiNetworkPolicies on a real
//               apiserver, one policy controller per node as the node agent runs it; `--changes` pod changes one at
//               a time (label flip, policy edit, pod added, pod deleted): time from the API write until nft has
//               returned with the predicted ruleset on every affected pod (see netpol/converge.ts).
//               converge_p50_ms / converge_p99_ms; target p99 ≤ 1 s. Baseline: the write → the bench's own watch.
//
//   deno task bench:netpol [-- --pods N] [--policies P] [--nodes K] [--changes C] [--rounds N] [--seconds S]
//                           [--pin split|same|none] [--only throughput|convergence] [--patch-with nft|netlink] [--quick]
//
// --pin: split (default) runs every iperf3 client on CPU 0 and its server on CPU 1; same puts both on CPU 0.
// --only: one part; the other's JSON figures are null.
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
import { measureThroughput, quietCpus, type ShapeSummary, summarize } from "./netpol/throughput.ts";

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
    pin: { type: "string", default: "split" },
    only: { type: "string" },
    "patch-with": { type: "string" },
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
const oneOf = <T extends string>(name: string, v: string | undefined, allowed: ReadonlyArray<T>): T | undefined => {
  if (v === undefined || allowed.includes(v as T)) return v as T | undefined;
  console.error(`bench:netpol: --${name} must be one of ${allowed.join(", ")}, got ${v}`);
  Deno.exit(2);
};
const quick = values.quick;
const rounds = positive("rounds", values.rounds, quick ? 1 : 12);
const seconds = positive("seconds", values.seconds, quick ? 1 : 2);
const pinMode = oneOf("pin", values.pin, ["split", "same", "none"] as const);
const pin = pinMode === "split" ? [0, 1] as const : pinMode === "same" ? [0, 0] as const : undefined;
const only = oneOf("only", values.only, ["throughput", "convergence"] as const);
// How the agents' set-element patches reach the kernel (adapters/nftables/live.ts; the agent's default is nft).
const patchWith = oneOf("patch-with", values["patch-with"], ["nft", "netlink"] as const) ?? "netlink"; // the agent's default (adapters/nftables/live.ts)
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
const load: number[][] = [loadavg()];

// ---- Per-packet cost ------------------------------------------------------------------------------------------
const measureTput = async () => {
  log(
    `throughput: ${rounds} round(s) of ${seconds} s per pair and shape (unpoliced, ct-only, engine with ${policies} ` +
      `policies), iperf3 ${pin ? `client on CPU ${pin[0]}, server on CPU ${pin[1]}` : "not pinned"}`,
  );
  const tput = await measureThroughput({ rounds, seconds, pin, rulesets: pairRulesets(policies), prefix, log });
  load.push(loadavg());
  const tcp = summarize(tput.tcp), udp = summarize(tput.udp);
  const show = (s: ShapeSummary["ratio"]) => `${s.median} (quartiles ${s.p25}–${s.p75}, rounds ${s.min}–${s.max})`;
  for (const [shape, s] of [["tcp", tcp], ["udp", udp]] as const) {
    log(`${shape}: Gbit/s (medians) unpoliced ${s.gbit.unpoliced}, ct-only ${s.gbit.ct_only}, engine ${s.gbit.engine}`);
    const b = s.bytes_per_packet;
    log(`${shape}: bytes per packet sent (medians) unpoliced ${b.unpoliced}, ct-only ${b.ct_only}, engine ${b.engine}`);
    log(`${shape}: engine / unpoliced ${show(s.ratio)}`);
    log(`${shape}: ct-only / unpoliced ${show(s.ratio_ct_only)}`);
    log(`${shape}: engine / ct-only ${show(s.engine_over_ct)}`);
    if (s.cpu) {
      const c = s.cpu.s_per_gb;
      log(`${shape}: CPU-s per GB (medians) unpoliced ${c.unpoliced}, ct-only ${c.ct_only}, engine ${c.engine}`);
      log(`${shape}: by CPU per byte: engine ${show(s.cpu.ratio)}, ct-only ${show(s.cpu.ratio_ct_only)}`);
      log(`${shape}: by CPU per byte: engine / ct-only ${show(s.cpu.engine_over_ct)}`);
    }
    if (s.quiet) {
      const q = s.quiet, showOr = (x: typeof q.ratio) => x ? show(x) : "–";
      log(`${shape}: ${q.rounds} of ${rounds} round(s) quiet (other load < ${quietCpus} CPUs in all three runs):`);
      log(`${shape}:   engine / unpoliced ${showOr(q.ratio)}, ct-only / unpoliced ${showOr(q.ratio_ct_only)}`);
      log(`${shape}:   engine / ct-only ${showOr(q.engine_over_ct)}`);
    }
  }
  const ratio = tcp.ratio.median;
  log(`throughput_ratio ${ratio} (target ≥ 0.9: ${ratio >= 0.9 ? "met" : "MISSED"})`);
  return { tcp, udp };
};
const tput = only === "convergence" ? undefined : await measureTput();

// ---- Convergence ----------------------------------------------------------------------------------------------
const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1))];
};
const ms = (x: number) => Math.round(x * 10) / 10;
const measureConv = async () => {
  log(`convergence: ${pods} pods, ${policies} policies, ${nodes} nodes, ${changes} changes`);
  const conv = await measureConvergence({
    size: { pods, policies, nodes, prefix, namespaces: quick ? 2 : 10, apps: quick ? 3 : 20 },
    changes,
    timeoutMs: quick ? 30_000 : 120_000,
    patchWith,
    log,
  });
  load.push(loadavg());
  const converge = conv.changes.map((c) => c.convergeMs), floor = conv.changes.map((c) => c.floorMs);
  const byKind = (kind: ChangeResult["kind"]) => {
    const of = conv.changes.filter((c) => c.kind === kind);
    return {
      changes: of.length,
      p50_ms: ms(percentile(of.map((c) => c.convergeMs), 50)),
      max_ms: ms(Math.max(...of.map((c) => c.convergeMs))),
      affected_max: Math.max(...of.map((c) => c.affected)),
      nft_ms_p50: ms(percentile(of.map((c) => c.nftMs), 50)),
      patched_max: Math.max(...of.map((c) => c.patched)),
    };
  };
  const p50 = ms(percentile(converge, 50)), p99 = ms(percentile(converge, 99));
  const timeouts = conv.changes.filter((c) => c.timedOut).length;
  log(`change → rules converged on every affected pod: p50 ${p50} ms, p99 ${p99} ms (timeouts ${timeouts})`);
  log(`baseline (write → own watch event): p50 ${ms(percentile(floor, 50))} ms, p99 ${ms(percentile(floor, 99))} ms`);
  log(`target p99 ≤ 1000 ms: ${p99 <= 1000 && timeouts === 0 ? "met" : "MISSED"}`);
  log(`kernel read-back: ${conv.kernelChecks} checked, ${conv.kernelMismatches} differing from the predicted ruleset`);
  return {
    ok: timeouts === 0 && conv.kernelMismatches === 0,
    figures: {
      converge_p50_ms: p50,
      converge_p99_ms: p99,
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
    },
  };
};
const conv = only === "throughput" ? undefined : await measureConv();

const leftovers = [...Deno.readDirSync("/run/netns")].length;
if (leftovers) log(`namespaces left behind: ${leftovers}`);
log(`load average during the run: ${load.map((l) => l.join(" ")).join(" → ")}`);
console.log(JSON.stringify({
  patch_with: patchWith,
  bench: "netpol",
  pods,
  policies,
  nodes,
  converge_p50_ms: conv?.figures.converge_p50_ms ?? null,
  converge_p99_ms: conv?.figures.converge_p99_ms ?? null,
  throughput_ratio: tput?.tcp.ratio.median ?? null,
  throughput_ratio_ct_only: tput?.tcp.ratio_ct_only.median ?? null,
  engine_over_ct_ratio: tput?.tcp.engine_over_ct.median ?? null,
  cpu_ratio: tput?.tcp.cpu?.ratio.median ?? null,
  cpu_ratio_ct_only: tput?.tcp.cpu?.ratio_ct_only.median ?? null,
  throughput_quiet_rounds: tput?.tcp.quiet?.rounds ?? null,
  throughput_ratio_quiet: tput?.tcp.quiet?.ratio?.median ?? null,
  throughput_ratio_ct_only_quiet: tput?.tcp.quiet?.ratio_ct_only?.median ?? null,
  ...conv?.figures,
  throughput_rounds: rounds,
  throughput_seconds: seconds,
  throughput_pin: pinMode,
  tcp: tput?.tcp ?? null,
  udp: tput?.udp ?? null,
  load,
  leftovers,
}));
Deno.exit(leftovers === 0 && (conv?.ok ?? true) ? 0 : 1);
