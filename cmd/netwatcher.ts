// netwatcher: danm's node agent. It keeps the node's VLAN/VXLAN host interfaces in line with the networks
// (core/netwatcher), serves the danm CNI to the thin `danm`/`fakeipam` clients on a unix socket (core/cni/node.ts:
// warm caches instead of a Kubernetes client per pod) and reclaims what pods that are gone left behind without a DEL:
// their sandboxes on this node (core/cni/reclaim.ts) and IP reservations of this node and of removed nodes.
// A thin composition root: flags → live layers → agent + CNI daemon → metrics endpoint.
//
//   deno run -A cmd/netwatcher.ts [--kubeconfig PATH] [--node-name NAME] [--reconcile-period 30s]
//                                 [--metrics-port 9108] [--vxlan-mode multicast|unicast]
//                                 [--peer-node-selector LABELS] [--network-selector LABELS] [--netns PATH]
//                                 [--cni-socket /run/danm/danm.sock ("" = no CNI daemon)]
//                                 [--cni-state-dir /run/danm/sandboxes] [--reclaim-period 5m ("0s" = never)]
//                                 [--reclaim-grace 2m] [--cni-bin-dir /opt/cni/bin]
//                                 [--pod-resources-socket /var/lib/kubelet/pod-resources/kubelet.sock]
//                                 [--cni-max-concurrent 32] [--cni-max-delegates 8] [--cni-max-queue 128]
//                                 [--cni-drain-timeout 20s] [--cni-delegate-wait-timeout 60s]
//                                 [--netpol-resync-period 60s]
//                                 [--log-level info] [--log-format auto|json|text]
//
// :<metrics-port> serves /metrics (netwatcher's and the CNI daemon's), /healthz (liveness: the process serves) and
// /readyz (readiness: caches listed, the CNI socket answering, the apiserver reachable).
import "../adapters/runtime/effect_without_async_context.ts";
import { parseArgs } from "node:util";
import { Duration, Effect, Layer, Option, Schema } from "effect";
import * as Netwatcher from "../core/netwatcher/agent.ts";
import { VxlanMode } from "../core/netwatcher/plan.ts";
import { serveMetrics } from "../core/observability/metrics.ts";
import { NetnsRef } from "../core/ports/netlink.ts";
import * as CniNode from "../core/cni/node.ts";
import * as Netpol from "../core/netpol/controller.ts";
import { layerLivePolicyTables } from "../adapters/nftables/live.ts";
import { defaultDaemonSocket } from "../core/cni/versions.ts";
import { blockStoreFromKube, kubeOwnerDirectory } from "../core/ipam/kube.ts";
import { reclaimLoop } from "../core/ipam/reclaim.ts";
import { allReady } from "../core/observability/readiness.ts";
import { layerLiveCniListener } from "../adapters/cniserver/live.ts";
import { layerLiveFs, makeLiveFs } from "../adapters/fs/live.ts";
import { Fs } from "../core/ports/filesystem.ts";
import { localSandboxes } from "../core/cni/policy.ts";
import { layerLiveHttp } from "../adapters/http/live.ts";
import { layerLiveProcess } from "../adapters/process/live.ts";
import { trimMallocEvery } from "../adapters/runtime/malloc_trim.ts";
import { decodeFlagsOrExit, hostname, runUntilSignal } from "../adapters/cli/main.ts";
import { logFlagFields, logFlagOptions, loggingLayer } from "../adapters/cli/logging.ts";
import { layerLiveKube } from "../adapters/kube/live.ts";
import * as LiveNetlink from "../adapters/netlink/live.ts";
import { defaultPodResourcesSocket, layerPodResourcesDevices } from "../adapters/kubelet/podresources.ts";

const DurationText = Schema.String.check(
  Schema.isPattern(/^\d+(\.\d+)?(ms|s|m|h)$/, { message: 'a duration like "500ms", "30s", "5m"' }),
);
const Port = Schema.NumberFromString.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: 65535 }));

