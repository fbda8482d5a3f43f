// Events on the Services svcwatcher cannot serve, the way client-go's recorder writes them: a repeat of the same
// reason and message on the same object bumps `count` on the existing Event instead of adding another one.
// Recording never fails the caller: an Event that cannot be written is logged and dropped.
import { Effect } from "effect";
import { EventResource, type Service } from "../api/k8s.ts";
import type { KubeService } from "../ports/kube.ts";
import { ControllerName } from "./model.ts";
import type { SvcwatcherMetrics } from "./metrics.ts";

export interface EventRecorder {
  readonly warn: (svc: Service, reason: string, message: string) => Effect.Effect<void>;
}

/** metav1.Time: RFC 3339 in whole seconds. */
const seconds = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

export const makeEventRecorder = (
  kube: KubeService,
  identity: string,
  metrics?: SvcwatcherMetrics,
): EventRecorder => {
  const seen = new Map<string, { name: string; count: number }>();
  const warn = (svc: Service, reason: string, message: string): Effect.Effect<void> =>
    Effect.gen(function* () {
      const namespace = svc.metadata.namespace ?? "default";
      const name = svc.metadata.name ?? "";
      const key = `${svc.metadata.uid ?? `${namespace}/${name}`}|${reason}|${message}`;
      const now = Date.now();
      metrics?.events.inc({ reason });
      yield* Effect.logWarning(`Service ${namespace}/${name}: ${reason}: ${message}`);
      const prior = seen.get(key);
      if (prior) {
        const count = prior.count + 1;
        const patched = yield* Effect.result(kube.patch(EventResource, prior.name, {
          type: "merge",
          patch: { count, lastTimestamp: seconds(now) },
        }, { namespace }));
        if (patched._tag === "Success") {
          seen.set(key, { name: prior.name, count });
          return;
        }
      }
      const eventName = `${name}.${(BigInt(now) * 1_000_000n + BigInt(Math.floor(Math.random() * 1e6))).toString(16)}`;
      yield* kube.create(EventResource, {
        metadata: { name: eventName, namespace },
        involvedObject: {
          apiVersion: "v1",
          kind: "Service",
          namespace,
          name,
          ...(svc.metadata.uid ? { uid: svc.metadata.uid } : {}),
          ...(svc.metadata.resourceVersion ? { resourceVersion: svc.metadata.resourceVersion } : {}),
        },
        reason,
        message,
        type: "Warning",
        count: 1,
        firstTimestamp: seconds(now),
        lastTimestamp: seconds(now),
        source: { component: ControllerName, host: identity },
        reportingComponent: ControllerName,
        reportingInstance: identity,
      });
      seen.set(key, { name: eventName, count: 1 });
      // Bounded memory: the oldest entries go first (Map keeps insertion order).
      while (seen.size > 1000) seen.delete(seen.keys().next().value!);
    }).pipe(
      Effect.catch((e) => Effect.logWarning(`recording Event ${reason} on Service: ${e.message}`)),
    );
  return { warn };
};
