// `deno task sim [path…] [-o json] [--progress]`: runs a scenario (Kubernetes YAML, files or directories) through
// danm's core programs on the in-memory layers and prints what every pod, node and Service ends up with. With no
// path it runs k8s/examples/demo.yaml. Needs neither root nor a cluster. While it runs, a progress line goes to
// stderr when stderr is a terminal (not with -o json unless --progress); Ctrl-C stops before the next pod and
// prints what was done so far (exit code 130); a second Ctrl-C exits at once.
// `--real` runs the scenario on a real apiserver with real processes and network namespaces (root, a repository
// checkout; default scenario k8s/examples/real.yaml); `--real --kubelet` on real nodes (kubelet + containerd) with
// danm deployed from its images. The simulation lives in core/sim (logic) and adapters/sim (composition).
import "../adapters/runtime/effect_without_async_context.ts";
import { Schema } from "effect";
import { parseCommandLineOrExit } from "../adapters/cli/main.ts";
import { runReal } from "../adapters/sim/real.ts";
import { runInMemory } from "../adapters/sim/run.ts";

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
if (flags.kubelet && !flags.real) {
  console.error("sim: --kubelet runs on real nodes and needs --real");
  Deno.exit(2);
}
const json = flags.output === "json";
Deno.exit(
  flags.real
    ? await runReal(positionals, json, flags.kubelet)
    : await runInMemory(positionals, { json, progress: flags.progress }),
);
