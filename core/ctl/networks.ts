// Network lookup and pool usage shared by danmctl's commands.
import { Effect, Schema } from "effect";
import { type Network, type NetworkKind, NetworkKinds, networkResources } from "../api/danm.ts";
import { type IPBlock, ipBlockResource, labels } from "../api/ipam.ts";
import { type FamilyPlan, planFamily, poolCapacity } from "../ipam/plan.ts";
import { formatCidr, formatIp } from "../net/ip.ts";
import { Kube, type KubeError, type ResourceType } from "../ports/kube.ts";

export class NetworkNotFound extends Schema.TaggedError<NetworkNotFound>()("NetworkNotFound", {
  name: Schema.String,
  namespace: Schema.optionalKey(Schema.String),
  detail: Schema.String,
}) {
  override get message() {
    return `network ${this.namespace ? `${this.namespace}/` : ""}${this.name}: ${this.detail}`;
  }
}

export interface FoundNetwork {
  readonly kind: NetworkKind;
  readonly network: Network;
}

export const networkResource = (kind: NetworkKind): ResourceType<Network> => networkResources[kind];

export const label = (n: FoundNetwork) =>
  n.kind === "ClusterNetwork"
    ? `ClusterNetwork ${n.network.metadata.name}`
    : `${n.kind} ${n.network.metadata.namespace}/${n.network.metadata.name}`;

/**
 * Finds a network by name: with a namespace, a DanmNet or TenantNetwork there; without, a ClusterNetwork.
 * `kind` narrows the search.
 */
export const findNetwork = (name: string, namespace: string | undefined, kind?: NetworkKind) =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    const kinds: NetworkKind[] = kind ? [kind] : namespace ? ["DanmNet", "TenantNetwork"] : ["ClusterNetwork"];
    const found: FoundNetwork[] = [];
    for (const k of kinds) {
      const opts = k === "ClusterNetwork" ? {} : { namespace: namespace ?? "default" };
      const got = yield* kube.get(networkResource(k), name, opts).pipe(
        Effect.map((network) => ({ kind: k, network })),
        Effect.catchTag("KubeNotFound", () => Effect.succeed(undefined)),
      );
      if (got) found.push(got);
    }
    if (found.length === 0) {
      return yield* new NetworkNotFound({
        name,
        ...(namespace ? { namespace } : {}),
        detail: `no ${kinds.join(" or ")} of that name${
          kind || namespace ? "" : " (use -n for DanmNets and TenantNetworks)"
        }`,
      });
    }
    if (found.length > 1) {
      return yield* new NetworkNotFound({
        name,
        ...(namespace ? { namespace } : {}),
        detail: `ambiguous: both a ${found.map((f) => f.kind).join(" and a ")}; pass --kind`,
      });
    }
    return found[0];
  });

/** Every network of every kind (kinds whose CRD is not installed are skipped). */
export const listNetworks = Effect.gen(function* () {
  const kube = yield* Kube;
  const out: FoundNetwork[] = [];
  for (const kind of NetworkKinds) {
    const items = yield* kube.list(networkResource(kind)).pipe(
      Effect.map((l) => l.items),
      Effect.catchTag("KubeNotFound", () => Effect.succeed([] as ReadonlyArray<Network>)),
    );
    for (const network of items) out.push({ kind, network });
  }
  return out;
});

export interface PoolUsage {
  readonly family: 4 | 6;
  readonly cidr: string;
  readonly pool: string;
  readonly capacity: bigint;
  readonly used: number;
}

export const blocksOf = (uid: string): Effect.Effect<ReadonlyArray<IPBlock>, KubeError, Kube> =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    return (yield* kube.list(ipBlockResource, { labelSelector: `${labels.networkUid}=${uid}` })).items;
  });

export function poolUsage(n: FoundNetwork, blocks: ReadonlyArray<IPBlock>): PoolUsage[] {
  const out: PoolUsage[] = [];
  for (const family of [4, 6] as const) {
    const plan: FamilyPlan | undefined = planFamily(n.network.spec.Options ?? {}, family).plan;
    if (!plan) continue;
    const fam = family === 4 ? "IPv4" : "IPv6";
    const used = blocks.filter((b) => b.spec.family === fam)
      .reduce((a, b) => a + Object.keys(b.spec.reservations).length, 0);
    out.push({
      family,
      cidr: formatCidr(plan.network),
      pool: `${formatIp({ family, value: plan.poolStart })}-${formatIp({ family, value: plan.poolEnd })}`,
      capacity: poolCapacity(plan),
      used,
    });
  }
  return out;
}
