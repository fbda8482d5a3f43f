// The simulation's progress line and Ctrl-C: what the line says, the counts runEmbedded reports as it goes, a
// stop before the next pod with the outcome of what was done, and the CLI's behaviour on SIGINT.
import { Effect, References } from "effect";
import { runEmbedded } from "../../../adapters/sim/embedded.ts";
import {
  etaMs,
  formatDuration,
  initialProgress,
  renderProgress,
  type SimProgress,
} from "../../../core/sim/progress.ts";
import { parseScenarioText } from "../../../core/sim/scenario.ts";
import { benchScenario } from "../../bench/sim_bench.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { repoRoot } from "../../harness/proc.ts";

Deno.test("sim progress: the line counts objects and pods, and gives the rate and ETA once pods have started", () => {
  const p = initialProgress(14, 10000);
  assertEquals(renderProgress(p, 800), "objects 0/14 · pods 0/10,000 attached · 0.8 s");
  const running: SimProgress = { ...p, objectsApplied: 14, podsAttached: 1230, podsFailed: 4, podsStartedMs: 1000 };
  // 1,234 pods in 10 s since the first: 123 pods/s, 8,766 to go → 71 s.
  assertEquals(etaMs(running, 11000), 8766 * 10000 / 1234);
  assertEquals(
    renderProgress(running, 11000),
    "objects 14/14 · pods 1,230/10,000 attached · 4 failed · 11.0 s · 123 pods/s · ETA 1m 11s",
  );
  assertEquals(etaMs({ ...p, podsStartedMs: 500 }, 900), undefined);
  assertEquals([formatDuration(59_940), formatDuration(65_000), formatDuration(3_725_000)], [
    "59.9 s",
    "1m 05s",
    "1h 02m",
  ]);
});

Deno.test("sim progress: runEmbedded reports every object and pod, and a stop request ends it before the next pod", async () => {
  const scenario = parseScenarioText("bench.yaml", benchScenario(12, 3));
  const seen: SimProgress[] = [];
  const outcome = await Effect.runPromise(
    Effect.scoped(runEmbedded(scenario, {
      onProgress: (p) => seen.push(p),
      stopRequested: () => (seen.at(-1)?.podsAttached ?? 0) >= 5,
    })).pipe(Effect.provideService(References.MinimumLogLevel, "Error")),
  );
  assertEquals(outcome.stopped, { podsPlanned: 12 });
  assertEquals(outcome.pods.length, 5);
  assert(outcome.pods.every((p) => p.status === "Running" && p.interfaces.length === 3), JSON.stringify(outcome.pods));
  const last = seen.at(-1)!;
  // 3 Nodes, the Namespace, the ClusterNetwork and two DanmNets.
  assertEquals([last.objectsApplied, last.objectsTotal, last.podsAttached, last.podsTotal], [7, 7, 5, 12]);
  assert(seen.every((p, i) => i === 0 || p.podsAttached >= seen[i - 1].podsAttached), "counts only grow");
  const whole = await Effect.runPromise(
    Effect.scoped(runEmbedded(scenario)).pipe(Effect.provideService(References.MinimumLogLevel, "Error")),
  );
  assertEquals([whole.stopped, whole.pods.length], [undefined, 12]);
});

Deno.test("sim CLI: --progress lines on stderr; SIGINT stops with what was done and exit code 130", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/s.yaml`;
    await Deno.writeTextFile(file, benchScenario(20, 2));
    const whole = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", `${repoRoot}/cmd/sim.ts`, file, "-o", "json", "--progress"],
      stdin: "null",
    }).output();
    assertEquals(whole.code, 0, new TextDecoder().decode(whole.stderr));
    // Not a terminal: plain lines, the last one with every pod.
    const lines = new TextDecoder().decode(whole.stderr).trim().split("\n");
    assert(lines.at(-1)!.startsWith("objects 6/6 · pods 20/20 attached"), lines.join("\n"));
    assertEquals(JSON.parse(new TextDecoder().decode(whole.stdout)).pods.length, 20);
    // Without --progress, -o json leaves stderr alone.
    const quiet = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", `${repoRoot}/cmd/sim.ts`, file, "-o", "json"],
      stdin: "null",
    }).output();
    assertEquals([quiet.code, new TextDecoder().decode(quiet.stderr)], [0, ""]);

    // Interrupted as soon as it says it is running pods: far fewer than the 2,000 planned.
    await Deno.writeTextFile(file, benchScenario(2000, 20));
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", `${repoRoot}/cmd/sim.ts`, file, "-o", "json", "--progress"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = new Response(child.stdout).text();
    let stderr = "";
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    while (!stderr.includes(" attached")) {
      const { value, done } = await reader.read();
      if (done) break;
      stderr += value;
    }
    child.kill("SIGINT");
    for (let r = await reader.read(); !r.done; r = await reader.read()) stderr += r.value;
    const status = await child.status;
    assertEquals(status.code, 130, stderr);
    assert(stderr.includes("sim: interrupted"), stderr);
    const doc = JSON.parse(await stdout);
    assertEquals(doc.stopped, { podsPlanned: 2000 });
    assert(doc.pods.length > 0 && doc.pods.length < 2000, `${doc.pods.length} pods`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
