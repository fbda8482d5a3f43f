// The netwatcher node agent: watches the network APIs (DanmNet, TenantNetwork, ClusterNetwork,
// NetworkAttachmentDefinition) and the Nodes, and keeps the host interfaces of ONE network namespace (its node)
// level-triggered in line with them: on every relevant change and every reconcile period it plans from the whole
// current state, converges the namespace, reports per-node status on the networks, rewrites NAD masters and emits
// Events on failures.
//
// It is a Layer parameterised by node name and namespace, so one process can run several (tests run three, one per
// node netns) and the node daemon can host it next to other services.
import {
  Cause,
  Clock,
  Context,
  Deferred,
  type Duration,
  Effect,
  Layer,
  Queue,
  type Scope,
  Semaphore,
  Stream,
} from "effect";
import { type Network, type NetworkKind, NetworkKinds, networkResources } from "../api/danm.ts";
import {
  type NetworkAttachmentDefinition,
  NetworkAttachmentDefinitionResource,
  type Node,
  NodeResource,
} from "../api/k8s.ts";
import {
  type Informer,
  type InformerEvent,
  Kube,
  type KubeError,
  type KubeService,
  type ResourceType,
} from "../ports/kube.ts";
import { Netlink, type NetlinkError, type NetnsHandle, NetnsRef } from "../ports/netlink.ts";
import { NetwatcherFailed } from "./errors.ts";
import { emitEvent, EventMemory, networkEvent } from "./events.ts";
import { type HostReport, reconcileHost } from "./host.ts";
import { netwatcherMetrics } from "./metrics.ts";
import type { ReadinessCheck } from "../observability/metrics.ts";
import { allReady, cachesSynced, informerSynced, makeApiProbe } from "../observability/readiness.ts";
import { nadDemand, nadRef, nadRestore, nadRewrite, OriginalMasterAnnotation, readNad } from "./nad.ts";
import { peerAddresses, UnderlayAnnotation } from "./peers.ts";
import {
  type Demand,
  demandOf,
  networkDemandInput,
  type NetworkRef,
  type Plan,
  planInterfaces,
  refKey,
  type VxlanMode,
} from "./plan.ts";
import { sameJson, updateNetworkStatus } from "./status.ts";

export interface NetwatcherConfig {
  /** The Kubernetes node this agent stands for: its status records and Events carry it. */
  readonly nodeName: string;
  /** The namespace whose host interfaces it manages; default the host namespace. */
  readonly netns?: NetnsRef;
  /** Full reconcile at least this often (repairs what no watch reports, e.g. `ip link del`). Default 30 s. */
  readonly reconcilePeriod?: Duration.Input;
  /** VXLAN mode of networks without the danm.io/vxlan-mode annotation. Default multicast (DANM's). */
  readonly defaultVxlanMode?: VxlanMode;
  /** Label selector choosing the Nodes that are unicast VXLAN peers. Default all nodes. */
  readonly peerSelector?: string;
  /**
   * Label selector restricting the networks and NADs this agent serves (default all): lets agents be rolled out
   * to a subset of networks, and keeps test agents off other tests' networks on a shared apiserver. Interfaces this
   * agent created for networks outside the selector count as unneeded and are removed.
   */
  readonly networkSelector?: string;
  /** Attempts of the startup probe per API (DANM: 5, 100 ms apart). */
  readonly probeAttempts?: number;
  /** How long the startup probe waits for an apiserver it cannot reach (default 60 s; then the agent fails). */
  readonly probeUnreachableMs?: number;
}

export interface NetworkOutcome {
  readonly ref: NetworkRef;
  readonly ready: boolean;
  readonly interfaces: ReadonlyArray<string>;
  readonly message: string;
  /** Why not ready: a conflict or invalid input (cluster-wide), or a failure on this node. */
  readonly reason?: "Conflict" | "InvalidNetwork" | "HostInterfaceFailed";
}

