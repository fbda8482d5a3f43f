// What the CNI programs (add, del, check, gc, status) share on a node: the daemon's configuration, warm caches of
// the objects every ADD reads (networks, NADs, this node's pods and DanmEps; informers, with a GET on a miss so a
// freshly created object is never refused; NADs are read directly), per-sandbox locks and the queue of teardowns to retry.
import { Context, Effect, Ref, type Scope, Semaphore, SubscriptionRef } from "effect";
import {
  type ClusterNetwork,
  ClusterNetworkResource,
  type DanmEp,
  DanmEpResource,
  type DanmNet,
  DanmNetResource,
  TenantNetworkResource,
} from "../api/danm.ts";
import { type Pod, PodResource } from "../api/k8s.ts";
import { type ReservedIP, reservedIpNetwork, reservedIpResource } from "../api/reservedip.ts";
import type { IpamNetwork } from "../ipam/allocator.ts";
import type { PoolOptions } from "../ipam/plan.ts";
import {
  cachedNetworkDirectory,
  type DirectoryError,
  getOrUndefined,
  type NetworkDirectoryService,
} from "../podnetworks/selection.ts";
import { makeKeyedLocks } from "../concurrency/keyed_locks.ts";
import { type EventRecorder, makeEventRecorder } from "../observability/events.ts";
import type { ReadinessCheck } from "../observability/metrics.ts";
import { makeApiProbe } from "../observability/readiness.ts";
import { type Informer, Kube } from "../ports/kube.ts";
import { nodeSelector } from "./endpoints.ts";
import { type AddressTickets, makeAddressTickets } from "./tickets.ts";

export interface CniNodeConfig {
  /** The Kubernetes node this daemon serves: its pods, DanmEps and IPAM reservations carry it. */
  readonly nodeName: string;
  /** Where the daemon listens; handed to delegates as DANM_SOCKET (fakeipam). */
  readonly socketPath: string;
  /** Sandbox records (state.ts). */
  readonly stateDir: string;
  /** Time limit of one attachment during ADD (DANM: 30 s for the whole pod, never cancelled). */
  readonly attachTimeoutMs: number;
  /** Time limit of one delegate execution during DEL, CHECK and GC. */
  readonly delegateTimeoutMs: number;
  /** PATH for delegates. */
  readonly delegatePath: string;
  /** Where the CNI plugins are, for teardowns no runtime asked for (retry, reclaim) that lack the ADD's CNI_PATH. */
  readonly cniPath: ReadonlyArray<string>;
  /** GC leaves sandboxes and reservations younger than this alone (an ADD may be racing the runtime's list). */
  readonly gcGraceSeconds: number;
  /** DanmEp.Host (DANM: the hostname). */
  readonly host: string;
  /** A STATUS probe of the apiserver is reused for this long. */
  readonly statusProbeTtlMs: number;
  /** CNI requests handled at once (core/cni/gate.ts); fakeipam calls of running ADDs are not counted. */
  readonly maxConcurrent: number;
  /**
   * Delegate plugins running at once, across all requests (core/cni/attach/delegate.ts DelegateSlots): they run in
   * the agent's container and count against its memory limit.
   */
  readonly maxDelegates: number;
  /**
   * Longest wait of one attachment for delegate slots (core/cni/attach/slots.ts); not counted in attachTimeoutMs.
   * Beyond it the ADD fails with CNI error 11 (try again later).
   */
  readonly delegateWaitTimeoutMs: number;
  /** CNI requests waiting for a slot; beyond that they are answered "try again later" (CNI error 11). */
  readonly maxQueued: number;
  /** On shutdown, how long running requests may take to finish before they are cut off. */
  readonly drainTimeoutMs: number;
}

export const defaultDelegatePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export const defaultNodeConfig = (
  o: Pick<CniNodeConfig, "nodeName"> & Partial<CniNodeConfig>,
): CniNodeConfig => ({
  socketPath: "/run/danm/danm.sock",
  stateDir: "/run/danm/sandboxes",
  attachTimeoutMs: 30_000,
  delegateTimeoutMs: 30_000,
  delegatePath: defaultDelegatePath,
  cniPath: ["/opt/cni/bin"],
  gcGraceSeconds: 60,
  host: o.nodeName,
  statusProbeTtlMs: 2_000,
  maxConcurrent: 32,
  // ~11.5 MiB each (a Go plugin and its fakeipam client, measured): 8 take ~100 MiB beside the agent's ~250-290 MiB.
  maxDelegates: 8,
  // With the 30 s attach limit, inside kubelet's --runtime-request-timeout (2 min) for the whole sandbox.
  delegateWaitTimeoutMs: 60_000,
  maxQueued: 128,
  // Below the DaemonSet's terminationGracePeriodSeconds (30), which ends in SIGKILL.
  drainTimeoutMs: 20_000,
  ...o,
});

