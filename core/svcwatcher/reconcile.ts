// The effectful half of svcwatcher: one pass of a Service (its Endpoints and EndpointSlices brought to exactly
// what the view implies, or removed when the Service is no longer ours) and of a DanmEp (its labels brought to
// its pod's, spec §6.4).
//
// Every write is checked against the view first, so an unchanged state writes nothing. After writing, a pass
// waits (bounded) until the view shows its own writes: the next pass of the same key then starts from them
// instead of failing on a stale resourceVersion.
import { Effect } from "effect";
import { DanmEpResource, DanmEpSystemLabelPrefix } from "../api/danm.ts";
import {
  type Endpoints,
  type EndpointSlice,
  EndpointSliceResource,
  EndpointsResource,
  type Service,
} from "../api/k8s.ts";
import type { ObjectMeta } from "../api/meta.ts";
import type { KubeService } from "../ports/kube.ts";
import { DanmEpLabelSyncError, type ServiceSyncError, syncError } from "./errors.ts";
import type { EventRecorder } from "./events.ts";
import type { SvcwatcherMetrics } from "./metrics.ts";
import {
  adoptableEndpoints,
  buildEndpoints,
  canonical,
  classifyService,
  ControllerName,
  desiredEndpoints,
  EndpointControllerNameLabel,
  planSlices,
  sameEndpoints,
  selectAddresses,
  sliceGroups,
} from "./model.ts";
import type { ClusterView } from "./view.ts";

export interface SyncDeps {
  readonly kube: KubeService;
  readonly view: ClusterView;
  readonly metrics: SvcwatcherMetrics;
  readonly events: EventRecorder;
  readonly maxEndpointsPerSlice: number;
  /** Longest wait for the view to show a pass's own writes. */
  readonly observeTimeoutMs: number;
  /** Services whose Endpoints object belongs to someone else (last time we looked). */
  readonly foreignEndpoints: Set<string>;
}

/** Warnings already recorded per Service (uid/resourceVersion/reason): one Event per Service state. */
const warned = new WeakMap<SyncDeps, Map<string, string>>();

function warnOnce(deps: SyncDeps, svc: Service, reason: string, message: string): Effect.Effect<void> {
  let seen = warned.get(deps);
  if (!seen) warned.set(deps, seen = new Map());
  const key = `${svc.metadata.namespace}/${svc.metadata.name}|${reason}`;
  const state = `${svc.metadata.uid}|${svc.metadata.resourceVersion}|${message}`;
  if (seen.get(key) === state) return Effect.void;
  seen.set(key, state);
  return deps.events.warn(svc, reason, message);
}

/** `current` with the fields a writer manages replaced by `desired`'s (absent there: removed). */
function withManagedMeta(current: ObjectMeta, desired: ObjectMeta): ObjectMeta {
  const { labels: _l, annotations: _a, ownerReferences: _o, ...rest } = current;
  return {
    ...rest,
    ...(desired.labels ? { labels: desired.labels } : {}),
    ...(desired.annotations ? { annotations: desired.annotations } : {}),
    ...(desired.ownerReferences ? { ownerReferences: desired.ownerReferences } : {}),
  };
}

const awaitObserved = (deps: SyncDeps, conditions: ReadonlyArray<() => boolean>) =>
  conditions.length === 0
    ? Effect.void
    : deps.view.awaitView(() => conditions.every((c) => c()), deps.observeTimeoutMs).pipe(Effect.asVoid);

/**
 * Deletes the EndpointSlice `slice` of the Service `key` if it is still the object the view showed (uid
 * precondition: one recreated meanwhile is not the one we meant); gone already is fine. Answers the condition that
 * the view has seen it go.
 */
const deleteSlice = (
  deps: SyncDeps,
  key: string,
  namespace: string,
  slice: EndpointSlice,
): Effect.Effect<() => boolean, ServiceSyncError> => {
  const name = slice.metadata.name ?? "";
  const sliceKey = `${namespace}/${name}`;
  return deps.kube.delete(EndpointSliceResource, name, {
    namespace,
    preconditions: { ...(slice.metadata.uid ? { uid: slice.metadata.uid } : {}) },
  }).pipe(
    Effect.catchTag("KubeNotFound", () => Effect.void),
    Effect.mapError(syncError(key, `delete EndpointSlice ${sliceKey}`)),
    Effect.map(() => {
      deps.metrics.writes.inc({ resource: "endpointslices", verb: "delete" });
      return () => deps.view.slices.get(sliceKey)?.metadata.uid !== slice.metadata.uid;
    }),
  );
};

