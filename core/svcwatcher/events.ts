// Events on the Services svcwatcher cannot serve, through the shared recorder (core/observability/events.ts): a repeat
// of the same reason and message on the same Service bumps `count` on the existing Event instead of adding another.
import { Effect } from "effect";
import type { Service } from "../api/k8s.ts";
import { makeEventRecorder as makeRecorder } from "../observability/events.ts";
import type { KubeService } from "../ports/kube.ts";
import { ControllerName } from "./model.ts";
import type { SvcwatcherMetrics } from "./metrics.ts";

export interface EventRecorder {
  readonly warn: (svc: Service, reason: string, message: string) => Effect.Effect<void>;
}

export const makeEventRecorder = (
  kube: KubeService,
  identity: string,
  metrics?: SvcwatcherMetrics,
): EventRecorder => {
  const recorder = makeRecorder(kube, { component: ControllerName, instance: identity });
  const warn = (svc: Service, reason: string, message: string): Effect.Effect<void> =>
    Effect.gen(function* () {
      const namespace = svc.metadata.namespace ?? "default";
      const name = svc.metadata.name ?? "";
      metrics?.events.inc({ reason });
      yield* Effect.logWarning(`Service ${namespace}/${name}: ${reason}: ${message}`);
      yield* recorder.record({
        object: {
          apiVersion: "v1",
          kind: "Service",
          namespace,
          name,
          ...(svc.metadata.uid ? { uid: svc.metadata.uid } : {}),
          ...(svc.metadata.resourceVersion ? { resourceVersion: svc.metadata.resourceVersion } : {}),
        },
        type: "Warning",
        reason,
        message,
      });
    });
  return { warn };
};