const Flags = Schema.Struct({
  kubeconfig: Schema.optionalKey(Schema.String),
  "node-name": Schema.String.check(Schema.isNonEmpty({ message: "needs --node-name, $NODE_NAME or a hostname" })),
  "reconcile-period": DurationText,
  "metrics-port": Port,
  "vxlan-mode": VxlanMode,
  "peer-node-selector": Schema.optionalKey(Schema.String),
  "network-selector": Schema.optionalKey(Schema.String),
  netns: Schema.optionalKey(Schema.String),
  "cni-socket": Schema.String,
  "cni-state-dir": Schema.String.check(Schema.isNonEmpty()),
  "reclaim-period": DurationText,
  "reclaim-grace": DurationText,
  "cni-bin-dir": Schema.String.check(Schema.isNonEmpty()),
  "pod-resources-socket": Schema.String.check(Schema.isNonEmpty()),
  "cni-max-concurrent": Schema.NumberFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(1)),
  "cni-max-delegates": Schema.NumberFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(1)),
  "cni-max-queue": Schema.NumberFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0)),
  "cni-drain-timeout": DurationText,
  "cni-delegate-wait-timeout": DurationText,
  "netpol-resync-period": DurationText,
  ...logFlagFields,
});

const units = { ms: "millis", s: "seconds", m: "minutes", h: "hours" } as const;
const toDuration = (text: string) => {
  const [, n, u] = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text)!;
  return `${Number(n)} ${units[u as keyof typeof units]}` as const;
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
    "cni-socket": { type: "string", default: Deno.env.get("DANM_SOCKET") ?? defaultDaemonSocket },
    "cni-state-dir": { type: "string", default: "/run/danm/sandboxes" },
    "reclaim-period": { type: "string", default: "5m" },
    // What the reclaimer leaves alone: younger reservations may belong to an ADD still in flight.
    "reclaim-grace": { type: "string", default: "2m" },
    // The plugins, for teardowns without the runtime's CNI_PATH (the runtime's own directory, mounted).
    "cni-bin-dir": { type: "string", default: "/opt/cni/bin" },
    "pod-resources-socket": { type: "string", default: defaultPodResourcesSocket },
    "cni-max-concurrent": { type: "string", default: "32" },
    "cni-max-delegates": { type: "string", default: "8" },
    "cni-max-queue": { type: "string", default: "128" },
    "cni-drain-timeout": { type: "string", default: "20s" },
    "cni-delegate-wait-timeout": { type: "string", default: "60s" },
    // MultiNetworkPolicy tables of this node's pods are read back (and repaired) at least this often.
    "netpol-resync-period": { type: "string", default: "60s" },
    ...logFlagOptions,
  },
  strict: true,
});

const flags = decodeFlagsOrExit("netwatcher", Flags, values);

const agent = Netwatcher.layer({
  nodeName: flags["node-name"],
  reconcilePeriod: toDuration(flags["reconcile-period"]),
  defaultVxlanMode: flags["vxlan-mode"],
  ...(flags["peer-node-selector"] ? { peerSelector: flags["peer-node-selector"] } : {}),
  ...(flags["network-selector"] ? { networkSelector: flags["network-selector"] } : {}),
  ...(flags.netns ? { netns: NetnsRef.path(flags.netns) } : {}),
});
const cniLayer = flags["cni-socket"]
  ? CniNode.layer({
    nodeName: flags["node-name"],
    socketPath: flags["cni-socket"],
    stateDir: flags["cni-state-dir"],
    maxConcurrent: flags["cni-max-concurrent"],
    maxDelegates: flags["cni-max-delegates"],
    maxQueued: flags["cni-max-queue"],
    drainTimeoutMs: Duration.toMillis(toDuration(flags["cni-drain-timeout"])),
    delegateWaitTimeoutMs: Duration.toMillis(toDuration(flags["cni-delegate-wait-timeout"])),
    // Delegates get the agent's PATH: plugins may need iptables, ip … from it.
    ...(Deno.env.get("PATH") ? { delegatePath: Deno.env.get("PATH")! } : {}),
    cniPath: flags["cni-bin-dir"].split(":"),
    reclaimPeriodMs: Duration.toMillis(toDuration(flags["reclaim-period"])),
    reclaimGraceSeconds: Duration.toSeconds(toDuration(flags["reclaim-grace"])),
  })
  : Layer.empty;
