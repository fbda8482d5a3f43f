// The whole cluster's PolicyWorld, no node in particular: what `danmctl dry-run reach` and the sim's report evaluate.
// Every live pod with its danm interfaces (DanmEps, and NAD attachments from its network-status annotation), every
// policy and namespace — also when there is no policy at all (reach still answers "not isolated").
import { Effect } from "effect";
import { NetworkStatusAnnotation, parseNetworkStatus } from "../api/annotations.ts";
import { type DanmEp, DanmEpResource } from "../api/danm.ts";
import { type Namespace, NamespaceResource, type Pod, PodResource } from "../api/k8s.ts";
import { type MultiNetworkPolicy, MultiNetworkPolicyResource } from "../api/netpol.ts";
import { Kube, type KubeError } from "../ports/kube.ts";
import {
  podAttachments,
  type PodKey,
  podKey,
  type PolicyWorld,
  type WorldAttachment,
  type WorldPod,
  worldPod,
} from "./model.ts";

export interface ClusterObjects {
  readonly policies: ReadonlyArray<MultiNetworkPolicy>;
  readonly pods: ReadonlyArray<Pod>;
  readonly namespaces: ReadonlyArray<Namespace>;
  readonly danmEps: ReadonlyArray<DanmEp>;
}

const gone = (p: Pod) =>
  p.status?.phase === "Succeeded" || p.status?.phase === "Failed" || p.metadata.deletionTimestamp !== undefined;

export function clusterWorld(o: ClusterObjects): PolicyWorld {
  const epsByPod = Map.groupBy(
    o.danmEps.filter((ep) => ep.metadata.deletionTimestamp === undefined),
    (ep) => podKey(ep.metadata.namespace ?? "", ep.spec.Pod),
  );
  const pods = new Map<PodKey, WorldPod>();
  const attachments = new Map<PodKey, ReadonlyArray<WorldAttachment>>();
  for (const pod of o.pods.filter((p) => !gone(p))) {
    const wp = worldPod(pod);
    const key = podKey(wp.namespace, wp.name);
    const status = pod.metadata.annotations?.[NetworkStatusAnnotation];
    const entries = status === undefined
      ? []
      : Effect.runSync(Effect.orElseSucceed(parseNetworkStatus(status), () => []));
    pods.set(key, wp);
    attachments.set(key, podAttachments(wp.namespace, epsByPod.get(key) ?? [], entries, pod.metadata.uid));
  }
  const live = o.policies.filter((p) => p.metadata.deletionTimestamp === undefined);
  return {
    policies: new Map(live.map((p) => [podKey(p.metadata.namespace ?? "", p.metadata.name ?? ""), p])),
    pods,
    namespaces: new Map(o.namespaces.map((n) => [n.metadata.name ?? "", n.metadata.labels ?? {}])),
    attachments,
  };
}

/** Lists what the world is made of; no MultiNetworkPolicy CRD installed reads as no policies. */
export const readClusterWorld: Effect.Effect<PolicyWorld, KubeError, Kube> = Effect.gen(function* () {
  const kube = yield* Kube;
  const policies: ReadonlyArray<MultiNetworkPolicy> = yield* kube.list(MultiNetworkPolicyResource).pipe(
    Effect.map((l) => l.items),
    Effect.catchTag("KubeNotFound", () => Effect.succeed([])),
  );
  const [pods, namespaces, danmEps] = yield* Effect.all([
    kube.list(PodResource),
    kube.list(NamespaceResource),
    kube.list(DanmEpResource),
  ], { concurrency: 3 });
  return clusterWorld({ policies, pods: pods.items, namespaces: namespaces.items, danmEps: danmEps.items });
});
