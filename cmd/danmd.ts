// danmd: the danm CNI node daemon on its own (tests, development). In a cluster the netwatcher DaemonSet hosts the
// same layer (core/cni/node.ts). A thin composition root: flags → live layers → CniNode.
//
//   deno run -A cmd/danmd.ts [--kubeconfig PATH] [--node-name NAME] [--socket /run/danm/danm.sock]
//                            [--state-dir /run/danm/sandboxes] [--attach-timeout-ms 30000] [--gc-grace-seconds 60]
//                            [--pod-resources-socket /var/lib/kubelet/pod-resources/kubelet.sock]
//                            [--max-concurrent 32] [--max-delegates 8] [--max-queue 128] [--drain-timeout-ms 20000]
//                            [--delegate-wait-timeout-ms 60000]
//                            [--metrics-port 0 (off)] [--log-level info] [--log-format auto|json|text]
import "../adapters/runtime/effect_without_async_context.ts";
import { parseArgs } from "node:util";
import { Effect, Layer, Schema } from "effect";
import { serveMetrics } from "../core/observability/metrics.ts";
import { layerLiveHttp } from "../adapters/http/live.ts";
import { logFlagFields, logFlagOptions, loggingLayer } from "../adapters/cli/logging.ts";
import * as CniNode from "../core/cni/node.ts";
import { defaultDaemonSocket } from "../core/cni/versions.ts";
import { layerLiveCniListener } from "../adapters/cniserver/live.ts";
import { layerLiveFs } from "../adapters/fs/live.ts";
import { decodeFlagsOrExit, hostname, runUntilSignal } from "../adapters/cli/main.ts";
import { layerLiveKube } from "../adapters/kube/live.ts";
import * as LiveNetlink from "../adapters/netlink/live.ts";
import { defaultPodResourcesSocket, layerPodResourcesDevices } from "../adapters/kubelet/podresources.ts";
import { layerLiveProcess } from "../adapters/process/live.ts";

const Count = Schema.NumberFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0));
const Port = Schema.NumberFromString.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: 65535 }));

const Flags = Schema.Struct({
  kubeconfig: Schema.optionalKey(Schema.String),
  "node-name": Schema.String.check(Schema.isNonEmpty({ message: "needs --node-name, $NODE_NAME or a hostname" })),
  socket: Schema.String.check(Schema.isNonEmpty()),
  "state-dir": Schema.String.check(Schema.isNonEmpty()),
  "attach-timeout-ms": Count,
  "gc-grace-seconds": Count,
  "pod-resources-socket": Schema.String.check(Schema.isNonEmpty()),
  "max-concurrent": Count.check(Schema.isGreaterThanOrEqualTo(1)),
  "max-delegates": Count.check(Schema.isGreaterThanOrEqualTo(1)),
  "max-queue": Count,
  "drain-timeout-ms": Count,
  "delegate-wait-timeout-ms": Count,
  "metrics-port": Port,
  ...logFlagFields,
});

const { values } = parseArgs({
  args: Deno.args,
  options: {
    kubeconfig: { type: "string" },
    "node-name": { type: "string", default: Deno.env.get("NODE_NAME") ?? hostname() },
    socket: { type: "string", default: Deno.env.get("DANM_SOCKET") || defaultDaemonSocket },
    "state-dir": { type: "string", default: "/run/danm/sandboxes" },
    "attach-timeout-ms": { type: "string", default: "30000" },
    "gc-grace-seconds": { type: "string", default: "60" },
    "pod-resources-socket": { type: "string", default: defaultPodResourcesSocket },
    "max-concurrent": { type: "string", default: "32" },
    "max-delegates": { type: "string", default: "8" },
    "max-queue": { type: "string", default: "128" },
    "drain-timeout-ms": { type: "string", default: "20000" },
    "delegate-wait-timeout-ms": { type: "string", default: "60000" },
    "metrics-port": { type: "string", default: "0" },
    ...logFlagOptions,
  },
  strict: true,
});

const flags = decodeFlagsOrExit("danmd", Flags, values);

const platform = Layer.mergeAll(
  layerLiveKube({
    config: flags.kubeconfig ? { _tag: "Kubeconfig", path: flags.kubeconfig } : { _tag: "Auto" },
    userAgent: `danmd/${flags["node-name"]}`,
  }),
  LiveNetlink.layer(),
  layerLiveProcess,
  layerLiveFs,
  layerLiveCniListener,
  layerLiveHttp,
  layerPodResourcesDevices({ socket: flags["pod-resources-socket"] }),
);

const node = CniNode.layer({
  nodeName: flags["node-name"],
  socketPath: flags.socket,
  stateDir: flags["state-dir"],
  attachTimeoutMs: flags["attach-timeout-ms"],
  gcGraceSeconds: flags["gc-grace-seconds"],
  maxConcurrent: flags["max-concurrent"],
  maxDelegates: flags["max-delegates"],
  maxQueued: flags["max-queue"],
  drainTimeoutMs: flags["drain-timeout-ms"],
  delegateWaitTimeoutMs: flags["delegate-wait-timeout-ms"],
  // Delegates get the daemon's PATH: plugins may need iptables, ip … from it.
  ...(Deno.env.get("PATH") ? { delegatePath: Deno.env.get("PATH")! } : {}),
});

const main = Effect.gen(function* () {
  const cni = yield* CniNode.CniNode;
  if (flags["metrics-port"] > 0) {
    // /metrics, /healthz, /readyz, as the node agent serves them (on loopback: danmd is for tests and development).
    const server = yield* serveMetrics(
      { port: flags["metrics-port"], hostname: "127.0.0.1", ready: cni.notReady },
      cni.renderMetrics,
    );
    yield* Effect.logInfo(`danmd: metrics on 127.0.0.1:${server.address.port}/metrics`);
  }
  // Readiness for scripts: one line on stdout once the caches are synced.
  while ((yield* cni.unsynced).length > 0) yield* Effect.sleep("20 millis");
  console.log(`danmd ready: node ${cni.config.nodeName}, socket ${cni.config.socketPath}`);
  return yield* Effect.never;
}).pipe(
  Effect.scoped,
  Effect.provide(node),
  Effect.provide(platform),
  Effect.provide(loggingLayer(flags["log-level"], flags["log-format"])),
);

await runUntilSignal("danmd", main);
