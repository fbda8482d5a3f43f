// `install_cni`: what the node DaemonSet's install container runs (see core/install/cni.ts).
//   --bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d [--from DIR of compiled binaries]
//   [--kubeconfig PATH] [--naming-scheme legacy] [--daemon-socket PATH] [--name danm_meta_cni]
//   [--no-launcher]   fail instead of writing launcher scripts when a compiled binary is missing
import "../adapters/runtime/effect_without_async_context.ts";
import { Effect } from "effect";
import { layerLiveFs } from "../adapters/fs/live.ts";
import { installCni } from "../core/install/cni.ts";

const args = new Map<string, string>();
const flags = new Set<string>();
for (let i = 0; i < Deno.args.length; i++) {
  const a = Deno.args[i];
  if (a === "--no-launcher") flags.add(a);
  else if (a.startsWith("--") && i + 1 < Deno.args.length) args.set(a, Deno.args[++i]);
  else {
    console.error(`install_cni: unexpected argument ${a}`);
    Deno.exit(2);
  }
}
const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const denoDir = Deno.env.get("DENO_DIR");
const program = installCni({
  binDir: args.get("--bin-dir") ?? "/opt/cni/bin",
  confDir: args.get("--conf-dir") ?? "/etc/cni/net.d",
  ...(args.has("--from") ? { compiledDir: args.get("--from")! } : {}),
  ...(flags.has("--no-launcher") ? {} : { launcher: { deno: Deno.execPath(), repo, ...(denoDir ? { denoDir } : {}) } }),
  config: {
    name: args.get("--name") ?? "danm_meta_cni",
    ...(args.has("--kubeconfig") ? { kubeconfig: args.get("--kubeconfig")! } : {}),
    ...(args.has("--naming-scheme") ? { namingScheme: args.get("--naming-scheme")! } : {}),
    ...(args.has("--daemon-socket") ? { daemonSocket: args.get("--daemon-socket")! } : {}),
    ...(args.has("--cni-dir") ? { cniDir: args.get("--cni-dir")! } : {}),
  },
});
const result = await Effect.runPromise(Effect.result(Effect.provide(program, layerLiveFs)));
if (result._tag === "Failure") {
  console.error(`install_cni: ${result.failure.message}`);
  Deno.exit(1);
}
for (const b of result.success.binaries) console.log(`installed ${b.path} (${b.kind})`);
console.log(`wrote ${result.success.config}`);
