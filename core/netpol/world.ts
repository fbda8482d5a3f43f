// The PolicyWorld a node agent sees: built from its informers' caches (every MultiNetworkPolicy, Pod, Namespace
// and DanmEp of the cluster: peers on other nodes count too), plus which of the pods run on this node and in which
// network namespace — from the CNI daemon's sandbox records when it runs in the agent (every pod it set up, also
// those with only NAD attachments, which have no DanmEp), and from this node's DanmEps.
import { Effect } from "effect";
import { type DanmEp } from "../api/danm.ts";
import type { Namespace, Pod } from "../api/k8s.ts";
import type { MultiNetworkPolicy } from "../api/netpol.ts";
import { NetworkStatusAnnotation, parseNetworkStatus } from "../api/annotations.ts";
import {
  podAttachments,
  type PodKey,
  podKey,
  type PolicyWorld,
  type WorldAttachment,
  type WorldPod,
  worldPod,
} from "./model.ts";

export interface WorldInputs {
  readonly policies: ReadonlyArray<MultiNetworkPolicy>;
  readonly pods: ReadonlyArray<Pod>;
  readonly namespaces: ReadonlyArray<Namespace>;
  readonly danmEps: ReadonlyArray<DanmEp>;
  /** This node's pod sandboxes as the CNI daemon recorded them (absent: no daemon in this process). */
  readonly sandboxes?: ReadonlyArray<LocalSandbox>;
}

/**
 * A sandbox the CNI daemon of this node set up (its record, core/cni/state.ts): the pod, its netns and its
 * interfaces as the policy engine sees them. The source of truth for a local pod: NAD attachments have no DanmEp,
 * and the record is complete before the ADD answers, ahead of any annotation or informer.
 */
export interface LocalSandbox {
  readonly pod: { readonly namespace: string; readonly name: string; readonly uid: string };
  readonly netns: string;
  /** RFC 3339: the newest of a pod's sandboxes wins. */
  readonly created: string;
  readonly attachments: ReadonlyArray<WorldAttachment>;
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
 * A pod's engine view and its interfaces from its DanmEps and annotation, kept per pod object (informers hand out the
 * same object until it changes) while its DanmEps are the same objects too: a pass over an unchanged pod rebuilds
 * nothing, and its unchanged attachment list keeps what is derived from it (peers.ts podAddresses).
 */
interface PodView {
  readonly pod: WorldPod;
  readonly eps: ReadonlyArray<DanmEp>;
  attachments?: ReadonlyArray<WorldAttachment>;
}
const podViews = new WeakMap<Pod, PodView>();

function podView(pod: Pod, eps: ReadonlyArray<DanmEp>): PodView {
  const hit = podViews.get(pod);
  if (hit && hit.eps.length === eps.length && hit.eps.every((ep, i) => ep === eps[i])) return hit;
  const view: PodView = { pod: hit?.pod ?? worldPod(pod), eps };
  podViews.set(pod, view);
  return view;
}

/** Each pod's newest sandbox record. */
function sandboxesByPod(sandboxes: ReadonlyArray<LocalSandbox>): Map<PodKey, LocalSandbox> {
  const out = new Map<PodKey, LocalSandbox>();
  for (const sb of sandboxes) {
    const key = podKey(sb.pod.namespace, sb.pod.name);
    const had = out.get(key);
    if (!had || had.created < sb.created) out.set(key, sb);
  }
  return out;
}

/**
 * The world and this node's policed candidates. A local pod is one with a sandbox record here, or whose DanmEps say
 * it runs on `node` (they carry its netns path); its pod object must exist and not be terminated. A record gives the
 * pod's netns and interfaces (it is the CNI daemon's own account); DanmEps and the network-status annotation those
 * of pods without one. `override` replaces one pod's interfaces (see PodOverride).
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
  // DanmEps and sandbox records say which they are, no pod objects needed (the node agent then keeps no cluster-wide
  // caches).
  const sandboxes = sandboxesByPod(inputs.sandboxes ?? []);
  const policed = inputs.policies.length > 0 || override !== undefined || everyPod;
  if (!policed) {
    for (const [key, eps] of epsByPod) {
      const netns = eps.find((ep) => ep.spec.Host === node && ep.spec.netns)?.spec.netns;
      if (netns) local.set(key, { key, netns });
    }
    for (const [key, sb] of sandboxes) local.set(key, { key, netns: sb.netns });
    return { world: { policies: new Map(), pods, namespaces: new Map(), attachments }, local };
  }
  for (const pod of allPods) {
    if (terminated(pod) || pod.metadata.deletionTimestamp !== undefined) continue;
    const key = podKey(pod.metadata.namespace ?? "", pod.metadata.name ?? "");
    // DanmEps of an earlier pod of the same name (another UID) are neither its interfaces nor its netns.
    const uid = pod.metadata.uid;
    const eps = (epsByPod.get(key) ?? []).filter((ep) => !uid || !ep.spec.PodUID || ep.spec.PodUID === uid);
    const isOverride = override !== undefined && overrideKey === key;
    // A record of an earlier pod of the same name (another UID) is not this pod's sandbox either.
    const record = sandboxes.get(key);
    const sb = record && (!uid || !record.pod.uid || record.pod.uid === uid) ? record : undefined;
    const netns = isOverride
      ? override.netns
      : sb?.netns ?? eps.find((ep) => ep.spec.Host === node && ep.spec.netns)?.spec.netns;
    if (netns) local.set(key, { key, netns });
    const view = podView(pod, eps);
    const wp = view.pod;
    pods.set(key, wp);
    attachments.set(
      key,
      isOverride
        ? override.attachments
        : sb?.attachments ?? (view.attachments ??= podAttachments(wp.namespace, eps, networkStatus(pod))),
    );
  }
  const policies = new Map(
    inputs.policies.filter((p) => p.metadata.deletionTimestamp === undefined)
      .map((p) => [podKey(p.metadata.namespace ?? "", p.metadata.name ?? ""), p]),
  );
  const namespaces = new Map(inputs.namespaces.map((n) => [n.metadata.name ?? "", n.metadata.labels ?? {}]));
  return { world: { policies, pods, namespaces, attachments }, local };
}