export interface ReconcileReport {
  readonly plan: Plan;
  readonly host: HostReport;
  /** By refKey: every network that needs host interfaces. */
  readonly networks: ReadonlyMap<string, NetworkOutcome>;
  readonly statusWrites: number;
  readonly nadPatches: number;
  /** Kube writes that failed this pass (retried next pass). */
  readonly errors: ReadonlyArray<string>;
}

export interface NetwatcherService {
  readonly nodeName: string;
  /** The APIs found at startup and watched, e.g. ["DanmNet", "NetworkAttachmentDefinition"]. */
  readonly apis: ReadonlyArray<string>;
  /** Runs a pass now (serialised with the background loop) and returns its report. */
  readonly reconcileNow: Effect.Effect<ReconcileReport, NetlinkError>;
  /** The report of the latest pass. */
  readonly lastReport: Effect.Effect<ReconcileReport | undefined>;
  /** Prometheus text exposition of this agent's metrics. */
  readonly metrics: Effect.Effect<string>;
  /** Why the agent is not ready (a cache not listed, the apiserver not answering), or undefined. */
  readonly notReady: ReadinessCheck;
  /** Never succeeds: fails when the agent stops for good (a watch died with an error it does not retry). */
  readonly join: Effect.Effect<never, NetwatcherFailed>;
}

export class Netwatcher extends Context.Service<Netwatcher, NetwatcherService>()("danm/core/netwatcher/Netwatcher") {}

type ApiName = NetworkKind | "NetworkAttachmentDefinition";

/** The kinds share one shape (upstream: one Go type); the per-kind literal `kind` is all that differs. */
const networkRt = (kind: NetworkKind) => networkResources[kind] as unknown as ResourceType<Network>;

/** Now in whole seconds, as status records and Events carry it. */
const nowText = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z"));

const refOf = (kind: NetworkKind, n: Network): NetworkRef => ({
  kind,
  name: n.metadata.name ?? "",
  ...(n.metadata.namespace === undefined ? {} : { namespace: n.metadata.namespace }),
  ...(n.metadata.uid === undefined ? {} : { uid: n.metadata.uid }),
  ...(n.metadata.creationTimestamp === undefined ? {} : { creationTimestamp: n.metadata.creationTimestamp }),
});

/** What of a network or NAD can change the plan (status writes by the agents themselves cannot). */
const planRelevant = (o: { metadata: Network["metadata"]; spec?: unknown }) => ({
  spec: o.spec,
  annotations: o.metadata.annotations,
  deleting: o.metadata.deletionTimestamp !== undefined,
  generation: o.metadata.generation,
});

/** What of a Node matters: its existence, underlay addresses and labels (not its heartbeats). */
const nodeRelevant = (n: Node) => ({
  underlay: n.metadata.annotations?.[UnderlayAnnotation],
  addresses: n.status?.addresses,
  labels: n.metadata.labels,
  deleting: n.metadata.deletionTimestamp !== undefined,
});

const isRelevant = <A>(ev: InformerEvent<A>, view: (a: A) => unknown) =>
  ev._tag !== "Updated" || !sameJson(view(ev.object), view(ev.previous));

/**
 * DANM's startup probe (spec §5.1): list each API a few times; the ones that answer are watched. A missing CRD
 * (404) is final at once; other errors are retried first.
 */
const probe = <A, I>(rt: ResourceType<A, I>, attempts: number, unreachableMs: number, labelSelector?: string) =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    let last: KubeError | undefined;
    const started = yield* Clock.currentTimeMillis;
    for (let i = 0;; i++) {
      const r = yield* Effect.result(kube.list(rt, labelSelector ? { labelSelector } : {}));
      if (r._tag === "Success") return { ok: true as const };
      last = r.failure;
      if (last._tag === "KubeNotFound") break;
      // An apiserver not reachable yet (starting, the node's network coming up) says nothing about which APIs
      // exist: wait for it (bounded) instead of dropping the kind for the agent's whole life.
      const unreachable = last._tag === "KubeUnavailable" || last._tag === "KubeTimeout";
      if (unreachable ? (yield* Clock.currentTimeMillis) - started >= unreachableMs : i + 1 >= attempts) break;
      yield* Effect.sleep(unreachable ? `${Math.min(2_000, 100 * 2 ** Math.min(i, 5))} millis` : "100 millis");
    }
    return { ok: false as const, reason: last?.message ?? "unknown" };
  });

