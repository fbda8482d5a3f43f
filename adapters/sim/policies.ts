// MultiNetworkPolicies in the simulation: after the pods are up, the policy world is read back from the in-memory
// API (policies as admitted, pods, namespaces, DanmEps: what a node agent's informers hold) and each pod
// interface's policies and isolation are added to the report (core/sim/policies.ts).
import { Effect } from "effect";
import { readClusterWorld } from "../../core/netpol/cluster.ts";
import { Kube, type KubeService } from "../../core/ports/kube.ts";
import { withPolicies } from "../../core/sim/policies.ts";
import type { SimPod } from "../../core/sim/report.ts";

/** The pods with their policy view, and the admitted policies (`namespace/name`, sorted). */
export const policyView = (kube: KubeService, pods: ReadonlyArray<SimPod>) =>
  readClusterWorld.pipe(
    Effect.provideService(Kube, kube),
    Effect.orDie,
    Effect.map((world) =>
      world.policies.size === 0
        ? { pods: [...pods], policies: [] }
        : { pods: withPolicies(world, pods), policies: [...world.policies.keys()].sort() }
    ),
  );
