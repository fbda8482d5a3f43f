// Kubernetes Events about networks, from one node's agent. A failure is reported once when it starts (or its text
// changes), not on every periodic pass: Events are for people, the status carries the current state.
import { Effect } from "effect";
import { DanmGroup, DanmVersion } from "../api/danm.ts";
import { type Event, EventResource } from "../api/k8s.ts";
import { Kube, type KubeError } from "../ports/kube.ts";
import { type NetworkRef, refKey } from "./plan.ts";

export const EventComponent = "danm-netwatcher";

const apiVersionOf = (ref: NetworkRef) =>
  ref.kind === "NetworkAttachmentDefinition" ? "k8s.cni.cncf.io/v1" : `${DanmGroup}/${DanmVersion}`;

const suffix = () => crypto.randomUUID().replaceAll("-", "").slice(0, 16);

export function networkEvent(
  ref: NetworkRef,
  node: string,
  type: "Normal" | "Warning",
  reason: string,
  message: string,
  now: string,
): Event {
  // Cluster-scoped objects get their Events in "default", as kubectl describe looks for them there.
  const namespace = ref.namespace ?? "default";
  return {
    metadata: { name: `${ref.name}.${suffix()}`, namespace },
    involvedObject: {
      apiVersion: apiVersionOf(ref),
      kind: ref.kind,
      name: ref.name,
      ...(ref.namespace === undefined ? {} : { namespace: ref.namespace }),
      ...(ref.uid === undefined ? {} : { uid: ref.uid }),
    },
    reason,
    message,
    type,
    count: 1,
    firstTimestamp: now,
    lastTimestamp: now,
    source: { component: EventComponent, host: node },
    reportingComponent: `${DanmGroup}/netwatcher`,
    reportingInstance: node,
  };
}

/** Remembers what was last reported per network, so each distinct failure is reported once. */
export class EventMemory {
  private readonly last = new Map<string, string>();

  /** True when this (reason, message) is new for the network. */
  shouldReport(ref: NetworkRef, reason: string, message: string): boolean {
    const key = refKey(ref), text = `${reason}\n${message}`;
    if (this.last.get(key) === text) return false;
    this.last.set(key, text);
    return true;
  }

  /** The network is fine again (or gone): a later failure is news again. */
  clear(ref: NetworkRef): void {
    this.last.delete(refKey(ref));
  }

  /** Forgets networks that no longer exist. */
  retain(keys: ReadonlySet<string>): void {
    for (const k of [...this.last.keys()]) if (!keys.has(k)) this.last.delete(k);
  }
}

export const emitEvent = (event: Event): Effect.Effect<void, KubeError, Kube> =>
  Effect.gen(function* () {
    yield* (yield* Kube).create(EventResource, event);
  });
