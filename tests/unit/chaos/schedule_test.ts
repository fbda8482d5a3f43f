// The chaos run's fault schedule (tests/chaos/faults.ts faultSchedule) is a function of the seed: the same seed gives
// the same fault kinds at the same cycles, whatever the run's timing, so `deno task chaos --seed S` repeats a run's
// faults.
import { FaultKinds, faultSchedule } from "../../chaos/faults.ts";
import { substream } from "../../chaos/rng.ts";
import { assert, assertEquals, assertNotEquals } from "../../harness/assert.ts";

const plan = (seed: number, cyclesPerFault = 20, cycles = 10_000) =>
  faultSchedule(substream(seed, 0), cyclesPerFault, cycles);

Deno.test("chaos schedule: the same seed gives the same fault kinds at the same cycles; another seed does not", () => {
  assertEquals(plan(18), plan(18));
  assertEquals(plan(20261207, 12, 300), plan(20261207, 12, 300));
  assertNotEquals(plan(18), plan(19));
  // A shorter run is the start of the longer one's schedule.
  const long = plan(7);
  assertEquals(plan(7, 20, 1_000), long.filter((f) => f.cycle < 1_000));
});

Deno.test("chaos schedule: every kind once per round, cycles increasing within ½–1½ × cycles-per-fault", () => {
  for (const seed of [1, 18, 20261207]) {
    const faults = plan(seed);
    assert(faults.length >= 450, `10,000 cycles at one fault per ~20: ${faults.length} faults`);
    for (let i = 0; i + FaultKinds.length <= faults.length; i += FaultKinds.length) {
      const round = faults.slice(i, i + FaultKinds.length).map((f) => f.kind);
      assertEquals([...round].sort(), [...FaultKinds].sort(), `round ${i / FaultKinds.length} of seed ${seed}`);
    }
    assert(faults[0].cycle >= 1 && faults[0].cycle <= 20, `first fault at ${faults[0].cycle}`);
    for (let i = 1; i < faults.length; i++) {
      const gap = faults[i].cycle - faults[i - 1].cycle;
      assert(gap >= 10 && gap <= 30, `gap ${gap} before fault ${i} of seed ${seed}`);
    }
    assert(faults.at(-1)!.cycle < 10_000);
    // Every kind ≥ 10 times: the 10,000-cycle run's target holds by construction.
    for (const kind of FaultKinds) assert(faults.filter((f) => f.kind === kind).length >= 10, kind);
  }
});

Deno.test("chaos schedule: the e2e tier's run (300 cycles, a fault per ~12, seed 18) has every kind at least twice", () => {
  const faults = plan(18, 12, 300);
  for (const kind of FaultKinds) {
    assert(faults.filter((f) => f.kind === kind).length >= 2, `${kind} in ${JSON.stringify(faults)}`);
  }
});
