// The whole cluster's PolicyWorld, no node in particular: what `danmctl dry-run reach` and the sim's report evaluate.
// Every live pod with its danm interfaces (DanmEps, and NAD attachments from its network-status annotation), every
// policy and namespace — also when there is no policy at all (reach still answers "not isolated").
import { Effect } from "effect";
import { DanmEpResource } from "../api/danm.ts";
import { NamespaceResource, PodResource } from "../api/k8s.ts";
import { type MultiNetworkPolicy, MultiNetworkPolicyResource } from "../api/netpol.ts";
import { Kube, type KubeError } from "../ports/kube.ts";
import type { PolicyWorld } from "./model.ts";
import { nodeWorld, type WorldInputs } from "./world.ts";

/** The world of `inputs` with every live pod in it, whatever the policies (the node agent's construction). */
export const clusterWorld = (inputs: WorldInputs): PolicyWorld => nodeWorld(inputs, "", undefined, true).world;

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
