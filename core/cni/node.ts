// The danm CNI on a node, as the node agent composes it: warm caches, this node's IPAM allocator, the request
// handler serving the thin `danm`/`fakeipam` clients on a unix socket, and a background retry of teardowns that
// could not finish (apiserver down during DEL).
//
//   Layer.provide(CniNode.layer({ nodeName, socketPath, stateDir, … }),
//                 Layer.mergeAll(kube, netlink, process, fs, cniserver))   // adapters/cniserver/live.ts
import { Context, Effect, Layer, Option, Ref, type Scope } from "effect";
import { NetpolController } from "../netpol/controller.ts";
import { DefaultCniDir } from "../api/cniconfig.ts";
import { Ipam, type IpamNetwork, makeIpam } from "../ipam/allocator.ts";
import { networkLabels } from "../ipam/metrics.ts";
import type { Network, NetworkKind } from "../api/danm.ts";
import type { DirectoryError } from "../podnetworks/selection.ts";
import type { ReadinessCheck } from "../observability/metrics.ts";
import { allReady } from "../observability/readiness.ts";
import { blockStoreFromKube, kubeOwnerDirectory } from "../ipam/kube.ts";
import { BlockStore } from "../ipam/store.ts";
import { Fs } from "../ports/filesystem.ts";
import type { Kube } from "../ports/kube.ts";
import type { Netlink } from "../ports/netlink.ts";
import type { Process } from "../ports/process.ts";
import { busyResponse, bypassesGate, type DaemonResponse, handleRequest, refusedBusy } from "./daemon.ts";
import { type GateStats, makeRequestGate, type RequestGate } from "./gate.ts";
import { delSandbox } from "./del.ts";
import { noPodDevices, PodDevices, type PodDevicesService } from "../ports/pod_devices.ts";
import { CniListener, type CniListenerError } from "../ports/cni_listener.ts";
import { type CniMetrics, cniMetrics, CurrentCniMetrics } from "./metrics.ts";
import { DelegateSlots, makeDelegateSlots } from "./attach/slots.ts";
import {
  type CniNodeConfig,
  CniRuntime,
  type CniRuntimeService,
  defaultNodeConfig,
  makeCniRuntime,
} from "./runtime.ts";
import { reclaimGoneSandboxes } from "./reclaim.ts";

export interface CniNodeOptions extends Partial<CniNodeConfig> {
  readonly nodeName: string;
  /**
   * Device-plugin lookups for device_pool networks. Default: the PodDevices service in the context (the live
   * kubelet PodResources client, adapters/kubelet), and without one every lookup fails with a DeviceError.
   */
  readonly podDevices?: PodDevicesService;
  /** How often unfinished teardowns are retried. Default 10 s. */
  readonly retryPeriodMs?: number;
  /**
   * How often sandboxes whose pod is gone are torn down without a DEL (reclaim.ts); 0 = never. Default 0: the node
   * agent sets it from --reclaim-period.
   */
  readonly reclaimPeriodMs?: number;
  /** Sandboxes younger than this are left to the runtime's DEL. Default 120 s. */
  readonly reclaimGraceSeconds?: number;
}

export interface CniNodeService {
  readonly config: CniNodeConfig;
  /** The daemon's Prometheus metrics (the composition root serves them, beside its own). */
  readonly metrics: CniMetrics;
  /** The exposition of `metrics` after refreshing what is read at scrape time (IPAM pools, pending teardowns). */
  readonly renderMetrics: Effect.Effect<string>;
  /**
   * Why the daemon is not ready for ADDs, or undefined: its caches have not listed everything, the apiserver does not
   * answer, or (served on a socket: `make`) its socket does not (readiness probe).
   */
  readonly notReady: ReadinessCheck;
  /** The request handler the socket serves, for in-process callers. */
  readonly handle: (request: unknown) => Effect.Effect<DaemonResponse>;
  /** Caches that have not finished their first list (empty = ready for ADDs). */
  readonly unsynced: Effect.Effect<ReadonlyArray<string>>;
  /** Sandboxes whose teardown is waiting for a retry. */
  readonly pendingTeardowns: Effect.Effect<ReadonlySet<string>>;
  /** Requests running, waiting and refused as busy (core/cni/gate.ts). */
  readonly load: Effect.Effect<GateStats>;
  /** Stops admitting requests and lets running ones finish, up to the configured drain timeout. */
  readonly drain: Effect.Effect<void>;
}

export class CniNode extends Context.Service<CniNode, CniNodeService>()("danm/core/cni/CniNode") {}

