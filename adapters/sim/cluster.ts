// The simulated cluster's API: the in-memory apiserver with the danm webhook as its admission chain, and the
// scenario's cluster objects (namespaces, tenant configs, networks, ReservedIPs, NADs, MultiNetworkPolicies, Services) created through it
// in dependency order, the way `kubectl apply` would, every refusal and bad object recorded for the report.
import { Effect, Schema } from "effect";
import { type AdmissionRequest, makeMemoryKube, MemoryApiServer } from "../kube/memory.ts";
import { type WarnedObject, webhookHooks } from "./admission.ts";
import {
  ClusterNetworkResource,
  type DanmKind,
  DanmNetResource,
  decodeDanmObject,
  TenantConfigResource,
  TenantNetworkResource,
} from "../../core/api/danm.ts";
import {
  NamespaceResource,
  NetworkAttachmentDefinitionResource,
  type Service,
  ServiceResource,
} from "../../core/api/k8s.ts";
import { MultiNetworkPolicyResource } from "../../core/api/netpol.ts";
import { reservedIpResource } from "../../core/api/reservedip.ts";
import { makeAdmission } from "../../core/webhook/admit.ts";
import { makeClaims } from "../../core/webhook/claims.ts";
import { WebhookMetrics } from "../../core/webhook/metrics.ts";
import { makeClusterView } from "../../core/webhook/state.ts";
import { Kube, type KubeError, type KubeService, type ResourceType } from "../../core/ports/kube.ts";
import { describeObject, type ScenarioObject } from "../../core/sim/scenario.ts";
import type { SimOutcome } from "../../core/sim/report.ts";

/** What a run records besides its pods: the scenario's problems, the API's refusals, and each object done. */
export interface SimRecord {
  readonly errors: string[];
  readonly rejected: SimOutcome["rejected"][number][];
  readonly objectDone: () => void;
}

/** Pauses after a change so that the informers of the components behind it have seen it. */
export const settle = Effect.sleep("15 millis");

/** Scenario kinds the simulation creates as they are (besides the Nodes, which it makes from the scenario). */
export const clusterObjectKinds = new Set([
  "Namespace",
  "TenantConfig",
  "ClusterNetwork",
  "TenantNetwork",
  "DanmNet",
  "ReservedIP",
  "NetworkAttachmentDefinition",
  "MultiNetworkPolicy",
  "Service",
]);
/** Kinds that become pods. */
const workloadKinds = new Set(["Node", "Pod", "Deployment", "StatefulSet", "ReplicaSet", "DaemonSet"]);

const statusKinds = [DanmNetResource, TenantNetworkResource, ClusterNetworkResource];

/** The refusal as kubectl shows it. */
export const reason = (e: KubeError | { message: string }) => {
  const m = e.message;
  // "create DanmNet default/x: forbidden: <the webhook's message>" → the webhook's message, as kubectl shows it.
  const i = m.indexOf(": forbidden: ");
  return i >= 0 ? m.slice(i + ": forbidden: ".length) : m;
};

/**
 * The in-memory apiserver with the danm webhook as its admission chain, ready for objects; the warnings of what it
 * admits are appended to `warned`.
 */
export const startApiTwin = (warned: WarnedObject[]) =>
  Effect.gen(function* () {
    const server = new MemoryApiServer({ statusSubresources: statusKinds });
    const kube: KubeService = yield* makeMemoryKube(server);
    const withKube = <A, E, R>(e: Effect.Effect<A, E, R>) => Effect.provideService(e, Kube, kube);
    const view = yield* withKube(makeClusterView());
    const claims = yield* withKube(makeClaims({ namespace: "kube-system", graceSeconds: 120 }));
    const admission = makeAdmission(view, claims, new WebhookMetrics(), { namingScheme: "" });
    const sink = (req: AdmissionRequest, warnings: ReadonlyArray<string>) =>
      warned.push({
        kind: req.resource.kind,
        ...(req.namespace ? { namespace: req.namespace } : {}),
        name: req.name ?? "",
        warnings,
      });
    for (const hook of webhookHooks(admission, kube, sink)) server.addAdmissionHook(hook);
    yield* view.ready;
    return kube;
  });

/** The scenario's cluster objects, in dependency order; every create goes through admission. */
export const applyClusterObjects = (
  kube: KubeService,
  objects: ReadonlyArray<ScenarioObject>,
  record: SimRecord,
) =>
  Effect.gen(function* () {
    const { errors, rejected, objectDone } = record;
    const byKind = (kinds: ReadonlyArray<string>) => objects.filter((o) => kinds.includes(o.kind));
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
    yield* createNamespaced("MultiNetworkPolicy", MultiNetworkPolicyResource);
    for (const o of byKind(["Service"])) {
      const v = yield* Effect.result(decodeWith(o, ServiceResource));
      if (v._tag === "Success") {
        yield* createObject(o, ServiceResource, {
          ...v.success,
          metadata: { ...v.success.metadata, namespace: o.namespace ?? "default" },
        } as Service);
      } else errors.push(v.failure);
    }
    for (const o of objects) {
      if (!clusterObjectKinds.has(o.kind) && !workloadKinds.has(o.kind)) {
        errors.push(`${o.source.file}: ${describeObject(o)}: kind ${o.kind} is not simulated (skipped)`);
      }
    }
  });
