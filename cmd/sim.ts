// `deno task sim [path…] [-o json]`: runs a scenario (Kubernetes YAML, files or directories) through danm's
// core programs on the in-memory layers and prints what every pod, node and Service ends up with. With no path it
// runs k8s/examples/demo.yaml. Needs neither root nor a cluster.
// `--real` runs the scenario on a real apiserver with real processes and network namespaces (root; default
// scenario k8s/examples/real.yaml), see tests/harness/simreal.ts; `--real --kubelet` on real nodes (kubelet +
// containerd) with danm deployed from its images.
import "../adapters/runtime/effect_without_async_context.ts";
import { Effect, References } from "effect";
import { layerLiveFs } from "../adapters/fs/live.ts";
import { runEmbedded } from "../adapters/sim/embedded.ts";
import { renderOutcome } from "../core/sim/report.ts";
import { loadScenario } from "../core/sim/scenario.ts";

const args = [...Deno.args];
let json = false;
let real = false;
let kubelet = false;
const paths: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "-o" || a === "--output") {
    const v = args[++i];
    if (v !== "json" && v !== "table") {
      console.error(`sim: -o takes json or table, not ${v}`);
      Deno.exit(2);
    }
    json = v === "json";
  } else if (a === "--real") {
    real = true;
  } else if (a === "--kubelet") {
    kubelet = true;
  } else if (a.startsWith("-")) {
    console.error(`sim: unknown flag ${a}\nusage: deno task sim [path…] [-o json|table] [--real [--kubelet]]`);
    Deno.exit(2);
  } else paths.push(a);
}
if (kubelet && !real) {
  console.error("sim: --kubelet runs on real nodes and needs --real");
  Deno.exit(2);
}
if (real) {
  // The real mode lives with the test harness it is built on (real apiserver, netns nodes, fake kubelets).
  const { runReal } = await import("../tests/harness/simreal.ts");
  Deno.exit(await runReal(paths, json, kubelet));
}
const defaultScenario = new URL("../k8s/examples/demo.yaml", import.meta.url).pathname;

const program = Effect.gen(function* () {
  const scenario = yield* loadScenario(paths.length ? paths : [defaultScenario]).pipe(Effect.provide(layerLiveFs));
  return yield* Effect.scoped(runEmbedded(scenario));
});

// The simulation's components log as they would in a cluster; what matters here is in the report.
const outcome = await Effect.runPromise(
  program.pipe(Effect.provideService(References.MinimumLogLevel, "Error")),
).catch((e) => {
  console.error(`sim: ${e instanceof Error ? e.message : String(e)}`);
  Deno.exit(1);
});
console.log(json ? JSON.stringify(outcome, null, 2) : renderOutcome(outcome));
Deno.exit(outcome.errors.length > 0 ? 1 : 0);