export interface CniRuntimeService {
  readonly config: CniNodeConfig;
  readonly directory: NetworkDirectoryService;
  /** The pod, from this node's cache unless missing or another incarnation (UID) than the runtime means. */
  readonly pod: (namespace: string, name: string, uid?: string) => Effect.Effect<Pod | undefined, DirectoryError>;
  /** This node's DanmEps as the informer sees them. */
  readonly nodeEndpoints: Effect.Effect<ReadonlyArray<DanmEp>>;
  /** This node's DanmEps of one pod (by `spec.PodUID`), as the informer sees them; no scan of the node's. */
  readonly podEndpoints: (podUid: string) => Effect.Effect<ReadonlyArray<DanmEp>>;
  /** This node's DanmEps of one sandbox (by `spec.CID`), as the informer sees them; no scan of the node's. */
  readonly sandboxEndpoints: (containerId: string) => Effect.Effect<ReadonlyArray<DanmEp>>;
  /** The network as the IPAM must see it: with the addresses its ReservedIPs keep from dynamic allocation. */
  readonly withReservedIps: (network: IpamNetwork) => Effect.Effect<IpamNetwork>;
  /** Names of the caches that have not finished their first list. */
  readonly unsynced: Effect.Effect<ReadonlyArray<string>>;
  /** Serializes work on one sandbox (ADD racing DEL of the same container). */
  readonly withSandboxLock: <A, E, R>(containerId: string, e: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>;
  /** Sandboxes with an operation in progress (GC leaves them alone). */
  readonly busy: Effect.Effect<ReadonlySet<string>>;
  /** Teardowns that could not finish (apiserver down …); the daemon retries them in the background. */
  readonly pendingTeardowns: Ref.Ref<ReadonlySet<string>>;
  /**
   * Runs `e` after the current request, in the daemon's lifetime, one at a time per `key` (in order of submission).
   * For writes nobody waits for (the pod's network-status annotation).
   */
  readonly background: (key: string, e: Effect.Effect<void>) => Effect.Effect<void>;
  /** Reservations delegates are waiting for through fakeipam (tickets.ts). */
  readonly tickets: AddressTickets;
  /**
   * Where each delegate plugin was found (core/cni/attach/ipamhandoff.ts resolveBinary), by CNI_PATH and type: one
   * stat per plugin for the daemon's life instead of one per attachment. Only found paths are kept, so a plugin
   * installed later (a DaemonSet copying its binary) is still found.
   */
  readonly pluginBinaries: Map<string, string>;
  /** Events on pods (a failed ADD), aggregated on repeats. */
  readonly events: EventRecorder;
  /**
   * Whether the apiserver (where IPAM and DanmEps live) answers: undefined, or the problem. Probed at most every
   * `statusProbeTtlMs` (CNI STATUS and the readiness probe share it).
   */
  readonly apiReachable: ReadinessCheck;
}

export class CniRuntime extends Context.Service<CniRuntime, CniRuntimeService>()("danm/core/cni/CniRuntime") {}

/** The index of DanmEps by pod; module-level, so every runtime over one shared informer shares the index. */
const endpointPodUid = (ep: DanmEp): ReadonlyArray<string> => ep.spec.PodUID === undefined ? [] : [ep.spec.PodUID];
/** The index of DanmEps by sandbox (container ID), for DEL and CHECK; module-level for the same reason. */
const endpointSandbox = (ep: DanmEp): ReadonlyArray<string> => ep.spec.CID ? [ep.spec.CID] : [];

const synced = <A>(name: string, i: Informer<A>) =>
  Effect.map(SubscriptionRef.get(i.state), (s) => (s.synced ? undefined : name));

/** Builds the caches (informers live as long as the scope). */
export const makeCniRuntime = (config: CniNodeConfig): Effect.Effect<CniRuntimeService, never, Kube | Scope.Scope> =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const danmNets: Informer<DanmNet> = yield* kube.informer(DanmNetResource);
    const tenantNets = yield* kube.informer(TenantNetworkResource);
    const clusterNets: Informer<ClusterNetwork> = yield* kube.informer(ClusterNetworkResource);
    const pods: Informer<Pod> = yield* kube.informer(PodResource, {
      fieldSelector: `spec.nodeName=${config.nodeName}`,
    });
    const endpoints: Informer<DanmEp> = yield* kube.informer(DanmEpResource, {
      labelSelector: nodeSelector(config.nodeName),
    });
    const reservedIps: Informer<ReservedIP> = yield* kube.informer(reservedIpResource);
    const endpointsByPod = yield* endpoints.index(endpointPodUid);
    const endpointsBySandbox = yield* endpoints.index(endpointSandbox);

