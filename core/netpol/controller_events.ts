// Failures to program a pod's policy table, as Warning Events on the pod (once per distinct failure, like
// netwatcher's network Events), and the typed error the CNI ADD fails with.
import { Clock, Effect, Schema } from "effect";
import type { Event } from "../api/k8s.ts";
import type { KubeService } from "../ports/kube.ts";
import { emitEvent } from "../netwatcher/events.ts";
import { Kube } from "../ports/kube.ts";
import type { PodKey } from "./model.ts";

export class PolicyProgramFailed extends Schema.TaggedError<PolicyProgramFailed>()("PolicyProgramFailed", {
  pod: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `network policy of pod ${this.pod} could not be programmed: ${this.reason}`;
  }
}

export const PolicyEventReason = "NetworkPolicyNotEnforced";

export class PodEvents {
  private readonly last = new Map<PodKey, string>();
  constructor(private readonly node: string, private readonly kube: KubeService) {}

  /** Reports the failure unless this exact one was reported last for the pod; a failed report is only logged. */
  failure(pod: PodKey, message: string): Effect.Effect<void> {
    if (this.last.get(pod) === message) return Effect.void;
    this.last.set(pod, message);
    const [namespace, name] = pod.split("/", 2);
    const node = this.node;
    return Effect.gen(function* () {
      const now = new Date(yield* Clock.currentTimeMillis).toISOString().replace(/\.\d{3}Z$/, "Z");
      const event: Event = {
        metadata: { name: `${name}.${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`, namespace },
        involvedObject: { apiVersion: "v1", kind: "Pod", name, namespace },
        reason: PolicyEventReason,
        message: `node ${node}: ${message}`,
        type: "Warning",
        count: 1,
        firstTimestamp: now,
        lastTimestamp: now,
        source: { component: "danm-netwatcher", host: node },
        reportingComponent: "danm.io/netwatcher",
        reportingInstance: node,
      };
      yield* Effect.logWarning(`netpol ${node}: pod ${pod}: ${message}`);
      yield* emitEvent(event).pipe(
        Effect.catch((e) => Effect.logWarning(`netpol ${node}: event for pod ${pod}: ${e.message}`)),
      );
    }).pipe(Effect.provideService(Kube, this.kube));
  }

  clear(pod: PodKey): void {
    this.last.delete(pod);
  }

  retain(pods: ReadonlySet<PodKey>): void {
    for (const k of [...this.last.keys()]) if (!pods.has(k)) this.last.delete(k);
  }
}
