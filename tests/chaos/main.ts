// `deno task chaos [--cycles N] [--seed S] [--nodes N] [--pods-per-node N] [--cycles-per-fault N]`: the chaos run
// (run.ts) as root inside a private network and mount namespace; readable lines, then one JSON object as the last
// line. Exit code 1 when any violation was found. SIGINT (Ctrl-C) ends the churn early: the settle and the checks
// still run and the report counts the cycles done.
import { parseArgs } from "node:util";
import { ensureK8sBinaries } from "../harness/apiserver.ts";
import { ensureCniPlugins } from "../harness/cniplugins.ts";
import { isolated } from "../harness/isolate.ts";
import { ensureAptPackages } from "../harness/prereq.ts";
import { repoRoot, run } from "../harness/proc.ts";
import { runChaos } from "./run.ts";

const marker = "DANM_CHAOS_ISOLATED";
const { values } = parseArgs({
  args: Deno.args,
  options: {
    cycles: { type: "string", default: "10000" },
    seed: { type: "string" },
    nodes: { type: "string", default: "10" },
    "pods-per-node": { type: "string", default: "3" },
    "cycles-per-fault": { type: "string", default: "20" },
  },
  strict: true,
});
const int = (name: string, v: string | undefined) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${name} must be a whole number, not "${v}"`);
    Deno.exit(2);
  }
  return n;
};
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : int("seed", values.seed);

if (!Deno.env.get(marker)) {
  const log = (s: string) => console.log(`[chaos] ${s}`);
  await ensureAptPackages(["ip", "openssl", "unshare", "nsenter", "ping"], log);
  log(`kube-apiserver + etcd in ${await ensureK8sBinaries()}`);
  log(`reference CNI plugins in ${await ensureCniPlugins()}`);
  await run([Deno.execPath(), "cache", `${repoRoot}/tests/chaos/main.ts`, `${repoRoot}/cmd/netwatcher.ts`]);
  // The seed is fixed here, so the isolated run prints and uses the same one.
  const args = [...Deno.args.filter((a, i, all) => a !== "--seed" && all[i - 1] !== "--seed"), "--seed", `${seed}`];
  // Ctrl-C reaches the isolated run too, which ends its churn and reports: wait for it.
  Deno.addSignalListener("SIGINT", () => {});
  Deno.exit((await isolated(marker, import.meta.filename!, args))!);
}
await isolated(marker, import.meta.filename!, Deno.args);
const stop = new AbortController();
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, () => {
    if (!stop.signal.aborted) console.log(`[chaos] ${sig}: ending the churn, then settling and checking`);
    stop.abort();
  });
}
const report = await runChaos({
  cycles: int("cycles", values.cycles),
  seed,
  nodes: int("nodes", values.nodes),
  podsPerNode: int("pods-per-node", values["pods-per-node"]),
  cyclesPerFault: int("cycles-per-fault", values["cycles-per-fault"]),
  stop: stop.signal,
});
const { evidence: _evidence, ...figures } = report;
console.log(JSON.stringify(figures));
Deno.exit(report.violations === 0 ? 0 : 1);
