// `deno task bench:scale --kubelet` on a few pods, so the real-node mode of the bench does not rot and a broken
// install of a peer on real nodes (Multus + Whereabouts, DANM v4.3.0: binaries, CNI configuration, kubeconfigs, RBAC,
// NADs or networks, the control loops and DANM's webhook) is caught: the bench itself (its cold start and a full burst) is not part of the suite, and its
// figures are not asserted here — only that it runs to its JSON line with every pod of each system attached, each
// with one address per secondary network and none twice.
import { assertEquals } from "../harness/assert.ts";
import { repoRoot } from "../harness/proc.ts";

Deno.test("bench:scale --kubelet runs danm, Multus + Whereabouts and DANM v4.3.0 on real nodes and reports them", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}/tests/bench/scale_bench.ts`, "--kubelet"],
    env: {
      BENCH_SCALE_PODS: "6",
      BENCH_SCALE_NODES: "2",
      BENCH_SCALE_TIMEOUT_S: "300",
      BENCH_SCALE_PEERS: "multus,danm-go",
    },
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
  for (const peer of ["multus_whereabouts", "danm_go"]) {
    assertEquals(
      ["completed", "stalled", "duplicates", "missing"].map((f) => json[`${peer}_${f}`]),
      [6, false, 0, 0],
      `${peer}: ${stdout.slice(-2000)}`,
    );
    assertEquals(typeof json[`${peer}_s`], "number");
    assertEquals(typeof json[`ratio_${peer}`], "number");
  }
});
