// A three-node cluster on the in-memory layers: one MemoryApiServer (with the networks' status subresource), one
// MemoryKernel holding a namespace per node with an `eth1` underlay, Node objects with the underlay addresses, and
// a netwatcher per node built with `make` (three agents in one process, as the integration tier does for real).
import { Effect, Exit, Layer, Scope, SubscriptionRef } from "effect";
import {
  ClusterNetworkResource,
  type DanmNet,
  DanmNetResource,
  TenantNetworkResource,
} from "../../../core/api/danm.ts";
import { type Event, EventResource, NodeResource } from "../../../core/api/k8s.ts";
import { make, type NetwatcherConfig, type NetwatcherService } from "../../../core/netwatcher/agent.ts";
import {
  type Informer,
  type InformerOptions,
  Kube,
  type KubeService,
  type ResourceType,
} from "../../../core/ports/kube.ts";
import { Netlink, type NetnsHandle, NetnsRef } from "../../../core/ports/netlink.ts";
import { makeMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import * as MemNetlink from "../../../adapters/netlink/memory.ts";

export const nodes = ["node-a", "node-b", "node-c"] as const;
export const underlay = (i: number) => `192.168.50.${i + 1}`;

export interface Cluster {
  readonly server: MemoryApiServer;
  readonly kernel: MemNetlink.MemoryKernel;
  readonly kube: KubeService;
  /** A handle per node namespace, for looking inside. */
  readonly ns: ReadonlyArray<NetnsHandle>;
  readonly refs: ReadonlyArray<NetnsRef>;
  /** Started agents by node index (a stopped one is removed). */
  readonly agents: NetwatcherService[];
  /** Starts an agent for node i; it stops with the test, or with `stop(i)`. */
  readonly start: (
    i: number,
    extra?: Partial<NetwatcherConfig>,
  ) => Effect.Effect<NetwatcherService, unknown, Scope.Scope>;
  /** Stops node i's agent, as if the node went away. */
  readonly stop: (i: number) => Effect.Effect<void>;
  /** Waits until the agents' informers hold what the server has (they see writes asynchronously). */
  readonly caughtUp: Effect.Effect<void>;
  /** caughtUp, then one pass of node i's agent. */
  readonly reconcile: (i: number) => NetwatcherService["reconcileNow"];
  /** caughtUp, then one reconcile pass on every started agent, in node order. */
  readonly reconcileAll: Effect.Effect<void, unknown>;
}

type Versioned = {
  readonly metadata?: { readonly namespace?: string; readonly name?: string; resourceVersion?: string };
};
const versions = (items: Iterable<unknown>) =>
  [...items].map((o) => {
    const m = (o as Versioned).metadata;
    return `${m?.namespace ?? ""}/${m?.name ?? ""}@${m?.resourceVersion ?? ""}`;
  }).sort().join(" ");

/**
 * Wraps `kube` so that `caughtUp` can wait until every informer made through it (the agents' caches) holds exactly
 * what the server (`truth`: the memory twin itself, not a test's faulty wrapper) lists for the same query: the memory
 * twin delivers watch events asynchronously, and on a loaded machine "a moment" is no bound.
 */
const trackInformers = (kube: KubeService, truth: KubeService) => {
  const queries: Array<{ rt: ResourceType<unknown>; options: InformerOptions; informer: Informer<unknown> }> = [];
  const tracked: KubeService = {
    ...kube,
    informer: (rt, options) =>
      Effect.tap(kube.informer(rt, options), (informer) =>
        Effect.sync(() =>
          void queries.push({
            rt: rt as ResourceType<unknown>,
            options: options ?? {},
            informer: informer as Informer<unknown>,
          })
        )),
  };
  const behind = Effect.gen(function* () {
    const lagging: string[] = [];
    for (const q of queries) {
      const state = yield* SubscriptionRef.get(q.informer.state);
      // An informer that never synced (an API the test left out) has nothing to catch up with.
      if (!state.synced) continue;
      const listed = yield* Effect.orDie(truth.list(q.rt, q.options));
      if (versions(state.items.values()) !== versions(listed.items)) lagging.push(q.rt.kind);
    }
    return lagging;
  });
  const caughtUp = Effect.gen(function* () {
    const deadline = Date.now() + 30_000;
    while (true) {
      const lagging = yield* behind;
      if (lagging.length === 0) return;
      if (Date.now() > deadline) return yield* Effect.die(new Error(`informers still behind after 30 s: ${lagging}`));
      yield* Effect.sleep("5 millis");
    }
  });
  return { kube: tracked, caughtUp };
};

export const statusKinds = [DanmNetResource, TenantNetworkResource, ClusterNetworkResource];

export const setupCluster = (
  opts: { agents?: boolean; config?: Partial<NetwatcherConfig>; kube?: (k: KubeService) => KubeService } = {},
): Effect.Effect<Cluster, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const server = new MemoryApiServer({ statusSubresources: statusKinds });
    const kernel = new MemNetlink.MemoryKernel();
    const base = yield* makeMemoryKube(server);
    const { kube, caughtUp } = trackInformers(opts.kube ? opts.kube(base) : base, base);
    const netlink = MemNetlink.make(kernel);
    const refs: NetnsRef[] = [];
    const ns: NetnsHandle[] = [];
    for (const [i, name] of nodes.entries()) {
      const ref = NetnsRef.path(kernel.createNetns(name));
      kernel.addHostNic({ name: "eth1", mtu: 1500 }, ref);
      const h = yield* netlink.netns(ref);
      yield* h.addAddress({ link: "eth1", cidr: `${underlay(i)}/24` });
      refs.push(ref);
      ns.push(h);
      yield* kube.create(NodeResource, {
        metadata: { name, labels: { "danm.test/cluster": "unit" } },
        status: { addresses: [{ type: "InternalIP", address: underlay(i) }] },
      });
    }
    const byNode = new Map<number, { agent: NetwatcherService; scope: Scope.Closeable }>();
    const agents: NetwatcherService[] = [];
    const refresh = () =>
      agents.splice(0, agents.length, ...[...byNode.keys()].sort().map((k) => byNode.get(k)!.agent));
    const layers = Layer.mergeAll(Layer.succeed(Kube, kube), Layer.succeed(Netlink, netlink));
    const start = (i: number, extra: Partial<NetwatcherConfig> = {}) =>
      Effect.gen(function* () {
        const scope = yield* Scope.make();
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void));
        const agent = yield* make({
          nodeName: nodes[i],
          netns: refs[i],
          reconcilePeriod: "1 hour",
          ...opts.config,
          ...extra,
        }).pipe(Effect.provide(layers), Scope.provide(scope));
        byNode.set(i, { agent, scope });
        refresh();
        return agent;
      });
    const stop = (i: number) =>
      Effect.gen(function* () {
        const entry = byNode.get(i);
        if (!entry) return;
        byNode.delete(i);
        refresh();
        yield* Scope.close(entry.scope, Exit.void);
      });
    const cluster: Cluster = {
      server,
      kernel,
      kube,
      ns,
      refs,
      agents,
      start,
      stop,
      caughtUp,
      reconcile: (i) => Effect.andThen(caughtUp, byNode.get(i)!.agent.reconcileNow),
      reconcileAll: Effect.andThen(caughtUp, Effect.forEach(agents, (a) => a.reconcileNow, { discard: true })),
    };
    if (opts.agents ?? true) { for (const i of nodes.keys()) yield* start(i); }
    return cluster;
  });

export const run = <A>(body: Effect.Effect<A, unknown, Scope.Scope>): Promise<A> =>
  Effect.runPromise(Effect.scoped(body));

export const danmNet = (
  name: string,
  options: NonNullable<DanmNet["spec"]["Options"]>,
  extra: { networkId?: string; annotations?: Record<string, string>; namespace?: string } = {},
): DanmNet => ({
  metadata: {
    name,
    namespace: extra.namespace ?? "default",
    ...(extra.annotations ? { annotations: extra.annotations } : {}),
  },
  spec: { NetworkID: extra.networkId ?? name, NetworkType: "ipvlan", Options: options },
});

export const eventsFor = (kube: KubeService, name: string, namespace = "default") =>
  Effect.map(
    kube.list(EventResource, { namespace }),
    (l): ReadonlyArray<Event> => l.items.filter((e) => e.involvedObject.name === name),
  );

/** Link names of a node namespace, sorted. */
export const linkNames = (h: NetnsHandle) => Effect.map(h.links(), (ls) => ls.map((l) => l.name).sort());
