// The network status netwatcher maintains: one record per node in `status.hostInterfaces` (each agent writes only
// its own, and drops those of nodes that no longer exist), and the `HostInterfacesReady` condition summarising the
// records as "N/M nodes". Every write recomputes the condition from the full list under compare-and-swap
// (resourceVersion), so whichever agent writes last leaves a condition that matches the records.
import { Effect } from "effect";
import {
  hostInterfacesMessage,
  HostInterfacesReady,
  type HostInterfacesRecord,
  type Network,
  type NetworkCondition,
  type NetworkStatus,
} from "../api/danm.ts";
import { Kube, type KubeError, type ResourceType } from "../ports/kube.ts";
import { StatusWriteFailed } from "./errors.ts";

/** Key-order-insensitive JSON equality, enough for the plain data of a status. */
export function sameJson(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  return JSON.stringify(
    v,
    (_k, x) =>
      x && typeof x === "object" && !Array.isArray(x)
        ? Object.fromEntries(
          Object.entries(x as Record<string, unknown>).sort(([p], [q]) => (p < q ? -1 : p > q ? 1 : 0)),
        )
        : x,
  );
}

export interface StatusInput {
  readonly node: string;
  /** This node's record; undefined = the network needs no host interface (any old record is removed). */
  readonly record: HostInterfacesRecord | undefined;
  /** Nodes that exist; records of other nodes are dropped. Undefined = unknown, drop nothing. */
  readonly liveNodes: ReadonlySet<string> | undefined;
  readonly generation: number | undefined;
  /** RFC 3339, for lastTransitionTime. */
  readonly now: string;
}

/** The condition the records imply; lastTransitionTime moves only when the status flips. */
export function hostInterfacesCondition(
  records: ReadonlyArray<HostInterfacesRecord>,
  previous: NetworkCondition | undefined,
  generation: number | undefined,
  now: string,
): NetworkCondition {
  const ready = records.filter((r) => r.ready).length, total = records.length;
  const status = total > 0 && ready === total ? "True" : "False";
  return {
    type: HostInterfacesReady,
    status,
    ...(generation === undefined ? {} : { observedGeneration: generation }),
    lastTransitionTime: previous && previous.status === status ? previous.lastTransitionTime : now,
    reason: status === "True" ? "AllNodesReady" : "NodesNotReady",
    message: hostInterfacesMessage(ready, total),
  };
}

/** The status after this node's update, or undefined when nothing changes (no write needed). */
export function nextStatus(current: NetworkStatus | undefined, input: StatusInput): NetworkStatus | undefined {
  const { node, record, liveNodes } = input;
  const others = (current?.hostInterfaces ?? []).filter((r) =>
    r.node !== node && (liveNodes === undefined || liveNodes.has(r.node))
  );
  const records = [...others, ...(record ? [record] : [])].sort((a, b) => (a.node < b.node ? -1 : 1));
  const conditions = (current?.conditions ?? []).filter((c) => c.type !== HostInterfacesReady);
  const previous = current?.conditions?.find((c) => c.type === HostInterfacesReady);
  const { hostInterfaces: _h, conditions: _c, ...rest } = current ?? {};
  let next: NetworkStatus;
  if (records.length === 0) {
    // Nothing of ours left: leave the status as if netwatcher had never been there.
    next = { ...rest, ...(conditions.length > 0 ? { conditions } : {}) };
  } else {
    const condition = hostInterfacesCondition(records, previous, input.generation, input.now);
    next = { ...rest, conditions: [...conditions, condition], hostInterfaces: records };
  }
  return sameJson(current ?? {}, next) ? undefined : next;
}

const Attempts = 10;

/**
 * Applies `nextStatus` to a network with compare-and-swap: writes against the object's resourceVersion and, when
 * another node wrote first (409), re-reads and recomputes. Returns whether a write happened.
 */
export const updateNetworkStatus = <N extends Network>(
  rt: ResourceType<N>,
  cached: N,
  input: Omit<StatusInput, "generation">,
): Effect.Effect<"written" | "unchanged" | "gone", StatusWriteFailed | KubeError, Kube> =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const name = cached.metadata.name ?? "";
    const namespace = cached.metadata.namespace;
    const where = `${rt.kind} ${namespace ? `${namespace}/` : ""}${name}`;
    let obj = cached;
    for (let attempt = 1; attempt <= Attempts; attempt++) {
      const status = nextStatus(obj.status, { ...input, generation: obj.metadata.generation });
      if (status === undefined) return "unchanged" as const;
      const written = yield* Effect.result(kube.updateStatus(rt, { ...obj, status }));
      if (written._tag === "Success") return "written" as const;
      const e = written.failure;
      if (e._tag === "KubeNotFound") return "gone" as const;
      if (e._tag !== "KubeConflict") return yield* e;
      // Lost the race: back off a little (jittered, so the three agents of a test do not collide in lockstep).
      yield* Effect.sleep(`${Math.round(10 * attempt * (0.5 + Math.random()))} millis`);
      const fresh = yield* Effect.result(kube.get(rt, name, namespace === undefined ? {} : { namespace }));
      if (fresh._tag === "Failure") {
        if (fresh.failure._tag === "KubeNotFound") return "gone" as const;
        return yield* fresh.failure;
      }
      obj = fresh.success;
    }
    return yield* new StatusWriteFailed({
      operation: "update status",
      object: where,
      reason: `still conflicting after ${Attempts} compare-and-swap attempts`,
    });
  });
