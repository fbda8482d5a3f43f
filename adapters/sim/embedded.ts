// The embedded simulation behind `deno task sim`: a scenario runs through danm's real core programs on the
// in-memory layers — the Kubernetes API twin with the danm webhook as its admission chain (cluster.ts), one
// simulated kernel per node with its host NICs, a netwatcher and a CNI daemon per node (nodes.ts), a fake kubelet
// step per pod: a netns and a CNI ADD exactly as a runtime sends it (pods.ts), simulated delegate plugins
// (delegates.ts), svcwatcher (services.ts) and the MultiNetworkPolicies' view (policies.ts) — then reports what came out. This module composes them in order.
import { Effect, type Scope } from "effect";
import { layerMemoryFs, MemoryFileSystem } from "../fs/memory.ts";
import { simulatedPlugins, simulatedPluginTypes } from "./delegates.ts";
import { applyClusterObjects, clusterObjectKinds, settle, type SimRecord, startApiTwin } from "./cluster.ts";
import { binDir, cniDir, hostInterfaces, type NodeCtx, startNode } from "./nodes.ts";
import { simulatePod } from "./pods.ts";
import { policyView } from "./policies.ts";
import { reportWarnings, type WarnedObject } from "./admission.ts";
import { danmServices, runSvcwatcherUntilSettled, serviceEndpoints } from "./services.ts";
import { ClusterNetworkResource, DanmNetResource, type Network, TenantNetworkResource } from "../../core/api/danm.ts";
import { backendForType } from "../../core/cni/backends/kinds.ts";
import { status as networkStatus } from "../../core/ctl/commands.ts";
import { Fs } from "../../core/ports/filesystem.ts";
import { Kube, type KubeService, type ResourceType } from "../../core/ports/kube.ts";
import { expandPods, type ScenarioError, type ScenarioObject, simNodes } from "../../core/sim/scenario.ts";
import type { SimOutcome, SimPod } from "../../core/sim/report.ts";
import { initialProgress, type SimProgress } from "../../core/sim/progress.ts";

/** Annotation on a network: the delegate CNI config (JSON) the simulated node has as <cniDir>/<NetworkID>.conf. */
export const cniConfigAnnotation = "sim.danm.io/cni-config";

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** A delegate config for networks of a static NetworkType, unless the scenario gives one. */
export function defaultDelegateConfig(n: Network, index: number): Record<string, unknown> | undefined {
  if (backendForType(n.spec.NetworkType).generated) return undefined;
  const type = (n.spec.NetworkType ?? "").toLowerCase();
  const nid = n.spec.NetworkID ?? n.metadata.name ?? "net";
  const annotation = n.metadata.annotations?.[cniConfigAnnotation];
  if (annotation) {
    try {
      const parsed: unknown = JSON.parse(annotation);
      if (isObject(parsed)) return { ...parsed };
    } catch { /* reported by the caller as a scenario error */ }
  }
  const base = { cniVersion: "0.4.0", name: nid, type };
  const plugin = simulatedPlugins[type];
  if (plugin?.podNetworkOctet !== undefined) return base;
  return {
    ...base,
    ...(plugin?.bridge ? { bridge: `br-${nid}`.slice(0, 15), isGateway: true } : {}),
    ipam: { type: "host-local", subnet: `10.99.${index}.0/24` },
  };
}

/**
 * The simulated plugins "installed" in CNI_PATH (danm checks for the binary before running it), and the delegate
 * configs of static-type networks as files on every node (one shared memory filesystem).
 */
const installCniFiles = (kube: KubeService) =>
  Effect.gen(function* () {
    const fs = yield* Fs;
    yield* fs.mkdir(binDir);
    for (const t of [...simulatedPluginTypes, "fakeipam"]) {
      yield* fs.writeAtomic(`${binDir}/${t}`, "#!simulated\n", { mode: 0o755 });
    }
    yield* fs.mkdir(cniDir);
    let k = 0;
    for (const rt of [DanmNetResource, TenantNetworkResource, ClusterNetworkResource] as ResourceType<Network>[]) {
      for (const n of (yield* kube.list(rt).pipe(Effect.orDie)).items) {
        const conf = defaultDelegateConfig(n, ++k);
        if (!conf) continue;
        const nid = n.spec.NetworkID ?? n.metadata.name ?? "";
        yield* fs.writeAtomic(`${cniDir}/${nid}.conf`, JSON.stringify(conf)).pipe(Effect.ignore);
      }
    }
  });

