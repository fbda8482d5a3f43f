// A short version of each comparison with the real peers: the benches themselves (deno task bench:ipam, bench:cni,
// bench:scale) with a few pods or allocations per system, so that a broken peer build, install or bench is caught
// in CI. Only that every system did the work and the JSON carries its figures is checked: the figures themselves
// are the benches' business, not timed tests'.
import { assert, assertEquals } from "../harness/assert.ts";
import { repoRoot } from "../harness/proc.ts";

async function bench(file: string, args: ReadonlyArray<string>, env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}/tests/bench/${file}`, ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout), stderr = new TextDecoder().decode(out.stderr);
  const detail = `${stdout.slice(-3000)}\n${stderr.slice(-3000)}`;
  assertEquals(out.code, 0, `${file} exited with ${out.code}:\n${detail}`);
  const last = stdout.trim().split("\n").pop() ?? "";
  return { json: JSON.parse(last) as Record<string, unknown>, detail };
}

const positive = (json: Record<string, unknown>, keys: ReadonlyArray<string>, detail: string) => {
  for (const k of keys) assert(typeof json[k] === "number" && json[k] > 0, `${k} = ${json[k]}\n${detail}`);
};
const zero = (json: Record<string, unknown>, keys: ReadonlyArray<string>, detail: string) => {
  for (const k of keys) assertEquals(json[k], 0, `${k}\n${detail}`);
};

Deno.test("bench:ipam runs danm, the model, Whereabouts and DANM v4.3.0 on a small load", async () => {
  const { json, detail } = await bench("ipam_bench.ts", [], {
    BENCH_NODES: "2",
    BENCH_ALLOCATORS: "2",
    BENCH_WARMUP: "100",
    BENCH_FILL: "0.01",
    BENCH_BASELINE_SECONDS: "1",
    BENCH_PEER_ROUNDS: "2",
  });
  positive(json, [
    "allocs_per_s",
    "whereabouts_allocs_per_s",
    "whereabouts_p99_ms",
    "danm_go_allocs_per_s",
    "ratio_whereabouts",
    "ratio_danm_go",
    "block_writes",
  ], detail);
  zero(json, ["duplicates", "errors", "whereabouts_duplicates", "whereabouts_errors", "danm_go_duplicates"], detail);
  assertEquals(json.whereabouts_allocations, 8, detail);
  positive(json.etcd_ipblock_requests as Record<string, unknown>, ["create"], detail);
});

Deno.test("bench:cni runs danm, DANM v4.3.0 and Multus + Whereabouts on a few pods", async () => {
  const { json, detail } = await bench("cni_bench.ts", ["3"], { BENCH_CONCURRENT_PODS: "4" });
  positive(json, [
    "add_p50_ms",
    "danm_go_add_p50_ms",
    "danm_go_add_p99_ms",
    "multus_add_p50_ms",
    "multus_add_p99_ms",
    "ratio_danm_go",
    "ratio_multus",
    "concurrent_add_p99_ms",
    "danm_go_concurrent_add_p99_ms",
  ], detail);
});

Deno.test("bench:scale runs danm, DANM v4.3.0 and Multus + Whereabouts on a small burst", async () => {
  const { json, detail } = await bench("scale_bench.ts", [], {
    BENCH_SCALE_PODS: "6",
    BENCH_SCALE_NODES: "2",
    BENCH_SCALE_TIMEOUT_S: "180",
  });
  assertEquals([json.danm_completed, json.danm_go_completed, json.multus_whereabouts_completed], [6, 6, 6], detail);
  positive(json, ["danm_s", "danm_go_s", "multus_whereabouts_s", "ratio_multus_whereabouts", "ratio_danm_go"], detail);
  zero(json, [
    "danm_failures",
    "danm_duplicates",
    "danm_missing",
    "danm_go_duplicates",
    "multus_whereabouts_duplicates",
  ], detail);
});
