// The simulation as an image ships it: cmd/, core/, adapters/ and k8s/ without tests/. The in-memory sim runs; the
// real mode, which runs on the repository's test harness, says what is missing instead of failing on an import.
import { assert, assertEquals } from "../../harness/assert.ts";
import { moduleGraph } from "../../harness/modules.ts";
import { repoRoot } from "../../harness/proc.ts";
import { loadRealHarness, RealHarnessMissing, realHarnessModule } from "../../../adapters/sim/real.ts";

Deno.test("sim: cmd/sim.ts's module graph holds nothing of tests/", () => {
  const graph = moduleGraph("cmd/sim.ts");
  assert(graph.includes("adapters/sim/real.ts"), "the real mode's composition is part of the graph");
  assertEquals(graph.filter((m) => m.startsWith("tests/")), []);
});

Deno.test("sim: the real mode finds the harness in a checkout, and names what is missing without it", async () => {
  const harness = await loadRealHarness();
  assert(!(harness instanceof RealHarnessMissing), "the checkout's tests/harness/simreal.ts loads");
  assertEquals([typeof harness.isolate, typeof harness.start], ["function", "function"]);
  const gone = new URL("./nowhere/simreal.ts", realHarnessModule);
  const missing = await loadRealHarness(gone);
  assert(missing instanceof RealHarnessMissing, "no module, no harness");
  assert(missing.message.includes(gone.pathname), missing.message);
});

Deno.test("sim: a tree without tests/ runs the in-memory sim, and `--real` exits 2 naming the missing harness", async () => {
  const dir = await Deno.makeTempDir({ prefix: "danm-sim-shipped-" });
  try {
    for (const entry of ["cmd", "core", "adapters", "k8s", "deno.json", "deno.lock"]) {
      const cp = await new Deno.Command("cp", { args: ["-r", `${repoRoot}/${entry}`, `${dir}/`] }).output();
      assertEquals(cp.code, 0, new TextDecoder().decode(cp.stderr));
    }
    const sim = (...args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", `${dir}/cmd/sim.ts`, ...args],
        cwd: dir,
        stdin: "null",
      }).output();
    const memory = await sim("-o", "json");
    assertEquals(memory.code, 0, new TextDecoder().decode(memory.stderr));
    assertEquals(JSON.parse(new TextDecoder().decode(memory.stdout)).pods.length, 5);
    const real = await sim("--real");
    const err = new TextDecoder().decode(real.stderr);
    assertEquals(real.code, 2, err);
    assert(err.includes(`${dir}/tests/harness/simreal.ts`) && err.includes("checkout"), err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