/** Everything but the socket: caches, allocator, handler, retry loop. Lives as long as the scope. */
export const makeHandler = (
  options: CniNodeOptions,
): Effect.Effect<CniNodeService, never, Kube | Netlink | Process | Fs | Scope.Scope> =>
  Effect.gen(function* () {
    const { podDevices, retryPeriodMs, reclaimPeriodMs, reclaimGraceSeconds, ...partial } = options;
    const config = defaultNodeConfig(partial);
    const fs = yield* Fs;
    yield* fs.mkdir(config.stateDir, { mode: 0o700 }).pipe(
      Effect.catch((e) => Effect.logWarning(`cannot create the sandbox state directory: ${e.message}`)),
    );
    const runtime = yield* makeCniRuntime(config);
    const metrics = cniMetrics(config.nodeName);
    const blockStore = yield* Effect.provide(BlockStore, blockStoreFromKube);
    const owners = yield* kubeOwnerDirectory;
    const ipam = yield* makeIpam({
      metrics: metrics.ipam,
      // A static address held by an earlier incarnation of the same pod (new UID) may be taken over.
      ownerGone: (r) => {
        const [ns, pod] = r.pod.split("/");
        return owners.podUid(ns, pod).pipe(
          Effect.map((uid) => uid !== r.podUid),
          Effect.orElseSucceed(() => false),
        );
      },
    }).pipe(Effect.provideService(BlockStore, blockStore));
    const outer = yield* Effect.context<Kube | Netlink | Process | Fs>();
    // The live kubelet client when the composition root supplies one (adapters/kubelet), else refusals.
    const provided = yield* Effect.serviceOption(PodDevices);
    // The node agent's policy controller, when it runs in this process: the ADD programs the pod's table through it.
    const policy = yield* Effect.serviceOption(NetpolController);
    const withPolicy = Option.match(policy, {
      onNone: () => outer,
      onSome: (controller) => outer.pipe(Context.add(NetpolController, controller)),
    });
    const context = withPolicy.pipe(
      Context.add(CniRuntime, runtime),
      Context.add(Ipam, ipam),
      Context.add(BlockStore, blockStore),
      Context.add(PodDevices, podDevices ?? Option.getOrElse(provided, () => noPodDevices)),
      Context.add(CurrentCniMetrics, metrics),
      Context.add(DelegateSlots, makeDelegateSlots(config.maxDelegates, config.delegateWaitTimeoutMs)),
    );
    const gate = yield* makeRequestGate(config);
    const handle = (request: unknown) => {
      const work = handleRequest(request).pipe(Effect.provideContext(context));
      if (bypassesGate(request)) return work;
      let busy: string | undefined;
      return gate.admit(work, (reason) => {
        busy = reason;
        return busyResponse(request, reason);
      }).pipe(
        Effect.tap(() =>
          busy === undefined ? Effect.void : refusedBusy(request, busy).pipe(Effect.provideContext(context))
        ),
      );
    };
    const drain = gate.drain(config.drainTimeoutMs).pipe(
      Effect.flatMap(({ finished, cutOff }) =>
        finished + cutOff === 0 ? Effect.void : Effect.logInfo(
          `danm CNI daemon drained: ${finished} request(s) finished` +
            (cutOff ? `, ${cutOff} cut off after ${config.drainTimeoutMs} ms` : ""),
        )
      ),
    );

    // Teardowns left over by DEL (apiserver unreachable …) are retried until they succeed; GC is the backstop.
    const retry = Effect.gen(function* () {
      const pending = yield* Ref.get(runtime.pendingTeardowns);
      for (const id of pending) {
        yield* runtime.withSandboxLock(id, delSandbox({ containerId: id, cniDir: DefaultCniDir })).pipe(
          Effect.provideContext(context),
          Effect.catchCause((c) => Effect.logWarning(`retrying the teardown of ${id} failed`, c)),
        );
      }
    });
    yield* Effect.forkScoped(
      Effect.forever(Effect.andThen(Effect.sleep(`${retryPeriodMs ?? 10_000} millis`), retry)),
    );
    // Sandboxes of pods that are gone, which no DEL (and no CNI GC) came for.
    if (reclaimPeriodMs) {
      const removedNodes = new Set<string>();
      const reclaim = reclaimGoneSandboxes({
        graceSeconds: reclaimGraceSeconds ?? 120,
        cniDir: DefaultCniDir,
        removedNodes,
      }).pipe(
        Effect.tap((r) => r.problems.length > 0 ? Effect.logWarning(`reclaim: ${r.problems.join("; ")}`) : Effect.void),
        Effect.provideContext(context),
        Effect.catchCause((c) => Effect.logWarning("reclaiming sandboxes of gone pods failed", c)),
      );
      yield* Effect.forkScoped(
        Effect.forever(Effect.andThen(Effect.sleep(`${reclaimPeriodMs} millis`), reclaim)),
      );
    }
    return {
      config,
      metrics,
      renderMetrics: Effect.andThen(
        refreshGauges(runtime, ipam, metrics, gate),
        Effect.sync(() => metrics.registry.render()),
      ),
      notReady: allReady({
        caches: Effect.map(
          runtime.unsynced,
          (w) => (w.length > 0 ? `waiting for the first list of ${w.join(", ")}` : undefined),
        ),
        apiserver: runtime.apiReachable,
      }),
      handle,
      unsynced: runtime.unsynced,
      pendingTeardowns: Ref.get(runtime.pendingTeardowns),
      load: gate.stats,
      drain,
    } satisfies CniNodeService;
  });