/** Which network APIs (and the NAD API) can be listed, and why the others cannot. */
const probeApis = (attempts: number, unreachableMs: number, labelSelector: string | undefined) =>
  Effect.gen(function* () {
    const apis: ApiName[] = [];
    const missing: string[] = [];
    for (const kind of NetworkKinds) {
      const r = yield* probe(networkRt(kind), attempts, unreachableMs, labelSelector);
      if (r.ok) apis.push(kind);
      else missing.push(`${kind}: ${r.reason}`);
    }
    const nadProbe = yield* probe(NetworkAttachmentDefinitionResource, attempts, unreachableMs, labelSelector);
    if (nadProbe.ok) apis.push("NetworkAttachmentDefinition");
    else missing.push(`NetworkAttachmentDefinition: ${nadProbe.reason}`);
    return { apis, missing };
  });

/** What one reconcile pass reads and writes through (built once by `make`). */
interface PassInputs {
  readonly kube: KubeService;
  readonly ns: NetnsHandle;
  readonly node: string;
  readonly defaultMode: VxlanMode;
  readonly networkInformers: ReadonlyArray<{ kind: NetworkKind; inf: Informer<Network> }>;
  readonly nadInformer: Informer<NetworkAttachmentDefinition> | undefined;
  readonly nodeInformer: Informer<Node> | undefined;
  readonly peerInformer: Informer<Node> | undefined;
  readonly metrics: ReturnType<typeof netwatcherMetrics>;
  readonly events: EventMemory;
}

/**
 * One pass: plan the host interfaces every network and NAD needs, make them so, then write each network's status
 * record, point NADs' master at their interface, and report failures as Events (once per distinct failure).
 */
