// svcwatcher: Endpoints and EndpointSlices for Services over pod networks. Composition root only: flags, the
// Kube and Http layers, the metrics endpoint, signals; the controller lives in core/svcwatcher.
//
//   deno run --allow-net --allow-env --allow-read --allow-sys=hostname cmd/svcwatcher.ts \
//     [--kubeconfig PATH] [--lease-namespace kube-system] [--lease-name danm-svcwatcher] [--identity ID]
//     [--metrics-port 9090] [--workers 4] [--namespace NS] [--log-level info] [--log-format auto|json|text]
import "../adapters/runtime/effect_without_async_context.ts";
import { parseArgs } from "node:util";
import { Effect, Fiber, Layer, Schema } from "effect";
import { decodeFlagsOrExit } from "../adapters/cli/main.ts";
import { logFlagFields, logFlagOptions, logFlagsUsage, loggingLayer } from "../adapters/cli/logging.ts";
import { LeaseResource } from "../core/api/k8s.ts";
import { allReady, makeApiProbe } from "../core/observability/readiness.ts";
import { Kube } from "../core/ports/kube.ts";
import { layerLiveHttp } from "../adapters/http/live.ts";
import { layerLiveKube } from "../adapters/kube/live.ts";
import { serveMetrics } from "../core/observability/metrics.ts";
import { runSvcwatcher } from "../core/svcwatcher/controller.ts";
import { SvcwatcherMetrics } from "../core/svcwatcher/metrics.ts";

const usage = `usage: svcwatcher [--kubeconfig PATH] [--lease-namespace NS] [--lease-name NAME] [--identity ID]
                  [--metrics-port PORT] [--workers N] [--namespace NS]
  --kubeconfig       kubeconfig file; empty: the pod's service account (in-cluster)
  --lease-namespace  namespace of the leader-election Lease (default kube-system)
  --lease-name       name of the Lease (default danm-svcwatcher)
  --identity         this replica's name in the Lease and in Events (default <hostname>_<pid>)
  --metrics-port     port of /metrics, /healthz (liveness) and /readyz (readiness: the apiserver answers and, while
                     leading, the view is loaded); 0 disables them (default 9090)
  --workers          Services reconciled at a time (default 4)
  --namespace        serve only this namespace (default: all)
${logFlagsUsage}`;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    kubeconfig: { type: "string", default: "" },
    "lease-namespace": { type: "string", default: "kube-system" },
    "lease-name": { type: "string", default: "danm-svcwatcher" },
    identity: { type: "string", default: "" },
    "metrics-port": { type: "string", default: "9090" },
    workers: { type: "string", default: "4" },
    namespace: { type: "string", default: "" },
    ...logFlagOptions,
    help: { type: "boolean", default: false },
  },
  strict: true,
});
if (values.help) {
  console.log(usage);
  Deno.exit(0);
}
const int = (flag: string, v: string, min: number) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${flag}: expected an integer ≥ ${min}, got "${v}"\n${usage}`);
    Deno.exit(2);
  }
  return n;
};
const metricsPort = int("metrics-port", values["metrics-port"], 0);
const workers = int("workers", values.workers, 1);
const identity = values.identity || `${Deno.hostname()}_${Deno.pid}`;
const logFlags = decodeFlagsOrExit("svcwatcher", Schema.Struct(logFlagFields), {
  "log-level": values["log-level"],
  "log-format": values["log-format"],
});

const kube = layerLiveKube({
  config: values.kubeconfig ? { _tag: "Kubeconfig", path: values.kubeconfig } : { _tag: "InCluster" },
  userAgent: `danm-svcwatcher/${identity}`,
});

const metrics = new SvcwatcherMetrics();
const main = Effect.gen(function* () {
  if (metricsPort > 0) {
    const kube = yield* Kube;
    // A read of its own Lease (the one object it may get; NotFound counts too): the apiserver answers.
    const apiserver = yield* makeApiProbe(() =>
      kube.get(LeaseResource, values["lease-name"], { namespace: values["lease-namespace"] })
    );
    const ready = allReady({ apiserver, controller: Effect.sync(() => metrics.notLeadingOrLoaded()) });
    const server = yield* serveMetrics({ port: metricsPort, ready }, Effect.sync(() => metrics.render()));
    yield* Effect.logInfo(`metrics on :${server.address.port}/metrics`);
  }
  return yield* runSvcwatcher({
    identity,
    workers,
    ...(values.namespace ? { namespace: values.namespace } : {}),
    lease: { namespace: values["lease-namespace"], name: values["lease-name"] },
  }, metrics);
}).pipe(
  Effect.scoped,
  Effect.provide(Layer.merge(Layer.orDie(kube), layerLiveHttp)),
  Effect.provide(loggingLayer(logFlags["log-level"], logFlags["log-format"])),
);

const fiber = Effect.runFork(main);
let stopping = false;
// SIGTERM/SIGINT: interrupting stops the controller and hands the Lease over before exiting.
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(signal, () => {
    stopping = true;
    Effect.runFork(Fiber.interrupt(fiber));
  });
}
const exit = await Effect.runPromise(Fiber.await(fiber));
if (exit._tag === "Failure" && !stopping) {
  console.error(`svcwatcher failed: ${exit.cause}`);
  Deno.exit(1);
}
Deno.exit(0);