// MultiNetworkPolicy enforcement in the pods' netns (core/netpol/controller.ts); the CNI daemon's ADD programs
// new pods through it, so it is provided to the daemon too, and it follows the daemon's pods by their records.
const netpol = Netpol.layer({
  nodeName: flags["node-name"],
  render: Netpol.engineRenderer,
  ...(flags["cni-socket"]
    ? {
      sandboxes: Effect.provideService(
        localSandboxes(flags["cni-state-dir"], flags["node-name"]),
        Fs,
        makeLiveFs(),
      ),
    }
    : {}),
  resyncPeriod: toDuration(flags["netpol-resync-period"]),
}).pipe(Layer.provide(layerLivePolicyTables()));
const platform = Layer.mergeAll(
  layerLiveKube({
    config: flags.kubeconfig ? { _tag: "Kubeconfig", path: flags.kubeconfig } : { _tag: "Auto" },
    userAgent: `danm-netwatcher/${flags["node-name"]}`,
  }),
  LiveNetlink.layer(),
  layerLiveHttp,
  layerLiveProcess,
  layerLiveFs,
  layerLiveCniListener,
  layerPodResourcesDevices({ socket: flags["pod-resources-socket"] }),
);

const main = Effect.gen(function* () {
  const nw = yield* Netwatcher.Netwatcher;
  const cni = Option.getOrUndefined(yield* Effect.serviceOption(CniNode.CniNode));
  const policy = yield* Netpol.NetpolController;
  const server = yield* serveMetrics(
    {
      port: flags["metrics-port"],
      ready: allReady({ netwatcher: nw.notReady, netpol: policy.notReady, ...(cni ? { cni: cni.notReady } : {}) }),
    },
    Effect.map(
      Effect.all([nw.metrics, policy.metrics, ...(cni ? [cni.renderMetrics] : [])]),
      (texts) => texts.join(""),
    ),
  );
  yield* Effect.logInfo(`netwatcher ${nw.nodeName}: metrics on :${server.address.port}/metrics`);
  if (cni) yield* Effect.logInfo(`danm CNI daemon on ${flags["cni-socket"]}`);
  if (!/^0+(\.0+)?(ms|s|m|h)$/.test(flags["reclaim-period"])) {
    // Frees reservations of this node's pods that are gone (a missed DEL); CNI GC covers what the runtime knows.
    const owners = yield* kubeOwnerDirectory;
    yield* Effect.forkScoped(
      reclaimLoop(owners, {
        node: flags["node-name"],
        period: toDuration(flags["reclaim-period"]),
        graceSeconds: Duration.toSeconds(toDuration(flags["reclaim-grace"])),
      }, cni?.metrics.ipam).pipe(Effect.provide(blockStoreFromKube)),
    );
  }
  // What a burst of CNI requests freed goes back to the kernel (adapters/runtime/malloc_trim.ts).
  yield* trimMallocEvery(30_000);
  return yield* Effect.raceFirst(nw.join, policy.join);
}).pipe(
  Effect.scoped,
  Effect.provide(Layer.merge(agent, Layer.provideMerge(cniLayer, netpol))),
  Effect.provide(platform),
  Effect.provide(loggingLayer(flags["log-level"], flags["log-format"])),
);

// Exiting on failure lets the DaemonSet restart us rather than lingering as a zombie (DANM's rule, spec §5.1).
await runUntilSignal("netwatcher", main);
