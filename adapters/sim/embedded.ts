// The embedded simulation behind `deno task sim`: a scenario runs through danm's real core programs on the
// in-memory layers — the Kubernetes API twin with the danm webhook as its admission chain, one simulated kernel
// per node with its host NICs, a netwatcher and a CNI daemon per node, a fake kubelet step per pod (a netns and a
// CNI ADD exactly as a runtime sends it), simulated delegate plugins, and svcwatcher — then reports what came out.
import { Effect, Layer, Schema, type Scope } from "effect";
import { layerMemoryFs, MemoryFileSystem } from "../fs/memory.ts";
import { makeMemoryKube, MemoryApiServer } from "../kube/memory.ts";
import * as MemNetlink from "../netlink/memory.ts";
import { MemoryProcess } from "../process/memory.ts";
import { registerSimulatedDelegates, simulatedPluginTypes } from "./delegates.ts";
import { webhookHooks } from "./admission.ts";
import {
  ClusterNetworkResource,
  type DanmEp,
  DanmEpResource,
  type DanmKind,
  DanmNetResource,
  decodeDanmObject,
  type Network,
  TenantConfigResource,
  TenantNetworkResource,
} from "../../core/api/danm.ts";
import {
  EndpointsResource,
  NamespaceResource,
  NetworkAttachmentDefinitionResource,
  NodeResource,
  Pod,
  PodResource,
  Service,
  ServiceResource,
} from "../../core/api/k8s.ts";
import { serviceSelection } from "../../core/api/annotations.ts";
import { reservedIpResource } from "../../core/api/reservedip.ts";
import { makeHandler } from "../../core/cni/node.ts";
import { EpLabels, labelValue } from "../../core/cni/endpoints.ts";
import { simDevicePlugin } from "./devices.ts";
import { status as networkStatus } from "../../core/ctl/commands.ts";
import { make as makeNetwatcher } from "../../core/netwatcher/agent.ts";
import { runController } from "../../core/svcwatcher/controller.ts";
import { makeAdmission } from "../../core/webhook/admit.ts";
import { makeClaims } from "../../core/webhook/claims.ts";
import { WebhookMetrics } from "../../core/webhook/metrics.ts";
import { makeClusterView } from "../../core/webhook/state.ts";
import { Fs } from "../../core/ports/filesystem.ts";
import { Kube, type KubeError, type KubeService, type ResourceType } from "../../core/ports/kube.ts";
import { Netlink, NetnsRef } from "../../core/ports/netlink.ts";
import { Process } from "../../core/ports/process.ts";
import {
  describeObject,
  expandPods,
  type JsonObject,
  type ScenarioError,
  type ScenarioObject,
  type SimNode,
  simNodes,
} from "../../core/sim/scenario.ts";
import type { SimOutcome, SimPod, SimPodInterface } from "../../core/sim/report.ts";
import { initialProgress, type SimProgress } from "../../core/sim/progress.ts";

const binDir = "/opt/cni/bin";
const cniDir = "/etc/cni/net.d";
/** Annotation on a network: the delegate CNI config (JSON) the simulated node has as <cniDir>/<NetworkID>.conf. */
export const cniConfigAnnotation = "sim.danm.io/cni-config";

const statusKinds = [DanmNetResource, TenantNetworkResource, ClusterNetworkResource];

interface NodeCtx {
  readonly node: SimNode;
  readonly index: number;
  readonly kernel: MemNetlink.MemoryKernel;
  readonly netlink: Netlink["Service"];
  readonly handle: (request: unknown) => Effect.Effect<{ code: number; stdout: string; stderr: string }>;
  readonly reconcile: Effect.Effect<unknown, unknown>;
}

const settle = Effect.sleep("15 millis");

/** Scenario kinds the simulation creates as they are (besides the Nodes, which it makes from the scenario). */
const clusterObjectKinds = new Set([
  "Namespace",
  "TenantConfig",
  "ClusterNetwork",
  "TenantNetwork",
  "DanmNet",
  "ReservedIP",
  "NetworkAttachmentDefinition",
  "Service",
]);
/** Kinds that become pods. */
const workloadKinds = new Set(["Node", "Pod", "Deployment", "StatefulSet", "ReplicaSet", "DaemonSet"]);