    const directory = cachedNetworkDirectory(kube, { danmNets, tenantNets, clusterNets });

    const pod: CniRuntimeService["pod"] = (namespace, name, uid) =>
      Effect.flatMap(
        pods.get(name, namespace),
        (hit) =>
          hit !== undefined && (uid === undefined || hit.metadata.uid === uid)
            ? Effect.succeed(hit)
            : getOrUndefined(kube, PodResource, name, namespace),
      );

    const unsynced = Effect.map(
      Effect.all([
        synced("DanmNets", danmNets),
        synced("TenantNetworks", tenantNets),
        synced("ClusterNetworks", clusterNets),
        synced("Pods", pods),
        synced("DanmEps", endpoints),
        synced("ReservedIPs", reservedIps),
      ]),
      (xs) => xs.filter((x): x is string => x !== undefined),
    );

    // ReservedIP addresses per network, rebuilt when the informer's snapshot changes; the merged options object is
    // kept per network options object and address list, so the IPAM's plan memo (keyed by options) keeps hitting.
    let heldSnapshot: ReadonlyMap<string, ReservedIP> | undefined;
    let heldByNetwork = new Map<string, ReadonlyArray<string>>();
    const merged = new WeakMap<PoolOptions, { held: ReadonlyArray<string>; options: PoolOptions }>();
    const networkKey = (n: { kind: string; namespace?: string; name: string }) =>
      `${n.kind}/${n.kind === "ClusterNetwork" ? "" : n.namespace ?? ""}/${n.name}`;
    const withReservedIps: CniRuntimeService["withReservedIps"] = (network) =>
      Effect.map(SubscriptionRef.get(reservedIps.state), (state) => {
        if (state.items !== heldSnapshot) {
          heldSnapshot = state.items;
          const byNetwork = new Map<string, string[]>();
          for (const r of state.items.values()) {
            const key = networkKey(reservedIpNetwork(r));
            byNetwork.set(key, [...(byNetwork.get(key) ?? []), ...r.spec.ips.map((ip) => ip.address)]);
          }
          heldByNetwork = byNetwork;
        }
        const held = heldByNetwork.get(networkKey(network.ref));
        if (!held) return network;
        let entry = merged.get(network.options);
        if (entry?.held !== held) {
          entry = { held, options: { ...network.options, heldAddresses: held } };
          merged.set(network.options, entry);
        }
        return { ...network, options: entry.options };
      });

    const sandboxLocks = makeKeyedLocks();
    const withSandboxLock = sandboxLocks.withLock;

    const scope = yield* Effect.scope;
    const queues = new Map<string, { sem: Semaphore.Semaphore; users: number }>();
    const background: CniRuntimeService["background"] = (key, e) => {
      // Taken synchronously, so submissions keep their order (the semaphore serves waiters first come, first served).
      let q = queues.get(key);
      if (!q) queues.set(key, q = { sem: Semaphore.makeUnsafe(1), users: 0 });
      q.users++;
      const entry = q;
      return Effect.asVoid(Effect.forkIn(
        entry.sem.withPermit(e).pipe(
          Effect.ensuring(Effect.sync(() => {
            if (--entry.users === 0) queues.delete(key);
          })),
        ),
        scope,
      ));
    };

    return {
      config,
      directory,
      pod,
      nodeEndpoints: endpoints.list,
      podEndpoints: endpointsByPod.get,
      sandboxEndpoints: endpointsBySandbox.get,
      withReservedIps,
      unsynced,
      withSandboxLock,
      busy: Effect.sync(sandboxLocks.busy),
      background,
      pendingTeardowns: yield* Ref.make<ReadonlySet<string>>(new Set()),
      tickets: makeAddressTickets(),
      pluginBinaries: new Map(),
      events: makeEventRecorder(kube, { component: "danm-cni", instance: config.nodeName }),
      // An object that never exists: a NotFound answer proves the apiserver and the DanmEp API are reachable.
      apiReachable: yield* makeApiProbe(() => kube.get(DanmEpResource, "danm-status-probe", { namespace: "default" }), {
        ttlMs: config.statusProbeTtlMs,
      }),
    } satisfies CniRuntimeService;
  });
