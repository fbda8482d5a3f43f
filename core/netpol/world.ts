// The PolicyWorld a node agent sees: built from its informers' caches (every MultiNetworkPolicy, Pod, Namespace
// and DanmEp of the cluster: peers on other nodes count too), plus which of the pods run on this node and in which
// network namespace.
import { Effect } from "effect";
import { type DanmEp } from "../api/danm.ts";
import type { Namespace, Pod } from "../api/k8s.ts";
import type { MultiNetworkPolicy } from "../api/netpol.ts";
import { NetworkStatusAnnotation, parseNetworkStatus } from "../api/annotations.ts";
import { podAttachments, type PodKey, podKey, type PolicyWorld, type WorldAttachment, worldPod } from "./model.ts";

export interface WorldInputs {
  readonly policies: ReadonlyArray<MultiNetworkPolicy>;
  readonly pods: ReadonlyArray<Pod>;
  readonly namespaces: ReadonlyArray<Namespace>;
  readonly danmEps: ReadonlyArray<DanmEp>;
}

/** A pod of this node the agent polices: its key and the network namespace its interfaces live in. */
export interface LocalPod {
  readonly key: PodKey;
  readonly netns: string;
}

export interface NodeWorld {
  readonly world: PolicyWorld;
  /** Pods of this node with a danm interface, by key. */
  readonly local: ReadonlyMap<PodKey, LocalPod>;
}

const terminated = (p: Pod) => p.status?.phase === "Succeeded" || p.status?.phase === "Failed";

/** The network-status annotation's entries; an unreadable one counts as none (the webhook/CNI wrote it). */
const networkStatus = (pod: Pod) => {
  const text = pod.metadata.annotations?.[NetworkStatusAnnotation];
  return text === undefined ? [] : Effect.runSync(Effect.orElseSucceed(parseNetworkStatus(text), () => []));
};

/** A pod being set up: the CNI ADD has the pod object and knows its interfaces before any informer does. */
export interface PodOverride {
  readonly pod: Pod;
  readonly netns: string;
  readonly attachments: ReadonlyArray<WorldAttachment>;
}

/**
 * The world and this node's policed candidates. A local pod is one whose DanmEps say it runs on `node` (they carry
 * its netns path); its pod object must exist and not be terminated. `override` replaces one pod's interfaces (see
 * PodOverride).
 */
export function nodeWorld(
  inputs: WorldInputs,
  node: string,
  override?: PodOverride,
  /** Every pod even when no policy exists (the cluster-wide view of core/netpol/cluster.ts). */
  everyPod = false,
): NodeWorld {
  const epsByPod = new Map<PodKey, DanmEp[]>();
  for (const ep of inputs.danmEps) {
    if (ep.metadata.deletionTimestamp !== undefined) continue;
    const key = podKey(ep.metadata.namespace ?? "", ep.spec.Pod);
    const list = epsByPod.get(key);
    if (list) list.push(ep);
    else epsByPod.set(key, [ep]);
  }
  const pods = new Map<PodKey, ReturnType<typeof worldPod>>();
  const attachments = new Map<PodKey, ReadonlyArray<WorldAttachment>>();
  const local = new Map<PodKey, LocalPod>();
  const overrideKey = override && podKey(override.pod.metadata.namespace ?? "", override.pod.metadata.name ?? "");
  const allPods = override
    ? [
      ...inputs.pods.filter((p) => podKey(p.metadata.namespace ?? "", p.metadata.name ?? "") !== overrideKey),
      override.pod,
    ]
    : inputs.pods;
  // Without policies only the local pods matter (their stale tables go) and the world stays empty: this node's
  // DanmEps say which they are, no pod objects needed (the node agent then keeps no cluster-wide caches).
  const policed = inputs.policies.length > 0 || override !== undefined || everyPod;
  if (!policed) {
    for (const [key, eps] of epsByPod) {
      const netns = eps.find((ep) => ep.spec.Host === node && ep.spec.netns)?.spec.netns;
      if (netns) local.set(key, { key, netns });
    }
    return { world: { policies: new Map(), pods, namespaces: new Map(), attachments }, local };
  }
  for (const pod of allPods) {
    if (terminated(pod) || pod.metadata.deletionTimestamp !== undefined) continue;
    const key = podKey(pod.metadata.namespace ?? "", pod.metadata.name ?? "");
    // DanmEps of an earlier pod of the same name (another UID) are neither its interfaces nor its netns.
    const uid = pod.metadata.uid;
    const eps = (epsByPod.get(key) ?? []).filter((ep) => !uid || !ep.spec.PodUID || ep.spec.PodUID === uid);
    const isOverride = override !== undefined && overrideKey === key;
    const netns = isOverride ? override.netns : eps.find((ep) => ep.spec.Host === node && ep.spec.netns)?.spec.netns;
    if (netns) local.set(key, { key, netns });
    const wp = worldPod(pod);
    pods.set(key, wp);
    attachments.set(key, isOverride ? override.attachments : podAttachments(wp.namespace, eps, networkStatus(pod)));
  }
  const policies = new Map(
    inputs.policies.filter((p) => p.metadata.deletionTimestamp === undefined)
      .map((p) => [podKey(p.metadata.namespace ?? "", p.metadata.name ?? ""), p]),
  );
  const namespaces = new Map(inputs.namespaces.map((n) => [n.metadata.name ?? "", n.metadata.labels ?? {}]));
  return { world: { policies, pods, namespaces, attachments }, local };
}
