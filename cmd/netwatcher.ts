// netwatcher: the per-node agent keeping VLAN/VXLAN host interfaces in line with the networks (core/netwatcher).
// A thin composition root: flags → live Kube + Netlink + Http layers → the agent layer → the metrics endpoint.
//
//   deno run -A cmd/netwatcher.ts [--kubeconfig PATH] [--node-name NAME] [--reconcile-period 30s]
//                                 [--metrics-port 9108] [--vxlan-mode multicast|unicast]
//                                 [--peer-node-selector LABELS] [--network-selector LABELS] [--netns PATH]
import { parseArgs } from "node:util";
import { Effect, Layer, Schema } from "effect";
import { problemsOf, renderProblems } from "../core/api/formats.ts";
import * as Netwatcher from "../core/netwatcher/agent.ts";
import { VxlanMode } from "../core/netwatcher/plan.ts";
import { serveMetrics } from "../core/observability/metrics.ts";
import { NetnsRef } from "../core/ports/netlink.ts";
import { layerLiveHttp } from "../adapters/http/live.ts";
import { layerLiveKube } from "../adapters/kube/live.ts";
import * as LiveNetlink from "../adapters/netlink/live.ts";

const Duration = Schema.String.check(
  Schema.isPattern(/^\d+(\.\d+)?(ms|s|m|h)$/, { message: 'a duration like "500ms", "30s", "5m"' }),
);
const Port = Schema.NumberFromString.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: 65535 }));

const Flags = Schema.Struct({
  kubeconfig: Schema.optionalKey(Schema.String),
  "node-name": Schema.String.check(Schema.isNonEmpty({ message: "needs --node-name, $NODE_NAME or a hostname" })),
  "reconcile-period": Duration,
  "metrics-port": Port,
  "vxlan-mode": VxlanMode,
  "peer-node-selector": Schema.optionalKey(Schema.String),
  "network-selector": Schema.optionalKey(Schema.String),
  netns: Schema.optionalKey(Schema.String),
});

const units = { ms: "millis", s: "seconds", m: "minutes", h: "hours" } as const;
const toDuration = (text: string) => {
  const [, n, u] = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text)!;
  return `${Number(n)} ${units[u as keyof typeof units]}` as const;
};

const hostname = () => {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
};

const { values } = parseArgs({
  args: Deno.args,
  options: {
    kubeconfig: { type: "string" },
    "node-name": { type: "string", default: Deno.env.get("NODE_NAME") ?? hostname() },
    "reconcile-period": { type: "string", default: "30s" },
    "metrics-port": { type: "string", default: "9108" },
    "vxlan-mode": { type: "string", default: "multicast" },
    "peer-node-selector": { type: "string" },
    "network-selector": { type: "string" },
    netns: { type: "string" },
  },
  strict: true,
});

const decoded = Schema.decodeUnknownExit(Flags)(values, { errors: "all" });
if (decoded._tag === "Failure") {
  const issue = decoded.cause.reasons.find((r) => r._tag === "Fail");
  console.error(
    `netwatcher: bad flags: ${issue ? renderProblems(problemsOf(issue.error.issue)) : String(decoded.cause)}`,
  );
  Deno.exit(2);
}
const flags = decoded.value;

const agent = Netwatcher.layer({
  nodeName: flags["node-name"],
  reconcilePeriod: toDuration(flags["reconcile-period"]),
  defaultVxlanMode: flags["vxlan-mode"],
  ...(flags["peer-node-selector"] ? { peerSelector: flags["peer-node-selector"] } : {}),
  ...(flags["network-selector"] ? { networkSelector: flags["network-selector"] } : {}),
  ...(flags.netns ? { netns: NetnsRef.path(flags.netns) } : {}),
});
const platform = Layer.mergeAll(
  layerLiveKube({
    config: flags.kubeconfig ? { _tag: "Kubeconfig", path: flags.kubeconfig } : { _tag: "Auto" },
    userAgent: `danm-netwatcher/${flags["node-name"]}`,
  }),
  LiveNetlink.layer(),
  layerLiveHttp,
);

const main = Effect.gen(function* () {
  const nw = yield* Netwatcher.Netwatcher;
  const server = yield* serveMetrics({ port: flags["metrics-port"] }, nw.metrics);
  yield* Effect.logInfo(`netwatcher ${nw.nodeName}: metrics on :${server.address.port}/metrics`);
  return yield* nw.join;
}).pipe(Effect.scoped, Effect.provide(agent), Effect.provide(platform));

// SIGTERM/SIGINT interrupt the program: the scope closes (watches, metrics server, netns handle) before exit.
const abort = new AbortController();
for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => abort.abort());
const exit = await Effect.runPromiseExit(main, { signal: abort.signal });
if (exit._tag === "Failure" && !abort.signal.aborted) {
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail");
  // Exiting lets the DaemonSet restart us rather than lingering as a zombie (DANM's rule, spec §5.1).
  console.error(`netwatcher: ${failure ? (failure.error as Error).message : String(exit.cause)}`);
  Deno.exit(1);
}
Deno.exit(0);