const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

const reason = (e: KubeError | { message: string }) => {
  const m = e.message;
  // "create DanmNet default/x: forbidden: <the webhook's message>" → the webhook's message, as kubectl shows it.
  const i = m.indexOf(": forbidden: ");
  return i >= 0 ? m.slice(i + ": forbidden: ".length) : m;
};

/** A delegate config for networks of a static NetworkType, unless the scenario gives one. */
export function defaultDelegateConfig(n: Network, index: number): Record<string, unknown> | undefined {
  const type = (n.spec.NetworkType ?? "").toLowerCase();
  if (!type || type === "ipvlan" || type === "macvlan" || type === "sriov") return undefined;
  const nid = n.spec.NetworkID ?? n.metadata.name ?? "net";
  const annotation = n.metadata.annotations?.[cniConfigAnnotation];
  if (annotation) {
    try {
      const parsed: unknown = JSON.parse(annotation);
      if (isObject(parsed)) return { ...parsed };
    } catch { /* reported by the caller as a scenario error */ }
  }
  const base = { cniVersion: "0.4.0", name: nid, type };
  if (type === "flannel" || type === "calico") return base;
  return {
    ...base,
    ...(type === "bridge" ? { bridge: `br-${nid}`.slice(0, 15), isGateway: true } : {}),
    ipam: { type: "host-local", subnet: `10.99.${index}.0/24` },
  };
}

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
    const errors: string[] = scenario.errors.map((e) => e.message);
    const rejected: SimOutcome["rejected"][number][] = [];
    const server = new MemoryApiServer({ statusSubresources: statusKinds });
    const kube: KubeService = yield* makeMemoryKube(server);
    const withKube = <A, E, R>(e: Effect.Effect<A, E, R>) => Effect.provideService(e, Kube, kube);

    // The webhook, as the apiserver's admission chain.
    const view = yield* withKube(makeClusterView());
    const claims = yield* withKube(makeClaims({ namespace: "kube-system", graceSeconds: 120 }));
    const admission = makeAdmission(view, claims, new WebhookMetrics(), { namingScheme: "" });
    for (const hook of webhookHooks(admission, kube)) server.addAdmissionHook(hook);
    yield* view.ready;

    // Nodes: a simulated kernel each, with the host NICs, and the Node object.
    const nodes = simNodes(scenario.objects);
    errors.push(...nodes.flatMap((n) => n.problems.map((e) => e.message)));
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
    const objectDone = () => advance({ objectsApplied: progress.objectsApplied + 1 });
    const fsState = new MemoryFileSystem();
    const fsLayer = layerMemoryFs(fsState);
    const ctxs = new Map<string, NodeCtx>();
    for (const [index, node] of nodes.entries()) {
      const kernel = new MemNetlink.MemoryKernel({
        hostNics: node.hostInterfaces.map((name) => ({ name, mtu: 1500 })),
      });
      const netlink = MemNetlink.make(kernel);
      // Every NIC sits on its own underlay subnet (the first on 192.168.100.0/24, the next on .101 …): VXLAN
      // needs a source address on its host device, as on a real node.
      for (const [k, nic] of node.hostInterfaces.entries()) {
        const address = k === 0 ? node.address : `192.168.${100 + k}.${11 + index}`;
        yield* netlink.host.addAddress({ link: nic, cidr: `${address}/24` }).pipe(Effect.ignore);
      }
      yield* kube.create(NodeResource, {
        metadata: { name: node.name, labels: { ...node.labels, "kubernetes.io/hostname": node.name } },
        status: {
          addresses: [{ type: "InternalIP", address: node.address }],
          conditions: [{ type: "Ready", status: "True" }],
        },
      }).pipe(Effect.ignore);
      objectDone();
      const proc = new MemoryProcess();
      registerSimulatedDelegates(proc, netlink, { binDir, nodeIndex: index });
      const services = Layer.mergeAll(
        Layer.succeed(Kube, kube),
        Layer.succeed(Netlink, netlink),
        Layer.succeed(Process, proc.service),
        fsLayer,
      );
      const agent = yield* makeNetwatcher({ nodeName: node.name, reconcilePeriod: "1 hour" }).pipe(
        Effect.provide(services),
        Effect.orDie,
      );
      const cni = yield* makeHandler({
        nodeName: node.name,
        socketPath: `/run/danm/${node.name}.sock`,
        stateDir: `/run/danm/${node.name}/sandboxes`,
        delegatePath: binDir,
        attachTimeoutMs: 10_000,
        podDevices: simDevicePlugin(node, kube),
      }).pipe(Effect.provide(services));
      // `fakeipam` in CNI_PATH: like the real thin client, it asks this node's daemon for the addresses.
      proc.register(`${binDir}/fakeipam`, (inv) =>
        Effect.map(
          cni.handle({ program: "fakeipam", env: inv.env, stdin: new TextDecoder().decode(inv.stdin) }),
          (r) => ({ code: r.code, stdout: r.stdout, stderr: r.stderr }),
        ));
      ctxs.set(node.name, {
        node,
        index,
        kernel,
        netlink,
        handle: cni.handle,
        reconcile: agent.reconcileNow,
      });
    }

    // The cluster's objects, in dependency order; every create goes through admission.
    const byKind = (kinds: ReadonlyArray<string>) => scenario.objects.filter((o) => kinds.includes(o.kind));
    const createObject = <A, I>(o: ScenarioObject, rt: ResourceType<A, I>, value: A) =>
      kube.create(rt, value).pipe(
        Effect.asVoid,
        Effect.ensuring(Effect.sync(objectDone)),
        Effect.catch((e) =>
          Effect.sync(() =>
            rejected.push({
              kind: o.kind,
              ...(o.namespace ? { namespace: o.namespace } : {}),
              name: o.name,
              reason: reason(e),
              source: o.source.file,
            })
          )
        ),
        Effect.andThen(settle),
      );
    const decodeWith = <A, I>(o: ScenarioObject, rt: ResourceType<A, I>) =>
      Schema.decodeUnknownEffect(rt.schema)(o.raw).pipe(
        Effect.mapError((e) => `${o.source.file}: ${describeObject(o)}: ${e.message}`),
        Effect.tapError(() => Effect.sync(objectDone)),
      );

    for (const o of byKind(["Namespace"])) {
      const v = yield* Effect.result(decodeWith(o, NamespaceResource));
      if (v._tag === "Success") yield* createObject(o, NamespaceResource, v.success);
      else errors.push(v.failure);
    }
    const danmKinds: ReadonlyArray<[DanmKind, ResourceType<never>]> = [
      ["TenantConfig", TenantConfigResource as unknown as ResourceType<never>],
      ["ClusterNetwork", ClusterNetworkResource as unknown as ResourceType<never>],
      ["TenantNetwork", TenantNetworkResource as unknown as ResourceType<never>],
      ["DanmNet", DanmNetResource as unknown as ResourceType<never>],
    ];
    for (const [kind, rt] of danmKinds) {
      for (const o of byKind([kind])) {
        // kubectl's strict field validation: unknown fields are an error, not silently dropped.
        const v = yield* Effect.result(decodeDanmObject(kind, o.raw, "strict"));
        if (v._tag === "Failure") {
          rejected.push({
            kind,
            ...(o.namespace ? { namespace: o.namespace } : {}),
            name: o.name,
            reason: v.failure.message,
            source: o.source.file,
          });
          objectDone();
          continue;
        }
        const value = {
          ...v.success,
          metadata: {
            ...v.success.metadata,
            ...(o.namespace
              ? { namespace: o.namespace }
              : kind === "TenantNetwork" || kind === "DanmNet"
              ? { namespace: "default" }
              : {}),
          },
        };
        yield* createObject(o, rt, value as never);
      }
    }
    /** Objects of a namespaced kind the scenario may give without a namespace (as kubectl: `default`). */
    const createNamespaced = <A extends { readonly metadata: { readonly namespace?: string } }, I>(
      kind: string,
      rt: ResourceType<A, I>,
    ) =>
      Effect.forEach(byKind([kind]), (o) =>
        Effect.gen(function* () {
          const v = yield* Effect.result(decodeWith(o, rt));
          if (v._tag === "Failure") return void errors.push(v.failure);
          yield* createObject(o, rt, {
            ...v.success,
            metadata: { ...v.success.metadata, namespace: o.namespace ?? "default" },
          });
        }), { discard: true });
    yield* createNamespaced("ReservedIP", reservedIpResource);
    yield* createNamespaced("NetworkAttachmentDefinition", NetworkAttachmentDefinitionResource);
    for (const o of byKind(["Service"])) {
      const v = yield* Effect.result(decodeWith(o, ServiceResource));
      if (v._tag === "Success") {
        yield* createObject(o, ServiceResource, {
          ...v.success,
          metadata: { ...v.success.metadata, namespace: o.namespace ?? "default" },
        } as Service);
      } else errors.push(v.failure);
    }
    for (const o of scenario.objects) {
      if (!clusterObjectKinds.has(o.kind) && !workloadKinds.has(o.kind)) {
        errors.push(`${o.source.file}: ${describeObject(o)}: kind ${o.kind} is not simulated (skipped)`);
      }
    }

    // Delegate configs of static-type networks, as files on every node (one shared memory filesystem).
    yield* Effect.gen(function* () {
      const fs = yield* Fs;
      // The simulated plugins "installed" in CNI_PATH: danm checks for the binary before running it.
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
    }).pipe(Effect.provide(fsLayer), Effect.orDie);

    // Host interfaces first: built-in IPVLAN needs its parent to exist.
    yield* settle;
    for (const c of ctxs.values()) yield* c.reconcile.pipe(Effect.ignore);

    // Pods: admission, then a sandbox on the node and a CNI ADD the way a runtime sends it.
    errors.push(...expanded.errors.map((e) => e.message));
    const pods: SimPod[] = [];
    /** One pod through admission and its node's CNI ADD; true when it came up with its interfaces. */
    const simulatePod = (p: (typeof expanded.pods)[number]) =>
      Effect.gen(function* () {
        const meta = isObject(p.pod.metadata) ? p.pod.metadata : {};
        const name = String(meta.name), namespace = String(meta.namespace ?? "default");
        const nodeName = String((p.pod.spec as JsonObject).nodeName);
        const decoded = yield* Effect.result(Schema.decodeUnknownEffect(Pod)(p.pod));
        if (decoded._tag === "Failure") {
          errors.push(`${p.source.file}: Pod ${namespace}/${name}: ${decoded.failure.message}`);
          return false;
        }
        const created = yield* Effect.result(kube.create(PodResource, decoded.success));
        if (created._tag === "Failure") {
          rejected.push({ kind: "Pod", namespace, name, reason: reason(created.failure), source: p.source.file });
          return false;
        }
        const ctx = ctxs.get(nodeName);
        if (!ctx) {
          pods.push({
            namespace,
            name,
            node: nodeName,
            owner: p.owner,
            status: "Failed",
            error: `no node ${nodeName} in the scenario`,
            interfaces: [],
          });
          return false;
        }
        const sandbox = Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0"))
          .join("");
        const netnsPath = yield* ctx.netlink.createNetns(`${namespace}-${name}`.slice(0, 60)).pipe(Effect.orDie);
        const response = yield* ctx.handle({
          program: "danm",
          env: {
            CNI_COMMAND: "ADD",
            CNI_CONTAINERID: sandbox,
            CNI_NETNS: netnsPath,
            CNI_IFNAME: "eth0",
            CNI_PATH: binDir,
            CNI_ARGS:
              `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=${sandbox};K8S_POD_UID=${created.success.metadata.uid}`,
          },
          stdin: JSON.stringify({ cniVersion: "1.0.0", name: "danm", type: "danm", cniDir }),
        });
        if (response.code !== 0) {
          let msg = response.stdout;
          try {
            const e = JSON.parse(response.stdout) as { msg?: string; details?: string };
            msg = e.details ? `${e.msg}: ${e.details}` : e.msg ?? msg;
          } catch { /* keep the raw text */ }
          pods.push({ namespace, name, node: nodeName, owner: p.owner, status: "Failed", error: msg, interfaces: [] });
          return false;
        }
        const result = JSON.parse(response.stdout) as { ips?: Array<{ address: string }> };
        const ips = (result.ips ?? []).map((i) => i.address.split("/")[0]);
        const now = new Date().toISOString();
        yield* kube.patch(PodResource, name, {
          type: "merge",
          patch: {
            status: {
              phase: "Running",
              ...(ips.length ? { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } : {}),
              conditions: ["PodScheduled", "Initialized", "ContainersReady", "Ready"].map((type) => ({
                type,
                status: "True",
                lastTransitionTime: now,
              })),
            },
          },
        }, { namespace, subresource: "status" }).pipe(Effect.ignore);
        pods.push({
          namespace,
          name,
          node: nodeName,
          owner: p.owner,
          status: "Running",
          interfaces: yield* podInterfaces(kube, ctx, NetnsRef.path(netnsPath), created.success),
        });
        return true;
      });
    let stopped = false;
    for (const p of expanded.pods) {
      if (options.stopRequested?.()) {
        stopped = true;
        break;
      }
      if (progress.podsStartedMs === undefined) progress = { ...progress, podsStartedMs: performance.now() - started };
      const attached = yield* simulatePod(p);
      advance(attached ? { podsAttached: progress.podsAttached + 1 } : { podsFailed: progress.podsFailed + 1 });
    }

    // svcwatcher: run the controller until the danm Services' Endpoints stop changing.
    const allServices = (yield* kube.list(ServiceResource).pipe(Effect.orDie)).items;
    const services = yield* Effect.filter(allServices, (s) =>
      serviceSelection(s.metadata.annotations ?? {}).pipe(
        Effect.map((sel) => sel !== undefined),
        Effect.orElseSucceed(() => false),
      ));
    if (services.length > 0 && !stopped) {
      yield* Effect.forkScoped(withKube(runController({ identity: "danm-sim" })).pipe(Effect.ignore));
      const snapshot = Effect.map(
        kube.list(EndpointsResource).pipe(Effect.orDie),
        (l) => JSON.stringify(l.items.map((e) => [e.metadata.name, e.subsets])),
      );
      let last = "", stable = 0;
      const deadline = Date.now() + (options.serviceSettleMs ?? 5000);
      while (stable < 3 && Date.now() < deadline) {
        yield* Effect.sleep("100 millis");
        const s = yield* snapshot;
        stable = s === last ? stable + 1 : 0;
        last = s;
      }
    }

    // One more netwatcher pass so that the reported status is current.
    for (const c of ctxs.values()) yield* c.reconcile.pipe(Effect.ignore);
    yield* settle;

    const outcome: SimOutcome = {
      pods,
      nodes: yield* Effect.forEach([...ctxs.values()], (c) => hostInterfaces(c)),
      services: yield* Effect.forEach(services, (s) => serviceEndpoints(kube, s)),
      networks: yield* withKube(networkStatus).pipe(Effect.orDie),
      rejected,
      errors,
      ...(stopped ? { stopped: { podsPlanned: expanded.pods.length } } : {}),
    };
    return outcome;
  });