/** What the socket probe sends: a VERSION request through the whole path (listener, handler) that touches nothing. */
const versionProbe = { program: "danm", env: { CNI_COMMAND: "VERSION" }, stdin: "{}" };

/**
 * Gauges read at scrape time. Pools: every network this node's allocator works on; after a restart, networks this
 * node's pods are on are loaded first (one list of their blocks), so the numbers are there before the next ADD.
 */
const refreshGauges = (runtime: CniRuntimeService, ipam: Ipam["Service"], metrics: CniMetrics, gate: RequestGate) =>
  Effect.gen(function* () {
    metrics.pendingTeardowns.set((yield* Ref.get(runtime.pendingTeardowns)).size);
    metrics.queued.set((yield* gate.stats).queued);
    const onNode = new Map<string, { kind: NetworkKind; namespace: string; name: string }>();
    for (const ep of yield* runtime.nodeEndpoints) {
      const kind: NetworkKind = ep.spec.apiType || "DanmNet";
      const namespace = kind === "ClusterNetwork" ? "" : ep.metadata.namespace ?? "";
      onNode.set(`${kind}/${namespace}/${ep.spec.NetworkName}`, { kind, namespace, name: ep.spec.NetworkName });
    }
    const tracked = new Set(
      ipam.usage(runtime.config.nodeName).map((u) => `${u.ref.kind}/${u.ref.namespace ?? ""}/${u.ref.name}`),
    );
    for (const [key, n] of onNode) {
      if (tracked.has(key)) continue;
      const network = yield* Effect.orElseSucceed(lookupNetwork(runtime, n.kind, n.namespace, n.name), () => undefined);
      const ipamNetwork = network && ipamNetworkOf(n.kind, network);
      if (ipamNetwork) yield* Effect.ignore(ipam.track(ipamNetwork));
    }
    const seen = new Set<string>();
    for (const u of ipam.usage(runtime.config.nodeName)) {
      const labels = { ...networkLabels(u.ref), family: String(u.family) };
      seen.add(labelKey(labels));
      metrics.ipam.poolCapacity.set(Number(u.capacity), labels);
      metrics.ipam.poolAllocated.set(u.reserved, labels);
    }
    for (const labels of metrics.ipam.poolCapacity.labelSets()) {
      if (seen.has(labelKey(labels))) continue;
      metrics.ipam.poolCapacity.remove(labels);
      metrics.ipam.poolAllocated.remove(labels);
    }
  });

/** A label set as a key (label order aside). */
const labelKey = (l: Readonly<Record<string, string>>) => JSON.stringify(Object.entries(l).sort());

const lookupNetwork = (
  runtime: CniRuntimeService,
  kind: NetworkKind,
  namespace: string,
  name: string,
): Effect.Effect<Network | undefined, DirectoryError> => {
  const d = runtime.directory;
  if (kind === "ClusterNetwork") return d.clusterNetwork(name);
  if (kind === "TenantNetwork") return d.tenantNetwork(namespace, name);
  return d.danmNet(namespace, name);
};

/** The network as danm's IPAM knows it, if it has a pool there (a cidr or net6). */
const ipamNetworkOf = (kind: NetworkKind, n: Network): IpamNetwork | undefined => {
  const options = n.spec.Options ?? {};
  if (!options.cidr && !options.net6) return undefined;
  const namespace = kind === "ClusterNetwork" ? undefined : n.metadata.namespace;
  return {
    ref: { kind, ...(namespace ? { namespace } : {}), name: n.metadata.name ?? "", uid: n.metadata.uid ?? "" },
    options,
  };
};

/** The handler served on `config.socketPath`. */
export const make = (
  options: CniNodeOptions,
): Effect.Effect<CniNodeService, CniListenerError, Kube | Netlink | Process | Fs | CniListener | Scope.Scope> =>
  Effect.gen(function* () {
    const handler = yield* makeHandler(options);
    const listener = yield* CniListener;
    yield* listener.serve(handler.config.socketPath, handler.handle);
    // Registered after the listener's own finalizer, so it runs first: on shutdown the socket keeps answering (busy)
    // while running requests finish, and closes after.
    yield* Effect.addFinalizer(() => handler.drain);
    const node: CniNodeService = {
      ...handler,
      notReady: allReady({
        handler: handler.notReady,
        socket: listener.probe(handler.config.socketPath, versionProbe).pipe(
          Effect.as(undefined),
          Effect.catch((e) => Effect.succeed(e.message)),
        ),
      }),
    };
    yield* Effect.logInfo(`danm CNI for node ${node.config.nodeName} listening on ${node.config.socketPath}`);
    return node;
  });

export const layer = (
  options: CniNodeOptions,
): Layer.Layer<CniNode, CniListenerError, Kube | Netlink | Process | Fs | CniListener> =>
  Layer.effect(CniNode, make(options));
