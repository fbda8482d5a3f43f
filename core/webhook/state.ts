// What the webhook knows about the cluster: informer caches of the danm kinds, an index of DanmEps by network
// (so "is a pod attached?" is a map lookup, not a cluster-wide list per request) and fresh reads where a cache
// could be behind.
//
// Freshness: a cache miss for a network is confirmed with a GET (a pod created right after its network must not
// be refused); IPBlocks are listed by label when addressing changes; claims are always checked fresh (claims.ts).
// Attachment checks trust the DanmEp index, which lags the apiserver by a watch event.
import { Clock, Deferred, Effect, type Scope, Stream, SubscriptionRef } from "effect";
import {
  type ClusterNetwork,
  ClusterNetworkResource,
  type DanmEp,
  DanmEpResource,
  type DanmNet,
  DanmNetResource,
  type Network,
  type NetworkKind,
  type TenantConfig,
  TenantConfigResource,
  type TenantNetwork,
  TenantNetworkResource,
} from "../api/danm.ts";
import { type IPBlock, ipBlockResource, labels as ipamLabels } from "../api/ipam.ts";
import {
  cachedNetworkDirectory,
  cachedOrGet,
  DirectoryError,
  type NetworkDirectoryService,
} from "../podnetworks/selection.ts";
import { type Informer, type InformerEvent, Kube, type KubeError } from "../ports/kube.ts";
import { retryTransient } from "./retry.ts";

export interface NetworkEntry {
  readonly kind: NetworkKind;
  readonly object: Network;
}

export interface ClusterView {
  /** True once every cache has its first list and the indexes are built. */
  readonly ready: Effect.Effect<boolean>;
  /** Waits for `ready`; fails when a cache could not start. */
  readonly awaitReady: Effect.Effect<void, KubeError>;
  /** Network lookups: cache first, a GET on a miss. */
  readonly directory: NetworkDirectoryService;
  /** Every cached network of every kind. */
  readonly networks: Effect.Effect<ReadonlyArray<NetworkEntry>>;
  /** The TenantConfig in use: the configured one, else the first by name (DANM used the first of its List). */
  readonly tenantConfig: Effect.Effect<TenantConfig | undefined, DirectoryError>;
  /** Pods ("namespace/name") attached to a network according to the DanmEps, sorted. */
  readonly attachedPods: (kind: NetworkKind, namespace: string | undefined, name: string) => Effect.Effect<string[]>;
  /** The IPBlocks of a network, read fresh by label. */
  readonly ipBlocks: (networkUid: string) => Effect.Effect<ReadonlyArray<IPBlock>, KubeError>;
  /** Networks this process admitted a DELETE for: their VNIs count as free (the claim decides for real). */
  readonly markDeleting: (uid: string) => void;
  readonly isDeleting: (uid: string | undefined) => boolean;
}

export interface ClusterViewOptions {
  /** Use this TenantConfig instead of the first by name. */
  readonly tenantConfigName?: string;
  /** How long a DELETE admitted here keeps its network's VNI out of the usage count. Default 60 s. */
  readonly deletingTtlMs?: number;
}

const networkKey = (kind: NetworkKind, namespace: string | undefined, name: string) =>
  kind === "ClusterNetwork" ? `ClusterNetwork//${name}` : `${kind}/${namespace ?? ""}/${name}`;

const epNetworkKey = (ep: DanmEp) => {
  const kind: NetworkKind = ep.spec.apiType ? ep.spec.apiType : "DanmNet";
  return networkKey(kind, ep.metadata.namespace, ep.spec.NetworkName);
};

