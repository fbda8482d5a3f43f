// `deno task bench:scale --kubelet` on a few pods, so the real-node mode of the bench does not rot: the bench itself
// (its cold start and a full burst) is not part of the suite, and its figures are not asserted here — only that it
// runs to its JSON line with every pod attached, each with one address per secondary network and none twice.
import { assertEquals } from "../harness/assert.ts";
import { repoRoot } from "../harness/proc.ts";

Deno.test("bench:scale --kubelet runs danm's burst on real nodes and reports it", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}/tests/bench/scale_bench.ts`, "--kubelet"],
    env: { BENCH_SCALE_PODS: "6", BENCH_SCALE_NODES: "2", BENCH_SCALE_TIMEOUT_S: "300" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout), stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, `${stdout.slice(-2000)}\n${stderr.slice(-3000)}`);
  const json = JSON.parse(stdout.trim().split("\n").at(-1)!);
  assertEquals(
    [json.mode, json.pods, json.nodes, json.danm_completed, json.danm_stalled, json.danm_duplicates, json.danm_missing],
    ["kubelet", 6, 2, 6, false, 0, 0],
    stdout.slice(-2000),
  );
  assertEquals(typeof json.danm_s, "number");
  assertEquals(typeof json.danm_failures, "number");
  assertEquals(typeof json.danm_agent_restarts, "number");
  assertEquals(typeof json.peers, "string");
});