/** What the pod's namespace holds, labelled with the network each interface belongs to (from its DanmEps). */
const podInterfaces = (kube: KubeService, ctx: NodeCtx, ref: NetnsRef, pod: Pod) =>
  Effect.scoped(Effect.gen(function* () {
    const eps = (yield* kube.list(DanmEpResource, {
      namespace: pod.metadata.namespace ?? "default",
      labelSelector: `${EpLabels.podUid}=${labelValue(pod.metadata.uid ?? "")}`,
    }).pipe(Effect.orDie)).items.filter((e: DanmEp) => e.spec.Pod === pod.metadata.name);
    const ns = yield* ctx.netlink.netns(ref).pipe(Effect.orDie);
    const links = (yield* ns.links().pipe(Effect.orDie)).filter((l) => l.kind !== "loopback");
    const addrs = yield* ns.addresses({}).pipe(Effect.orDie);
    const routes = yield* ns.routes({ table: "all" }).pipe(Effect.orDie);
    const rules = yield* ns.rules().pipe(Effect.orDie);
    const out: SimPodInterface[] = [];
    for (const l of links.sort((a, b) => a.name.localeCompare(b.name, "en"))) {
      const ep = eps.find((e) => e.spec.Interface.Name === l.name);
      const ips = addrs.filter((a) => a.link === l.index && a.scope !== "link").map((a) => a.cidr);
      const own = routes.filter((r) => r.link === l.index && r.type === "unicast" && r.table !== 255 && r.gateway)
        .map((r) => `${r.dst} via ${r.gateway}${r.table !== 254 ? ` table ${r.table}` : ""}`);
      // Policy rules of the tables this interface's routes live in (danm adds one per address for proutes).
      const tables = new Set(
        routes.filter((r) => r.link === l.index && r.table !== 254 && r.table !== 255).map((r) => r.table),
      );
      const ruleText = rules.filter((r) => tables.has(r.table) && r.src).map((r) => `from ${r.src} lookup ${r.table}`);
      out.push({
        name: l.name,
        network: ep ? ep.spec.NetworkName : "",
        kind: ep?.spec.apiType || (ep ? "DanmNet" : ""),
        type: l.kind,
        ips,
        ...(l.mac ? { mac: l.mac } : {}),
        ...(ep?.spec.Interface.DeviceID ? { device: ep.spec.Interface.DeviceID } : {}),
        routes: [...own, ...ruleText],
      });
    }
    return out;
  }));

