// Kubernetes Events the way client-go's EventRecorder writes them: a repeat of the same event on the same object
// (same type, reason and aggregation key — by default the message) bumps `count` and `lastTimestamp` of the Event
// already written, and carries the latest message, instead of adding another object. So a pod failing its network
// setup on every kubelet retry shows one Event "x12 over 5m" in `kubectl describe pod`, not a storm.
// Recording never fails the caller: an Event that cannot be written is logged and dropped.
import { Clock, Effect } from "effect";
import { EventResource, type ObjectReference } from "../api/k8s.ts";
import type { KubeService } from "../ports/kube.ts";

export interface EventSource {
  /** source.component / reportingComponent, e.g. "danm-cni". */
  readonly component: string;
  /** source.host / reportingInstance: the node or replica. */
  readonly instance: string;
}

export interface RecordedEvent {
  /** What the Event is about; its namespace is the Event's (cluster-scoped objects: "default", as kubectl looks). */
  readonly object: ObjectReference & { readonly name: string };
  readonly type: "Normal" | "Warning";
  readonly reason: string;
  readonly message: string;
  /**
   * Repeats with the same key are one Event (client-go aggregates similar events the same way); default: the message.
   * A key without the volatile parts of a message (sandbox IDs, timings) keeps retries on one Event.
   */
  readonly aggregateKey?: string;
}

export interface EventRecorder {
  readonly record: (event: RecordedEvent) => Effect.Effect<void>;
}

/** The API's limit for an Event's message is generous; client-go's recorder cuts at 1024 bytes, and so do we. */
const maxMessage = 1024;
/** How many distinct events the recorder remembers for aggregation (client-go's LRU: 4096). */
const maxRemembered = 4096;

/** metav1.Time: RFC 3339 in whole seconds. */
const seconds = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

const truncate = (s: string) => (s.length <= maxMessage ? s : `${s.slice(0, maxMessage - 3)}...`);

export const makeEventRecorder = (kube: KubeService, source: EventSource): EventRecorder => {
  const seen = new Map<string, { name: string; namespace: string; count: number }>();
  const record = (e: RecordedEvent): Effect.Effect<void> =>
    Effect.gen(function* () {
      const namespace = e.object.namespace ?? "default";
      const message = truncate(e.message);
      const key = [
        e.object.uid ?? `${e.object.kind}/${namespace}/${e.object.name}`,
        e.type,
        e.reason,
        e.aggregateKey ?? message,
      ].join("\n");
      const nowMs = yield* Clock.currentTimeMillis;
      const now = seconds(nowMs);
      const prior = seen.get(key);
      if (prior) {
        const count = prior.count + 1;
        const patched = yield* Effect.result(kube.patch(EventResource, prior.name, {
          type: "merge",
          patch: { count, lastTimestamp: now, message },
        }, { namespace: prior.namespace }));
        if (patched._tag === "Success") {
          // Most recently used last: the oldest entry is the first to go.
          seen.delete(key);
          seen.set(key, { ...prior, count });
          return;
        }
        // Gone (Events expire after an hour) or unreachable: write a new one.
      }
      const name = `${e.object.name}.${
        (BigInt(nowMs) * 1_000_000n + BigInt(Math.floor(Math.random() * 1e6)))
          .toString(16)
      }`;
      yield* kube.create(EventResource, {
        metadata: { name, namespace },
        involvedObject: e.object,
        reason: e.reason,
        message,
        type: e.type,
        count: 1,
        firstTimestamp: now,
        lastTimestamp: now,
        source: { component: source.component, host: source.instance },
        reportingComponent: source.component,
        reportingInstance: source.instance,
      });
      seen.delete(key);
      seen.set(key, { name, namespace, count: 1 });
      while (seen.size > maxRemembered) seen.delete(seen.keys().next().value!);
    }).pipe(
      Effect.catch((err) =>
        Effect.logWarning(`recording Event ${e.reason} on ${e.object.kind} ${e.object.name}: ${err.message}`)
      ),
    );
  return { record };
};
