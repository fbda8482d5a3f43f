// The IPAM over the Kube port: IPBlock storage with compare-and-swap writes, and the owner directory the
// reclaimer asks whether pods and networks still exist.
import { Effect, Layer, Schedule } from "effect";
import { type Network, type NetworkKind, networkResources } from "../api/danm.ts";
import { type IPBlock, ipBlockResource, labels, type NetworkRef } from "../api/ipam.ts";
import { NodeResource, PodResource } from "../api/k8s.ts";
import { isTransient, Kube, type KubeError, type ResourceType } from "../ports/kube.ts";
import type { OwnerDirectory } from "./reclaim.ts";
import { BlockRace, BlockStore, BlockStoreFailure } from "./store.ts";

const failure = (operation: string, name: string) => (e: KubeError) =>
  new BlockStoreFailure({ operation, name, cause: e.message });

const raceOr = (operation: string, name: string) => (e: KubeError): BlockRace | BlockStoreFailure => {
  switch (e._tag) {
    case "KubeConflict":
      return new BlockRace({ name, kind: "conflict" });
    case "KubeAlreadyExists":
      return new BlockRace({ name, kind: "exists" });
    case "KubeNotFound":
      return new BlockRace({ name, kind: "gone" });
    default:
      return failure(operation, name)(e);
  }
};

/** apiserver hiccups (429 while a CRD's storage initializes, 5xx, timeouts) are retried briefly, with backoff. */
const transientRetry = <A, R>(e: Effect.Effect<A, KubeError, R>) =>
  Effect.retry(e, {
    schedule: Schedule.exponential("50 millis", 2).pipe(Schedule.jittered),
    times: 6,
    while: isTransient,
  });

export const blockStoreFromKube: Layer.Layer<BlockStore, never, Kube> = Layer.effect(
  BlockStore,
  Effect.gen(function* () {
    const kube = yield* Kube;
    return BlockStore.of({
      listNetwork: (uid) =>
        transientRetry(kube.list(ipBlockResource, { labelSelector: `${labels.networkUid}=${uid}` })).pipe(
          Effect.map((l) => l.items),
          Effect.mapError(failure("list", `network ${uid}`)),
        ),
      listAll: () =>
        transientRetry(kube.list(ipBlockResource)).pipe(
          Effect.map((l) => l.items),
          Effect.mapError(failure("list", "all")),
        ),
      get: (name) =>
        transientRetry(kube.get(ipBlockResource, name)).pipe(
          Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
          Effect.mapError(failure("get", name)),
        ),
      // Blocks are written whole and kept by their writer: the apiserver answers with the new metadata only,
      // which spares it and the node encoding and decoding every reservation of the block once more.
      create: (block) =>
        transientRetry(kube.createReturningMetadata(ipBlockResource, block)).pipe(
          Effect.map((metadata): IPBlock => ({ ...block, metadata })),
          Effect.mapError(raceOr("create", block.metadata.name ?? "")),
        ),
      update: (block) =>
        transientRetry(kube.updateReturningMetadata(ipBlockResource, block)).pipe(
          Effect.map((metadata): IPBlock => ({ ...block, metadata })),
          Effect.mapError(raceOr("update", block.metadata.name ?? "")),
        ),
      remove: (block) =>
        transientRetry(kube.delete(ipBlockResource, block.metadata.name ?? "", {
          preconditions: { resourceVersion: block.metadata.resourceVersion },
        })).pipe(Effect.asVoid, Effect.mapError(raceOr("delete", block.metadata.name ?? ""))),
    });
  }),
);

const networkResource = (kind: NetworkKind): ResourceType<Network> => networkResources[kind];

/** Reads pods and networks straight from the API (never from a cache), so a decision to free is current. */
export const kubeOwnerDirectory = Effect.gen(function* () {
  const kube = yield* Kube;
  const directory: OwnerDirectory = {
    podUid: (namespace, name) =>
      kube.get(PodResource, name, { namespace }).pipe(
        // A finished pod keeps its object, but its sandbox is gone and it never runs again: its addresses are free.
        Effect.map((
          p,
        ) => (p.status?.phase === "Succeeded" || p.status?.phase === "Failed" ? undefined : p.metadata.uid)),
        Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
        Effect.mapError(failure("get pod", `${namespace}/${name}`)),
      ),
    networkExists: (ref: NetworkRef) =>
      kube.get(networkResource(ref.kind), ref.name, ref.namespace ? { namespace: ref.namespace } : {}).pipe(
        Effect.map((n) => n.metadata.uid === ref.uid),
        Effect.catchTag("KubeNotFound", () => Effect.succeed(false)),
        Effect.mapError(failure("get network", `${ref.kind} ${ref.name}`)),
      ),
    liveNodes: kube.list(NodeResource).pipe(
      Effect.map((l): ReadonlySet<string> => new Set(l.items.map((n) => n.metadata.name ?? ""))),
      Effect.mapError(failure("list", "nodes")),
    ),
  };
  return directory;
});