const reconcilePass = (
  { kube, ns, node, defaultMode, networkInformers, nadInformer, nodeInformer, peerInformer, metrics, events }:
    PassInputs,
) =>
  Effect.gen(function* () {
    const errors: string[] = [];
    const note = (what: string) => (e: { message: string }) =>
      Effect.sync(() => errors.push(`${what}: ${e.message}`)).pipe(
        Effect.andThen(Effect.logWarning(`netwatcher ${node}: ${what}: ${e.message}`)),
      );

    const live = <T extends { metadata: { deletionTimestamp?: string } }>(xs: ReadonlyArray<T>) =>
      xs.filter((x) => x.metadata.deletionTimestamp === undefined);
    const networks: Array<{ kind: NetworkKind; net: Network; ref: NetworkRef; demand?: Demand }> = [];
    for (const { kind, inf } of networkInformers) {
      for (const net of live(yield* inf.list)) {
        const ref = refOf(kind, net);
        const demand = demandOf(networkDemandInput(ref, net.spec, net.metadata.annotations), defaultMode);
        networks.push({ kind, net, ref, ...(demand ? { demand } : {}) });
      }
    }
    const nads = nadInformer ? live(yield* nadInformer.list) : [];
    const nadItems = nads.map((nad) => {
      const reading = readNad(nad);
      return { nad, reading, demand: nadDemand(nad, reading, defaultMode) };
    });
    const nodes: ReadonlyArray<Node> | undefined = nodeInformer ? yield* nodeInformer.list : undefined;
    const peers: ReadonlyArray<Node> = peerInformer ? yield* peerInformer.list : [];

    const demands = [
      ...networks.flatMap((n) => n.demand ? [n.demand] : []),
      ...nadItems.flatMap((n) => n.demand ? [n.demand] : []),
    ];
    const plan = planInterfaces(demands);
    const host = yield* reconcileHost(
      ns,
      new Map([...plan.interfaces].map(([name, p]) => [name, p.spec])),
      { node, peers: (family) => peerAddresses(peers, node, family) },
    );

    const outcomes = new Map<string, NetworkOutcome>();
    for (const d of demands) {
      const key = refKey(d.ref);
      const names = d.interfaces.map((s) => s.name);
      const refusal = plan.refused.get(key);
      if (refusal) {
        outcomes.set(key, {
          ref: d.ref,
          ready: false,
          interfaces: names,
          message: refusal.message,
          reason: refusal.reason,
        });
        continue;
      }
      const results = names.map((n) => host.outcomes.get(n) ?? { ready: false, message: `${n}: not planned` });
      const ready = results.every((r) => r.ready);
      outcomes.set(key, {
        ref: d.ref,
        ready,
        interfaces: names,
        message: results.map((r) => r.message).join("; "),
        ...(ready ? {} : { reason: "HostInterfaceFailed" as const }),
      });
    }

    // Status: every danm network (also those that stopped needing host interfaces: their record goes away).
    let statusWrites = 0;
    const liveNodes = nodes ? new Set(nodes.map((n) => n.metadata.name ?? "")) : undefined;
    for (const { kind, net, ref } of networks) {
      const o = outcomes.get(refKey(ref));
      const record = o ? { node, ready: o.ready, interfaces: [...o.interfaces], message: o.message } : undefined;
      const r = yield* updateNetworkStatus(networkRt(kind), net, { node, record, liveNodes, now: yield* nowText })
        .pipe(
          Effect.catch((e) => Effect.as(note(`status of ${kind} ${refKey(ref)}`)(e), "failed" as const)),
        );
      if (r === "written") statusWrites++;
      if (r !== "unchanged") metrics.statusWrites.inc({ result: r });
    }

    // NADs: point master at the host interface (or back at the original once none is needed).
    let nadPatches = 0;
    for (const { nad, reading, demand } of nadItems) {
      const ref = nadRef(nad);
      const ops = demand
        ? nadRewrite(nad, reading, plan.refused.has(refKey(ref)) ? undefined : demand)
        : nadRestore(nad);
      if (!ops) continue;
      const nadName = nad.metadata.name ?? "", namespace = nad.metadata.namespace ?? "default";
      const patched = yield* kube.patch(NetworkAttachmentDefinitionResource, nadName, { type: "json", ops }, {
        namespace,
      }).pipe(
        Effect.as(true),
        Effect.catch((e) =>
          Effect.gen(function* () {
            // The resourceVersion test fails (422/409) when another node rewrote it first or the user edited
            // it: a lost race, recomputed from the new object next pass. Anything else is worth a warning.
            const now = yield* Effect.option(kube.get(NetworkAttachmentDefinitionResource, nadName, { namespace }));
            const raced = now._tag === "None" || now.value.metadata.resourceVersion !== nad.metadata.resourceVersion;
            if (raced) yield* Effect.logDebug(`netwatcher ${node}: ${refKey(ref)} changed meanwhile: ${e.message}`);
            else yield* note(`rewrite master of ${refKey(ref)}`)(e);
            return false;
          })
        ),
      );
      if (!patched) continue;
      nadPatches++;
      const to = demand?.interfaces[0]?.name ?? nad.metadata.annotations?.[OriginalMasterAnnotation] ?? "";
      yield* emitEvent(
        networkEvent(ref, node, "Normal", "MasterRewritten", `spec.config.master set to ${to}`, yield* nowText),
      ).pipe(Effect.catch(note(`event for ${refKey(ref)}`)));
    }

    // Events for failures, once per distinct failure and network.
    const now = yield* nowText;
    events.retain(new Set(outcomes.keys()));
    for (const o of outcomes.values()) {
      if (o.ready) {
        events.clear(o.ref);
        continue;
      }
      const reason = o.reason ?? "HostInterfaceFailed";
      if (!events.shouldReport(o.ref, reason, o.message)) continue;
      yield* emitEvent(networkEvent(o.ref, node, "Warning", reason, `node ${node}: ${o.message}`, now)).pipe(
        Effect.tap(() => Effect.sync(() => metrics.events.inc({ reason }))),
        Effect.catch(note(`event for ${refKey(o.ref)}`)),
      );
    }

    for (const a of host.actions) metrics.changes.inc({ action: a.action });
    metrics.interfaces.set(host.owned.vlan, { kind: "vlan" });
    metrics.interfaces.set(host.owned.vxlan, { kind: "vxlan" });
    metrics.conflicts.set([...plan.refused.values()].filter((r) => r.reason === "Conflict").length);
    metrics.notReady.set([...outcomes.values()].filter((o) => !o.ready).length);
    return { plan, host, networks: outcomes, statusWrites, nadPatches, errors } satisfies ReconcileReport;
  });

