// A short chaos run in the suite (tests/chaos/run.ts; `deno task chaos` runs the long one): 300 pod lifecycles on
// 4 nodes of the whole stack, on an apiserver + etcd of its own (the run restarts them), with every fault kind at
// least once; afterwards nothing may be duplicated, leaked or left behind — with the pods running, and after all of
// them were deleted. The seed is fixed (DANM_CHAOS_SEED picks another) so a failure can be replayed.
import { assert, assertEquals } from "../harness/assert.ts";
import { runChaos } from "../chaos/run.ts";
import { FaultKinds } from "../chaos/faults.ts";

Deno.test({
  name: "chaos: 300 cycles on 4 nodes under every fault kind — no duplicate, no leak, nothing left behind",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const seed = Number(Deno.env.get("DANM_CHAOS_SEED") ?? "18");
    const report = await runChaos({ cycles: 300, seed, nodes: 4, cyclesPerFault: 12 });
    const { evidence, ...figures } = report;
    console.log(JSON.stringify(figures));
    assert(report.cycles >= 300, `only ${report.cycles} cycles`);
    for (const kind of FaultKinds) assert(report.faults[kind] >= 1, `fault ${kind} never happened (seed ${seed})`);
    assertEquals(
      evidence.map((v) => `${v.phase} ${v.kind}: ${v.evidence}`),
      [],
      `violations of the chaos run with seed ${seed}`,
    );
    assertEquals(report.violations, 0);
  },
});
