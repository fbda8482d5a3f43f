// MultiNetworkPolicies in the simulation: after the pods are up, the policy world is read back from the in-memory
// API (policies as admitted, pods, namespaces, DanmEps: what a node agent's informers hold) and each pod
// interface's policies and isolation are added to the report (core/sim/policies.ts). A scenario without policies
// costs one list (bench:sim's 10,000 pods are not read back). `deno task sim --real` builds the same view over the
// real apiserver.
import { Effect } from "effect";
import { MultiNetworkPolicyResource } from "../../core/api/netpol.ts";
import { readClusterWorld } from "../../core/netpol/cluster.ts";
import { Kube, type KubeService } from "../../core/ports/kube.ts";
import { withPolicies } from "../../core/sim/policies.ts";
import type { SimPod } from "../../core/sim/report.ts";

/** The pods with their policy view, and the admitted policies (`namespace/name`, sorted). */
export const policyView = (kube: KubeService, pods: ReadonlyArray<SimPod>) =>
  Effect.gen(function* () {
    const none = { pods: [...pods], policies: [] };
    // A cluster without the MultiNetworkPolicy CRD (sim --real on an older install) has no policies either.
    const policies = yield* kube.list(MultiNetworkPolicyResource).pipe(
      Effect.map((l) => l.items),
      Effect.catchTag("KubeNotFound", () => Effect.succeed([])),
    );
    if (policies.length === 0) return none;
    const world = yield* readClusterWorld;
    return { pods: withPolicies(world, pods), policies: [...world.policies.keys()].sort() };
  }).pipe(Effect.provideService(Kube, kube), Effect.orDie);
