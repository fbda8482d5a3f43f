// `deno task sim` on the in-memory layers as a command: the scenario loaded from files, the run (embedded.ts), a
// progress line on stderr, Ctrl-C, and the report on stdout.
import { Effect, References } from "effect";
import { layerLiveFs } from "../fs/live.ts";
import { runEmbedded } from "./embedded.ts";
import { renderProgress, type SimProgress } from "../../core/sim/progress.ts";
import { renderOutcome } from "../../core/sim/report.ts";
import { loadScenario } from "../../core/sim/scenario.ts";

export interface InMemoryRunOptions {
  readonly json: boolean;
  /** Progress lines on stderr even when it is not a terminal, or with -o json. */
  readonly progress: boolean;
}

/** The run; its exit code: 0, 1 with scenario errors or a failure, 130 when Ctrl-C stopped it. */
export async function runInMemory(paths: ReadonlyArray<string>, options: InMemoryRunOptions): Promise<number> {
  const defaultScenario = new URL("../../k8s/examples/demo.yaml", import.meta.url).pathname;

  // Progress: the latest state is kept and drawn on a timer, so a fast run pays nothing per pod for it. On a
  // terminal the line is redrawn in place; elsewhere (--progress into a file or pipe) a line every few seconds.
  const tty = Deno.stderr.isTerminal();
  const showProgress = options.progress || (tty && !options.json);
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
    return undefined;
  }).finally(() => {
    if (timer !== undefined) clearInterval(timer);
  });
  if (!outcome) return 1;
  if (timer !== undefined) drawProgress(true);
  console.log(options.json ? JSON.stringify(outcome, null, 2) : renderOutcome(outcome));
  return outcome.stopped ? 130 : outcome.errors.length > 0 ? 1 : 0;
}
