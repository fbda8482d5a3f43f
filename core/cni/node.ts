// The danm CNI on a node, as the node agent composes it: warm caches, this node's IPAM allocator, the request
// handler serving the thin `danm`/`fakeipam` clients on a unix socket, and a background retry of teardowns that
// could not finish (apiserver down during DEL).
//
//   Layer.provide(CniNode.layer({ nodeName, socketPath, stateDir, … }),
//                 Layer.mergeAll(kube, netlink, process, fs, cniserver))   // adapters/cniserver/live.ts
import { Context, Effect, Layer, Option, Ref, type Scope } from "effect";
import { DefaultCniDir } from "../api/cniconfig.ts";
import { Ipam, makeIpam } from "../ipam/allocator.ts";
import { blockStoreFromKube, kubeOwnerDirectory } from "../ipam/kube.ts";
import { BlockStore } from "../ipam/store.ts";
import { Fs } from "../ports/filesystem.ts";
import type { Kube } from "../ports/kube.ts";
import type { Netlink } from "../ports/netlink.ts";
import type { Process } from "../ports/process.ts";
import { busyResponse, type DaemonResponse, handleRequest, isFakeIpamRequest } from "./daemon.ts";
import { type GateStats, makeRequestGate } from "./gate.ts";
import { delSandbox } from "./del.ts";
import { reclaimGoneSandboxes } from "./reclaim.ts";
import { noPodDevices, PodDevices, type PodDevicesService } from "./devices.ts";
import { CniListener, type CniListenerError } from "./listener.ts";
import { type CniNodeConfig, CniRuntime, defaultNodeConfig, makeCniRuntime } from "./runtime.ts";

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
    const blockStore = yield* Effect.provide(BlockStore, blockStoreFromKube);
    const owners = yield* kubeOwnerDirectory;
    const ipam = yield* makeIpam({
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
    const context = outer.pipe(
      Context.add(CniRuntime, runtime),
      Context.add(Ipam, ipam),
      Context.add(BlockStore, blockStore),
      Context.add(PodDevices, podDevices ?? Option.getOrElse(provided, () => noPodDevices)),
    );
    const gate = yield* makeRequestGate(config);
    const handle = (request: unknown) => {
      const work = handleRequest(request).pipe(Effect.provideContext(context));
      return isFakeIpamRequest(request) ? work : gate.admit(work, (reason) => busyResponse(request, reason));
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
      handle,
      unsynced: runtime.unsynced,
      pendingTeardowns: Ref.get(runtime.pendingTeardowns),
      load: gate.stats,
      drain,
    } satisfies CniNodeService;
  });

/** The handler served on `config.socketPath`. */
export const make = (
  options: CniNodeOptions,
): Effect.Effect<CniNodeService, CniListenerError, Kube | Netlink | Process | Fs | CniListener | Scope.Scope> =>
  Effect.gen(function* () {
    const node = yield* makeHandler(options);
    const listener = yield* CniListener;
    yield* listener.serve(node.config.socketPath, node.handle);
    // Registered after the listener's own finalizer, so it runs first: on shutdown the socket keeps answering (busy)
    // while running requests finish, and closes after.
    yield* Effect.addFinalizer(() => node.drain);
    yield* Effect.logInfo(`danm CNI for node ${node.config.nodeName} listening on ${node.config.socketPath}`);
    return node;
  });

export const layer = (
  options: CniNodeOptions,
): Layer.Layer<CniNode, CniListenerError, Kube | Netlink | Process | Fs | CniListener> =>
  Layer.effect(CniNode, make(options));