/** Builds the caches; they live as long as the surrounding scope. */
export const makeClusterView = (
  options: ClusterViewOptions = {},
): Effect.Effect<ClusterView, never, Kube | Scope.Scope> =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const danmNets: Informer<DanmNet> = yield* kube.informer(DanmNetResource);
    const tenantNets: Informer<TenantNetwork> = yield* kube.informer(TenantNetworkResource);
    const clusterNets: Informer<ClusterNetwork> = yield* kube.informer(ClusterNetworkResource);
    const tenantConfigs: Informer<TenantConfig> = yield* kube.informer(TenantConfigResource);
    const danmEps: Informer<DanmEp> = yield* kube.informer(DanmEpResource);

    // network key → DanmEp key → "namespace/pod"
    const attached = new Map<string, Map<string, string>>();
    const epNetwork = new Map<string, string>();
    const podOf = (ep: DanmEp) => `${ep.metadata.namespace ?? ""}/${ep.spec.Pod}`;
    const put = (key: string, ep: DanmEp) => {
      const net = epNetworkKey(ep);
      const prev = epNetwork.get(key);
      if (prev !== undefined && prev !== net) attached.get(prev)?.delete(key);
      epNetwork.set(key, net);
      let m = attached.get(net);
      if (!m) attached.set(net, m = new Map());
      m.set(key, podOf(ep));
    };
    const drop = (key: string) => {
      const net = epNetwork.get(key);
      if (net === undefined) return;
      epNetwork.delete(key);
      const m = attached.get(net);
      m?.delete(key);
      if (m?.size === 0) attached.delete(net);
    };
    const indexed = yield* Deferred.make<void, KubeError>();
    const apply = (ev: InformerEvent<DanmEp>) =>
      Effect.gen(function* () {
        switch (ev._tag) {
          case "Synced":
            attached.clear();
            epNetwork.clear();
            for (const [key, ep] of ev.items) put(key, ep);
            yield* Deferred.succeed(indexed, undefined);
            break;
          case "Added":
          case "Updated":
            put(ev.key, ev.object);
            break;
          case "Deleted":
            drop(ev.key);
            break;
        }
      });
    yield* danmEps.changes.pipe(
      Stream.runForEach(apply),
      Effect.catch((e: KubeError) =>
        Effect.logError(`DanmEp index stopped: ${e.message}`).pipe(Effect.andThen(Deferred.fail(indexed, e)))
      ),
      Effect.forkScoped,
    );

    const awaitReady = Effect.all([
      danmNets.synced,
      tenantNets.synced,
      clusterNets.synced,
      tenantConfigs.synced,
      Deferred.await(indexed),
    ], { discard: true });

    const ready = Effect.map(
      Effect.all([
        Effect.map(SubscriptionRef.get(danmNets.state), (s) => s.synced),
        Effect.map(SubscriptionRef.get(tenantNets.state), (s) => s.synced),
        Effect.map(SubscriptionRef.get(clusterNets.state), (s) => s.synced),
        Effect.map(SubscriptionRef.get(tenantConfigs.state), (s) => s.synced),
        Deferred.isDone(indexed),
      ]),
      (all) => all.every(Boolean),
    );

    const directory = cachedNetworkDirectory(kube, { danmNets, tenantNets, clusterNets });

    const networks = Effect.map(
      Effect.all([danmNets.list, tenantNets.list, clusterNets.list]),
      ([d, t, c]): ReadonlyArray<NetworkEntry> => [
        ...d.map((object) => ({ kind: "DanmNet" as const, object })),
        ...t.map((object) => ({ kind: "TenantNetwork" as const, object })),
        ...c.map((object) => ({ kind: "ClusterNetwork" as const, object })),
      ],
    );

    const byName = (a: TenantConfig, b: TenantConfig) => (a.metadata.name ?? "").localeCompare(b.metadata.name ?? "");
    const tenantConfig: ClusterView["tenantConfig"] = Effect.gen(function* () {
      if (options.tenantConfigName !== undefined) {
        return yield* cachedOrGet(kube, tenantConfigs, TenantConfigResource, options.tenantConfigName);
      }
      const cached = yield* tenantConfigs.list;
      if (cached.length > 0) return [...cached].sort(byName)[0];
      // Nothing cached: confirm with a fresh list (one may have been created a moment ago).
      const fresh = yield* retryTransient(kube.list(TenantConfigResource)).pipe(
        Effect.mapError((e) => new DirectoryError({ kind: "TenantConfig", objectName: "*", detail: e.message })),
      );
      return [...fresh.items].sort(byName)[0];
    });

    const attachedPods: ClusterView["attachedPods"] = (kind, namespace, name) =>
      Effect.sync(() => [...new Set(attached.get(networkKey(kind, namespace, name))?.values() ?? [])].sort());

    const ipBlocks: ClusterView["ipBlocks"] = (uid) =>
      Effect.map(
        retryTransient(kube.list(ipBlockResource, { labelSelector: `${ipamLabels.networkUid}=${uid}` })),
        (l) => l.items,
      );

    const ttl = options.deletingTtlMs ?? 60_000;
    const deleting = new Map<string, number>();
    const clock = yield* Clock.Clock;
    const markDeleting = (uid: string) => {
      deleting.set(uid, clock.currentTimeMillisUnsafe() + ttl);
    };
    const isDeleting = (uid: string | undefined) => {
      if (uid === undefined) return false;
      const until = deleting.get(uid);
      if (until === undefined) return false;
      if (until < clock.currentTimeMillisUnsafe()) {
        deleting.delete(uid);
        return false;
      }
      return true;
    };

    return {
      ready,
      awaitReady,
      directory,
      networks,
      tenantConfig,
      attachedPods,
      ipBlocks,
      markDeleting,
      isDeleting,
    } satisfies ClusterView;
  });
