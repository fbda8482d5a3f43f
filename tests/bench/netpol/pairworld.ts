// The policies the throughput test's policed pods carry, rendered by the engine (compilePod + renderNft) as the node
// agent renders them: `policies` MultiNetworkPolicies applying to both pods (ingress and egress), each admitting
// ten peer pods of its own and an ipBlock on a port range of its own; the last one (by name) admits the bench's
// traffic partner on the bench's port. The renderer folds them all into per-family (peer . protocol . ports) sets,
// so a packet's cost is a few set lookups whatever the count; were it a rule per flow, the bench's allowed packets
// would be the ones walking the whole chain.
import { Effect } from "effect";
import type { MultiNetworkPolicy } from "../../../core/api/netpol.ts";
import { PolicyForAnnotation } from "../../../core/api/netpol.ts";
import { compilePod } from "../../../core/netpol/compile.ts";
import {
  networkKey,
  podKey,
  type PolicyWorld,
  type WorldAttachment,
  type WorldPod,
} from "../../../core/netpol/model.ts";
import { renderNft } from "../../../core/netpol/nft.ts";
import {
  allowedPort,
  clientAddress,
  clientAddress6,
  type PairRulesets,
  podInterface,
  serverAddress,
  serverAddress6,
} from "./throughput.ts";

const ns = "bench";
const network = "bench";

const policy = (name: string, spec: MultiNetworkPolicy["spec"]): MultiNetworkPolicy => ({
  metadata: { name, namespace: ns, annotations: { [PolicyForAnnotation]: `ClusterNetwork/${network}` } },
  spec,
});

export function pairWorld(policies: number): PolicyWorld {
  const pods = new Map<string, WorldPod>();
  const attachments = new Map<string, ReadonlyArray<WorldAttachment>>();
  const addPod = (name: string, labels: Record<string, string>, v4: string, v6: string) => {
    pods.set(podKey(ns, name), { namespace: ns, name, labels, ports: [] });
    attachments.set(podKey(ns, name), [{
      network: networkKey("ClusterNetwork", "", network),
      ifName: podInterface,
      v4: [v4],
      v6: [v6],
    }]);
  };
  addPod("server", { role: "server" }, serverAddress, serverAddress6);
  addPod("client", { role: "client" }, clientAddress, clientAddress6);
  const list: MultiNetworkPolicy[] = [];
  const both = { matchExpressions: [{ key: "role", operator: "In", values: ["server", "client"] }] };
  for (let p = 0; p < policies - 1; p++) {
    for (let i = 0; i < 10; i++) {
      addPod(
        `peer-${p}-${i}`,
        { peer: `p${p}` },
        `10.${80 + (p >> 8)}.${p & 255}.${i + 1}`,
        `fd80::${p.toString(16)}:${i + 1}`,
      );
    }
    const peers = [{ podSelector: { matchLabels: { peer: `p${p}` } } }, {
      ipBlock: { cidr: `172.${16 + (p % 16)}.${p & 255}.0/24` },
    }];
    const ports = [{ protocol: "TCP" as const, port: 8000 + p, endPort: 8010 + p }, {
      protocol: "UDP" as const,
      port: 8000 + p,
      endPort: 8010 + p,
    }];
    list.push(policy(`p-${String(p).padStart(4, "0")}`, {
      podSelector: both,
      policyTypes: ["Ingress", "Egress"],
      ingress: [{ from: peers, ports }],
      egress: [{ to: peers, ports }],
    }));
  }
  const bench = [{ protocol: "TCP" as const, port: allowedPort }, { protocol: "UDP" as const, port: allowedPort }];
  list.push(policy("zz-traffic", {
    podSelector: both,
    policyTypes: ["Ingress", "Egress"],
    ingress: [{ from: [{ podSelector: { matchLabels: { role: "client" } } }], ports: bench }],
    egress: [{ to: [{ podSelector: { matchLabels: { role: "server" } } }], ports: bench }],
  }));
  return {
    policies: new Map(list.map((p) => [podKey(ns, p.metadata.name!), p])),
    pods,
    namespaces: new Map([[ns, {}]]),
    attachments,
  };
}

/** The two pods' scripts as renderNft makes them. */
export function pairRulesets(policies: number): PairRulesets {
  const world = pairWorld(policies);
  const render = (name: string) => Effect.runSync(renderNft(compilePod(world, podKey(ns, name))));
  return { client: render("client"), server: render("server") };
}
