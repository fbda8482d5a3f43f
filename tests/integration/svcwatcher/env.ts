// A namespace on the test apiserver for one svcwatcher test, with builders for pods (status set through the
// status subresource, as kubelet would), DanmEps and Services, svcwatcher instances running in-process on the
// live Kube layer, and a cleanup that removes everything again (the namespace too: no namespace controller runs,
// so it is finalized by hand).
import { Effect, Fiber, Layer, ManagedRuntime, type Scope } from "effect";
import { layerLiveKube } from "../../../adapters/kube/live.ts";
import { type DanmEp, DanmEpResource } from "../../../core/api/danm.ts";
import {
  EndpointSliceResource,
  EndpointsResource,
  EventResource,
  LeaseResource,
  NamespaceResource,
  type Pod,
  PodResource,
  type Service,
  ServiceResource,
} from "../../../core/api/k8s.ts";
import { Kube, type KubeService, type ResourceType } from "../../../core/ports/kube.ts";
import { runSvcwatcher, type SvcwatcherOptions } from "../../../core/svcwatcher/controller.ts";
import { SvcwatcherMetrics } from "../../../core/svcwatcher/metrics.ts";
import { uniqueName, useCluster } from "../../harness/cluster.ts";
import { installDanmCrds } from "../api/danm_crds.ts";
import { restClient } from "../api/rest.ts";

export interface Replica {
  readonly identity: string;
  readonly metrics: SvcwatcherMetrics;
  /** Interrupts it: a graceful stop (the Lease is released unless `releaseOnCancel: false`). */
  readonly stop: () => Promise<void>;
}

export interface SvcEnv {
  readonly ns: string;
  readonly kubeconfigPath: string;
  readonly url: string;
  readonly caFile: string;
  readonly run: <A, E>(eff: Effect.Effect<A, E, Kube | Scope.Scope>) => Promise<A>;
  readonly kube: () => Promise<KubeService>;
  /** Starts svcwatcher in this process with its Lease in the test namespace. */
  readonly start: (identity: string, options?: Partial<SvcwatcherOptions>, layer?: Layer.Layer<Kube>) => Replica;
}

export const podSpec = (
  ns: string,
  name: string,
  o: { labels?: Record<string, string>; hostname?: string; node?: string; annotations?: Record<string, string> } = {},
): Pod => ({
  metadata: {
    name,
    namespace: ns,
    labels: o.labels ?? { app: "lb" },
    ...(o.annotations ? { annotations: o.annotations } : {}),
  },
  spec: {
    nodeName: o.node ?? "node-a",
    ...(o.hostname ? { hostname: o.hostname, subdomain: "lb" } : {}),
    containers: [{ name: "c", image: "example.invalid/app", ports: [{ name: "web", containerPort: 8080 }] }],
  },
});

/** Creates the pod, then sets phase Running and the Ready condition through the status subresource. */
export const createPod = (kube: KubeService, pod: Pod, ready: boolean) =>
  Effect.gen(function* () {
    const created = yield* kube.create(PodResource, pod);
    return yield* setReady(kube, created, ready);
  });

export const setReady = (kube: KubeService, pod: Pod, ready: boolean) =>
  kube.patch(PodResource, pod.metadata.name!, {
    type: "merge",
    patch: {
      status: {
        phase: "Running",
        conditions: [{ type: "Ready", status: ready ? "True" : "False", lastTransitionTime: null }],
      },
    },
  }, { namespace: pod.metadata.namespace!, subresource: "status" });

/** A DanmEp as the CNI writes it for `pod` (labels copied from the pod, PodUID set). */
export const danmEpFor = (
  pod: Pod,
  name: string,
  o: { network?: string; apiType?: "DanmNet" | "TenantNetwork" | "ClusterNetwork"; v4?: string; v6?: string },
): DanmEp => ({
  metadata: { name, namespace: pod.metadata.namespace!, labels: { ...(pod.metadata.labels ?? {}) } },
  spec: {
    NetworkName: o.network ?? "internal",
    NetworkType: "ipvlan",
    EndpointID: name,
    Interface: {
      Name: "eth1",
      Address: o.v4 ?? "",
      AddressIPv6: o.v6 ?? "",
    },
    Host: pod.spec.nodeName ?? "",
    Pod: pod.metadata.name!,
    PodUID: pod.metadata.uid!,
    apiType: o.apiType ?? "DanmNet",
  },
});