/** Removes every EndpointSlice and the Endpoints we own for `key`. */
const cleanup = (deps: SyncDeps, key: string): Effect.Effect<void, ServiceSyncError> =>
  Effect.gen(function* () {
    const { kube, view, metrics } = deps;
    const [namespace, name] = key.split("/");
    const waits: Array<() => boolean> = [];
    for (const slice of view.slicesOf(key)) waits.push(yield* deleteSlice(deps, key, namespace, slice));
    const ep = view.endpoints.get(key);
    if (ep) {
      // Preconditions: if someone else has taken the object over meanwhile, it is not ours to delete.
      yield* kube.delete(EndpointsResource, name, {
        namespace,
        preconditions: {
          ...(ep.metadata.uid ? { uid: ep.metadata.uid } : {}),
          ...(ep.metadata.resourceVersion ? { resourceVersion: ep.metadata.resourceVersion } : {}),
        },
      }).pipe(
        Effect.catchTag("KubeNotFound", () => Effect.void),
        Effect.mapError(syncError(key, `delete Endpoints ${key}`)),
      );
      metrics.writes.inc({ resource: "endpoints", verb: "delete" });
      waits.push(() => view.endpoints.get(key)?.metadata.uid !== ep.metadata.uid);
    }
    metrics.endpoints.remove({ namespace, service: name });
    yield* awaitObserved(deps, waits);
  });

const syncEndpointsObject = (
  deps: SyncDeps,
  key: string,
  svc: Service,
  body: Endpoints,
): Effect.Effect<ReadonlyArray<() => boolean>, ServiceSyncError> =>
  Effect.gen(function* () {
    const { kube, view, metrics } = deps;
    const namespace = svc.metadata.namespace ?? "";
    const update = (current: Endpoints) =>
      kube.update(EndpointsResource, { ...body, metadata: withManagedMeta(current.metadata, body.metadata) }).pipe(
        Effect.tap(() => Effect.sync(() => metrics.writes.inc({ resource: "endpoints", verb: "update" }))),
        Effect.mapError(syncError(key, `update Endpoints ${key}`)),
        Effect.as([() => view.endpoints.get(key)?.metadata.resourceVersion !== current.metadata.resourceVersion]),
      );
    const current = view.endpoints.get(key);
    if (current) {
      deps.foreignEndpoints.delete(key);
      return sameEndpoints(current, body) ? [] : yield* update(current);
    }
    // Endpoints found foreign before are only looked at again (our informer does not see them), not recreated.
    if (!deps.foreignEndpoints.has(key)) {
      const created = yield* Effect.result(kube.create(EndpointsResource, body));
      if (created._tag === "Success") {
        metrics.writes.inc({ resource: "endpoints", verb: "create" });
        return [() => view.endpoints.has(key)];
      }
      if (created.failure._tag !== "KubeAlreadyExists") {
        return yield* Effect.fail(syncError(key, `create Endpoints ${key}`)(created.failure));
      }
    }
    // Not in our view: written by us a moment ago, by DANM's svcwatcher, or by someone else entirely.
    const existing = yield* Effect.result(kube.get(EndpointsResource, svc.metadata.name ?? "", { namespace }));
    if (existing._tag === "Failure") {
      if (existing.failure._tag !== "KubeNotFound") {
        return yield* Effect.fail(syncError(key, `get Endpoints ${key}`)(existing.failure));
      }
      // The foreign object is gone: ours can be written now.
      deps.foreignEndpoints.delete(key);
      return yield* syncEndpointsObject(deps, key, svc, body);
    }
    if (!adoptableEndpoints(existing.success)) {
      deps.foreignEndpoints.add(key);
      yield* warnOnce(
        deps,
        svc,
        "EndpointsNotOwned",
        `Endpoints ${key} exists and is not managed by ${ControllerName}; it is left alone (delete it to let ` +
          `svcwatcher write it); the EndpointSlices are written regardless`,
      );
      return [];
    }
    deps.foreignEndpoints.delete(key);
    return sameEndpoints(existing.success, body) ? [] : yield* update(existing.success);
  });