const hostInterfaces = (c: NodeCtx) =>
  Effect.gen(function* () {
    const links = yield* c.netlink.host.links().pipe(Effect.orDie);
    const byIndex = new Map(links.map((l) => [l.index, l.name]));
    return {
      name: c.node.name,
      hostInterfaces: links
        .filter((l) => l.kind === "vlan" || l.kind === "vxlan")
        .sort((a, b) => a.name.localeCompare(b.name, "en"))
        .map((l) => ({
          name: l.name,
          kind: l.kind,
          ...(l.vlan ? { vlan: l.vlan.id } : {}),
          ...(l.vxlan ? { vni: l.vxlan.vni } : {}),
          ...(l.parent !== undefined && byIndex.has(l.parent) ? { parent: byIndex.get(l.parent)! } : {}),
          ...(l.vxlan?.dev !== undefined && byIndex.has(l.vxlan.dev) ? { parent: byIndex.get(l.vxlan.dev)! } : {}),
          mtu: l.mtu,
        })),
    };
  });

const serviceEndpoints = (kube: KubeService, s: Service) =>
  Effect.gen(function* () {
    const ns = s.metadata.namespace ?? "default", name = s.metadata.name ?? "";
    const ep = yield* kube.get(EndpointsResource, name, { namespace: ns }).pipe(
      Effect.map((e) => e as typeof e | undefined),
      Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
      Effect.orDie,
    );
    const sel = yield* serviceSelection(s.metadata.annotations ?? {}).pipe(Effect.orElseSucceed(() => undefined));
    const ready = (ep?.subsets ?? []).flatMap((sub) => (sub.addresses ?? []).map((a) => a.ip));
    const notReady = (ep?.subsets ?? []).flatMap((sub) => (sub.notReadyAddresses ?? []).map((a) => a.ip));
    return {
      namespace: ns,
      name,
      networks: (sel?.networks ?? []).map((n) => `${n.kind} ${n.name}`),
      endpoints: ready,
      notReady,
      ports: (s.spec?.ports ?? []).map((p) => p.port),
    };
  });