export const danmService = (
  ns: string,
  name: string,
  annotations: Record<string, string>,
  extra: Partial<Service["spec"]> = {},
): Service => ({
  metadata: { name, namespace: ns, annotations },
  spec: {
    clusterIP: "None",
    ports: [{ name: "http", port: 80, targetPort: "web", protocol: "TCP" }],
    ...extra,
  },
});

const namespacedKinds: ReadonlyArray<ResourceType<{ metadata: { name?: string } }>> = [
  PodResource,
  DanmEpResource,
  ServiceResource,
  EndpointsResource,
  EndpointSliceResource,
  EventResource,
  LeaseResource,
] as unknown as ReadonlyArray<ResourceType<{ metadata: { name?: string } }>>;

/** Runs `body` with a fresh namespace and removes everything afterwards, whatever happened. */
export async function withSvcEnv(body: (env: SvcEnv) => Promise<void>): Promise<void> {
  const cluster = await useCluster();
  await installDanmCrds(cluster.kubeConfig);
  const layer = layerLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }).pipe(Layer.orDie);
  const runtime = ManagedRuntime.make(layer);
  const ns = uniqueName("svcw");
  const replicas: Replica[] = [];
  const run = <A, E>(eff: Effect.Effect<A, E, Kube | Scope.Scope>) => runtime.runPromise(Effect.scoped(eff));
  const env: SvcEnv = {
    ns,
    kubeconfigPath: cluster.kubeconfigPath,
    url: cluster.url,
    caFile: cluster.pki.ca.certFile,
    run,
    kube: () => run(Effect.map(Kube, (k) => k)),
    start: (identity, options = {}, replicaLayer = layer) => {
      const metrics = new SvcwatcherMetrics();
      const fiber = Effect.runFork(
        runSvcwatcher({
          identity,
          // Other test files share the apiserver: never touch their namespaces.
          namespace: ns,
          workers: 4,
          retry: { baseDelayMs: 20, maxDelayMs: 2_000 },
          lease: {
            namespace: ns,
            name: "danm-svcwatcher",
            leaseDurationMs: 4_000,
            renewDeadlineMs: 2_500,
            retryPeriodMs: 500,
          },
          ...options,
        }, metrics).pipe(Effect.provide(replicaLayer)),
      );
      const replica: Replica = {
        identity,
        metrics,
        stop: () => Effect.runPromise(Fiber.interrupt(fiber)).then(() => {}),
      };
      replicas.push(replica);
      return replica;
    },
  };
  try {
    await run(Effect.gen(function* () {
      yield* (yield* Kube).create(NamespaceResource, { metadata: { name: ns } });
    }));
    await body(env);
  } finally {
    for (const r of replicas) await r.stop().catch(() => {});
    await run(Effect.gen(function* () {
      const kube = yield* Kube;
      for (const rt of namespacedKinds) {
        const list = yield* kube.list(rt, { namespace: ns });
        for (const o of list.items) {
          yield* kube.delete(rt, o.metadata.name!, { namespace: ns, gracePeriodSeconds: 0 }).pipe(Effect.ignore);
        }
      }
      yield* kube.delete(NamespaceResource, ns).pipe(Effect.ignore);
    })).catch((e) => console.error(`cleanup of ${ns}: ${e}`));
    // No namespace controller: drop the finalizer ourselves so the namespace really goes.
    const rest = restClient(cluster.kubeConfig);
    try {
      await rest.call("PUT", `/api/v1/namespaces/${ns}/finalize`, {
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name: ns },
        spec: { finalizers: [] },
      });
    } finally {
      rest.close();
    }
    await runtime.dispose();
    await cluster.release();
  }
}