/** One reconcile pass of the Service `key` ("namespace/name"). */
export const syncService = (deps: SyncDeps, key: string): Effect.Effect<void, ServiceSyncError> =>
  Effect.gen(function* () {
    const { kube, view, metrics } = deps;
    const svc = view.services.byKey.get(key);
    const parsed = view.selectionOf(key);
    if (svc && parsed._tag === "Invalid") {
      const controller = svc.metadata.labels?.[EndpointControllerNameLabel];
      if (controller === undefined || controller === ControllerName) {
        // Leave what exists alone: a typo in an annotation should not take a Service's endpoints away.
        yield* warnOnce(deps, svc, "InvalidDanmAnnotations", parsed.error.message);
        return;
      }
    }
    const cls = svc
      ? classifyService(svc, parsed._tag === "Valid" ? parsed.selection : undefined)
      : { _tag: "NotManaged" as const };
    if (cls._tag === "NotManaged") {
      if (cls.warning && svc) yield* warnOnce(deps, svc, "SelectorConflict", cls.warning);
      return yield* cleanup(deps, key);
    }
    const svcNow = svc!;
    const namespace = svcNow.metadata.namespace ?? "";
    const addresses = selectAddresses(
      namespace,
      cls.selection,
      view.pods.inNamespace(namespace),
      view.danmEps.inNamespace(namespace).values(),
    );
    const desired = desiredEndpoints(svcNow, cls.selection, addresses);
    const waits: Array<() => boolean> = [];
    waits.push(...yield* syncEndpointsObject(deps, key, svcNow, buildEndpoints(svcNow, desired)));

    const plan = planSlices(svcNow, sliceGroups(svcNow, desired), view.slicesOf(key), deps.maxEndpointsPerSlice);
    // Creates and updates before deletes, so that consumers never see an address vanish while it moves.
    for (const slice of plan.create) {
      const sliceKey = `${namespace}/${slice.metadata.name}`;
      yield* kube.create(EndpointSliceResource, slice).pipe(
        Effect.mapError(syncError(key, `create EndpointSlice ${sliceKey}`)),
      );
      metrics.writes.inc({ resource: "endpointslices", verb: "create" });
      waits.push(() => view.slices.has(sliceKey));
    }
    for (const slice of plan.update) {
      const sliceKey = `${namespace}/${slice.metadata.name}`;
      const before = view.slices.get(sliceKey)?.metadata.resourceVersion;
      yield* kube.update(EndpointSliceResource, slice).pipe(
        Effect.mapError(syncError(key, `update EndpointSlice ${sliceKey}`)),
      );
      metrics.writes.inc({ resource: "endpointslices", verb: "update" });
      waits.push(() => view.slices.get(sliceKey)?.metadata.resourceVersion !== before);
    }
    for (const slice of plan.delete) waits.push(yield* deleteSlice(deps, key, namespace, slice));
    metrics.endpoints.set(
      plan.result.reduce((n, s) => n + s.endpoints.length, 0),
      { namespace, service: svcNow.metadata.name ?? "" },
    );
    yield* awaitObserved(deps, waits);
  });

/** Makes a DanmEp's labels equal to its pod's (DANM users select on DanmEp labels, spec §2.4, §6.4). */
export const syncDanmEpLabels = (deps: SyncDeps, key: string): Effect.Effect<void, DanmEpLabelSyncError> =>
  Effect.gen(function* () {
    const { kube, view, metrics } = deps;
    const ep = view.danmEps.byKey.get(key);
    if (!ep) return;
    const namespace = ep.metadata.namespace ?? "";
    const pod = view.pods.byKey.get(`${namespace}/${ep.spec.Pod}`);
    if (!pod || (ep.spec.PodUID && pod.metadata.uid && ep.spec.PodUID !== pod.metadata.uid)) return;
    const have = ep.metadata.labels ?? {};
    // The CNI's own labels stay; everything else follows the pod.
    const system = Object.fromEntries(Object.entries(have).filter(([k]) => k.startsWith(DanmEpSystemLabelPrefix)));
    const podLabels = Object.fromEntries(
      Object.entries(pod.metadata.labels ?? {}).filter(([k]) => !k.startsWith(DanmEpSystemLabelPrefix)),
    );
    const want = { ...podLabels, ...system };
    if (canonical(want) === canonical(have)) return;
    const labels: Record<string, string | null> = { ...want };
    for (const k of Object.keys(have)) if (!(k in want)) labels[k] = null;
    const result = yield* Effect.result(
      kube.patch(DanmEpResource, ep.metadata.name ?? "", { type: "merge", patch: { metadata: { labels } } }, {
        namespace,
      }),
    );
    if (result._tag === "Failure") {
      if (result.failure._tag === "KubeNotFound") return; // gone meanwhile: nothing to follow
      metrics.labelSyncs.inc({ result: "error" });
      return yield* new DanmEpLabelSyncError({
        danmEp: key,
        pod: `${namespace}/${ep.spec.Pod}`,
        reason: result.failure.message,
      });
    }
    metrics.labelSyncs.inc({ result: "success" });
    metrics.writes.inc({ resource: "danmeps", verb: "patch" });
    const before = ep.metadata.resourceVersion;
    yield* awaitObserved(deps, [() => view.danmEps.byKey.get(key)?.metadata.resourceVersion !== before]);
  });