export interface EmbeddedOptions {
  /** Wait this long at most for Services to settle. */
  readonly serviceSettleMs?: number;
  /** Told every time an object or a pod is done (cheap: keep the latest, draw it on a timer). */
  readonly onProgress?: (progress: SimProgress) => void;
  /** Asked before every pod: once it answers true, no further pod starts and the outcome covers what was done. */
  readonly stopRequested?: () => boolean;
}

export const runEmbedded = (
  scenario: { readonly objects: ReadonlyArray<ScenarioObject>; readonly errors: ReadonlyArray<ScenarioError> },
  options: EmbeddedOptions = {},
): Effect.Effect<SimOutcome, never, Scope.Scope> =>
  Effect.gen(function* () {
    const warned: WarnedObject[] = [];
    const kube = yield* startApiTwin(warned);
    const nodes = simNodes(scenario.objects);
    const expanded = expandPods(scenario.objects, nodes);
    const started = performance.now();
    let progress = initialProgress(
      nodes.length + scenario.objects.filter((o) => clusterObjectKinds.has(o.kind)).length,
      expanded.pods.length,
    );
    const advance = (change: Partial<SimProgress>) => {
      progress = { ...progress, ...change };
      options.onProgress?.(progress);
    };
    const record: SimRecord = {
      errors: [
        ...scenario.errors.map((e) => e.message),
        ...nodes.flatMap((n) => n.problems.map((e) => e.message)),
      ],
      rejected: [],
      objectDone: () => advance({ objectsApplied: progress.objectsApplied + 1 }),
    };

    // Nodes first (a simulated kernel each, with the host NICs, and the Node object), then the cluster's objects.
    const fs = new MemoryFileSystem();
    const ctxs = new Map<string, NodeCtx>();
    for (const [index, node] of nodes.entries()) {
      ctxs.set(node.name, yield* startNode(kube, fs, node, index));
      record.objectDone();
    }
    yield* applyClusterObjects(kube, scenario.objects, record);
    yield* installCniFiles(kube).pipe(Effect.provide(layerMemoryFs(fs)), Effect.orDie);

    // Host interfaces first: built-in IPVLAN needs its parent to exist.
    yield* settle;
    for (const c of ctxs.values()) yield* c.reconcile.pipe(Effect.ignore);

    // Pods: admission, then a sandbox on the node and a CNI ADD the way a runtime sends it.
    record.errors.push(...expanded.errors.map((e) => e.message));
    const pods: SimPod[] = [];
    let stopped = false;
    for (const p of expanded.pods) {
      if (options.stopRequested?.()) {
        stopped = true;
        break;
      }
      if (progress.podsStartedMs === undefined) progress = { ...progress, podsStartedMs: performance.now() - started };
      const attached = yield* simulatePod(kube, ctxs, p, record, pods);
      advance(attached ? { podsAttached: progress.podsAttached + 1 } : { podsFailed: progress.podsFailed + 1 });
    }

    const services = yield* danmServices(kube);
    if (services.length > 0 && !stopped) yield* runSvcwatcherUntilSettled(kube, options.serviceSettleMs ?? 5000);

    // One more netwatcher pass so that the reported status is current.
    for (const c of ctxs.values()) yield* c.reconcile.pipe(Effect.ignore);
    yield* settle;

    const policed = yield* policyView(kube, pods);
    const outcome: SimOutcome = {
      pods: policed.pods,
      ...(policed.policies.length > 0 ? { policies: policed.policies } : {}),
      nodes: yield* Effect.forEach([...ctxs.values()], (c) => hostInterfaces(c)),
      services: yield* Effect.forEach(services, (s) => serviceEndpoints(kube, s)),
      networks: yield* networkStatus.pipe(Effect.provideService(Kube, kube), Effect.orDie),
      rejected: record.rejected,
      ...(warned.length > 0 ? { warnings: reportWarnings(scenario.objects, warned) } : {}),
      errors: record.errors,
      ...(stopped ? { stopped: { podsPlanned: expanded.pods.length } } : {}),
    };
    return outcome;
  });