export const make = (
  config: NetwatcherConfig,
): Effect.Effect<NetwatcherService, NetwatcherFailed | NetlinkError, Kube | Netlink | Scope.Scope> =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const netlink = yield* Netlink;
    const node = config.nodeName;
    const netnsRef = config.netns ?? NetnsRef.host;
    const ns: NetnsHandle = netnsRef._tag === "Host" ? netlink.host : yield* netlink.netns(netnsRef);
    const defaultMode = config.defaultVxlanMode ?? "multicast";
    const period = config.reconcilePeriod ?? "30 seconds";
    const attempts = config.probeAttempts ?? 5;
    const unreachableMs = config.probeUnreachableMs ?? 60_000;
    const metrics = netwatcherMetrics(node);
    const events = new EventMemory();

    // --- APIs and informers -------------------------------------------------------------------------------
    const { apis, missing } = yield* probeApis(attempts, unreachableMs, config.networkSelector);
    if (apis.length === 0) {
      return yield* new NetwatcherFailed({
        operation: "start netwatcher",
        object: `node ${node}`,
        reason: `no network API can be listed (${missing.join("; ")})`,
      });
    }
    yield* Effect.logInfo(
      `netwatcher ${node}: watching ${apis.join(", ")} in ${NetnsRef.describe(netnsRef)}` +
        (missing.length > 0 ? `; not watching ${missing.join("; ")}` : ""),
    );
    // Nodes: optional (unicast peers, pruning records of deleted nodes); without them both are skipped.
    const nodesUsable = (yield* probe(NodeResource, attempts, unreachableMs)).ok;
    if (!nodesUsable) yield* Effect.logWarning(`netwatcher ${node}: cannot list Nodes: no unicast peers, no pruning`);

    const failure = yield* Deferred.make<never, NetwatcherFailed>();
    const wake = yield* Queue.sliding<void>(1);
    const watched = <A>(what: string, inf: Informer<A>, view: (a: A) => unknown) =>
      Effect.gen(function* () {
        yield* inf.synced.pipe(Effect.mapError((e) => watchFailed(what, e)));
        yield* inf.changes.pipe(
          Stream.filter((ev) => isRelevant(ev, view)),
          Stream.runForEach(() => Queue.offer(wake, undefined)),
          Effect.catch((e: KubeError) => Deferred.fail(failure, watchFailed(what, e))),
          Effect.forkScoped,
        );
        return inf;
      });
    const watchFailed = (what: string, e: KubeError) =>
      new NetwatcherFailed({ operation: "watch", object: what, reason: e.message });

    const selected = config.networkSelector ? { labelSelector: config.networkSelector } : {};
    const networkInformers: Array<{ kind: NetworkKind; inf: Informer<Network> }> = [];
    for (const kind of NetworkKinds) {
      if (!apis.includes(kind)) continue;
      const inf = yield* kube.informer(networkRt(kind), selected);
      networkInformers.push({ kind, inf: yield* watched(kind, inf, planRelevant) });
    }
    const nadInformer = apis.includes("NetworkAttachmentDefinition")
      ? yield* watched(
        "NetworkAttachmentDefinition",
        yield* kube.informer(NetworkAttachmentDefinitionResource, selected),
        planRelevant,
      )
      : undefined;
    const nodeInformer = nodesUsable
      ? yield* watched("Node", yield* kube.informer(NodeResource), nodeRelevant)
      : undefined;
    const peerInformer = nodesUsable && config.peerSelector
      ? yield* watched("Node", yield* kube.informer(NodeResource, { labelSelector: config.peerSelector }), nodeRelevant)
      : nodeInformer;

    const informers: Array<readonly [string, Effect.Effect<boolean>]> = [
      ...networkInformers.map(({ kind, inf }) => [kind, informerSynced(inf)] as const),
      ...(nadInformer ? [["NetworkAttachmentDefinitions", informerSynced(nadInformer)] as const] : []),
      ...(nodeInformer ? [["Nodes", informerSynced(nodeInformer)] as const] : []),
    ];
    // A read of an object that never exists: NotFound proves the apiserver answers.
    const kind = networkInformers[0]?.kind;
    const apiReachable = yield* makeApiProbe(() =>
      kind
        ? kube.get(networkRt(kind), "danm-readiness-probe", { namespace: "default" })
        : kube.get(NetworkAttachmentDefinitionResource, "danm-readiness-probe", { namespace: "default" })
    );
    const notReady = allReady({ caches: cachesSynced(informers), apiserver: apiReachable });

    // --- One pass -----------------------------------------------------------------------------------------
    const lock = yield* Semaphore.make(1);
    let last: ReconcileReport | undefined;

    const passBody = reconcilePass({
      kube,
      ns,
      node,
      defaultMode,
      networkInformers,
      nadInformer,
      nodeInformer,
      peerInformer,
      metrics,
      events,
    });

    const pass = lock.withPermit(
      Effect.gen(function* () {
        const started = performance.now();
        const r = yield* Effect.result(passBody);
        metrics.reconcileSeconds.observe((performance.now() - started) / 1000);
        metrics.reconciles.inc({ result: r._tag === "Success" && r.success.errors.length === 0 ? "ok" : "error" });
        if (r._tag === "Failure") {
          yield* Effect.logError(`netwatcher ${node}: reconcile failed: ${r.failure.message}`);
          return yield* r.failure;
        }
        last = r.success;
        return r.success;
      }),
    ).pipe(Effect.provideService(Kube, kube));

    // --- The loop: a change or the period, whichever comes first; bursts of changes coalesce. ---------------
    yield* Effect.gen(function* () {
      while (true) {
        // A failed pass is logged and retried on the next trigger; a defect ends the agent (below).
        yield* pass.pipe(Effect.ignore);
        yield* Effect.race(Queue.take(wake), Effect.sleep(period));
        yield* Effect.sleep("20 millis");
        yield* Queue.clear(wake);
      }
    }).pipe(
      // A loop that died must not leave a process that looks alive but reconciles nothing (DANM exits, §5.1).
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause) ? Effect.void : Deferred.fail(
          failure,
          new NetwatcherFailed({ operation: "reconcile", object: `node ${node}`, reason: Cause.pretty(cause) }),
        )
      ),
      Effect.forkScoped,
    );

    return {
      nodeName: node,
      apis,
      reconcileNow: pass,
      lastReport: Effect.sync(() => last),
      metrics: Effect.sync(() => metrics.registry.render()),
      notReady,
      join: Deferred.await(failure),
    } satisfies NetwatcherService;
  });

/** The agent as a Layer: it runs from the layer's construction until its scope closes. */
export const layer = (
  config: NetwatcherConfig,
): Layer.Layer<Netwatcher, NetwatcherFailed | NetlinkError, Kube | Netlink> => Layer.effect(Netwatcher, make(config));
