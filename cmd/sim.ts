// `deno task sim [path…] [-o json] [--progress]`: runs a scenario (Kubernetes YAML, files or directories) through
// danm's core programs on the in-memory layers and prints what every pod, node and Service ends up with. With no
// path it runs k8s/examples/demo.yaml. Needs neither root nor a cluster. While it runs, a progress line goes to
// stderr when stderr is a terminal (not with -o json unless --progress); Ctrl-C stops before the next pod and
// prints what was done so far (exit code 130); a second Ctrl-C exits at once.
// `--real` runs the scenario on a real apiserver with real processes and network namespaces (root; default
// scenario k8s/examples/real.yaml), see tests/harness/simreal.ts; `--real --kubelet` on real nodes (kubelet +
// containerd) with danm deployed from its images.
import "../adapters/runtime/effect_without_async_context.ts";
import { Effect, References, Schema } from "effect";
import { parseCommandLineOrExit } from "../adapters/cli/main.ts";
import { layerLiveFs } from "../adapters/fs/live.ts";
import { runEmbedded } from "../adapters/sim/embedded.ts";
import { renderProgress, type SimProgress } from "../core/sim/progress.ts";
import { renderOutcome } from "../core/sim/report.ts";
import { loadScenario } from "../core/sim/scenario.ts";

const usage = "usage: deno task sim [path…] [-o json|table] [--progress] [--real [--kubelet]]";
const Flags = Schema.Struct({
  output: Schema.Literals(["table", "json"]),
  real: Schema.Boolean,
  kubelet: Schema.Boolean,
  progress: Schema.Boolean,
});
const { flags, positionals } = parseCommandLineOrExit("sim", () => usage, {
  output: { type: "string", short: "o", default: "table" },
  real: { type: "boolean", default: false },
  kubelet: { type: "boolean", default: false },
  progress: { type: "boolean", default: false },
}, Flags);
const { real, kubelet } = flags;
const json = flags.output === "json", progressFlag = flags.progress;
const paths = [...positionals];
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

// Progress: the latest state is kept and drawn on a timer, so a fast run pays nothing per pod for it. On a
// terminal the line is redrawn in place; elsewhere (--progress into a file or pipe) a line every few seconds.
const tty = Deno.stderr.isTerminal();
const showProgress = progressFlag || (tty && !json);
const started = performance.now();
let latest: SimProgress | undefined;
const encoder = new TextEncoder();
const drawProgress = (final = false) => {
  if (!latest) return;
  const line = renderProgress(latest, performance.now() - started);
  Deno.stderr.writeSync(encoder.encode(tty ? `\r\x1b[K${line}${final ? "\n" : ""}` : `${line}\n`));
};
const timer = showProgress ? setInterval(drawProgress, tty ? 200 : 2000) : undefined;

// Ctrl-C: no further pod starts; the report covers what was done. A second one exits at once.
let stopRequested = false;
const onInterrupt = () => {
  if (stopRequested) Deno.exit(130);
  stopRequested = true;
  if (showProgress && tty) Deno.stderr.writeSync(encoder.encode("\n"));
  console.error("sim: interrupted: finishing the pod in progress (Ctrl-C again to quit at once)");
};
Deno.addSignalListener("SIGINT", onInterrupt);

const program = Effect.gen(function* () {
  const scenario = yield* loadScenario(paths.length ? paths : [defaultScenario]).pipe(Effect.provide(layerLiveFs));
  return yield* Effect.scoped(runEmbedded(scenario, {
    ...(showProgress ? { onProgress: (p: SimProgress) => latest = p } : {}),
    stopRequested: () => stopRequested,
  }));
});

// The simulation's components log as they would in a cluster; what matters here is in the report.
const outcome = await Effect.runPromise(
  program.pipe(Effect.provideService(References.MinimumLogLevel, "Error")),
).catch((e) => {
  console.error(`sim: ${e instanceof Error ? e.message : String(e)}`);
  Deno.exit(1);
});
if (timer !== undefined) {
  clearInterval(timer);
  drawProgress(true);
}
console.log(json ? JSON.stringify(outcome, null, 2) : renderOutcome(outcome));
Deno.exit(outcome.stopped ? 130 : outcome.errors.length > 0 ? 1 : 0);
