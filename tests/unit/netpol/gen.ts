// Random small worlds for the engine's property tests: up to a few pods in two namespaces, on a DanmNet of ns1 and a
// ClusterNetwork, with named ports, and policies drawn from every selector, peer and port shape.
import fc from "fast-check";
import type { PolicyPeer, PolicyPort } from "../../../core/api/netpol.ts";
import type { PolicyWorld } from "../../../core/netpol/model.ts";
import { iface, NET, NET2, type PodSpec, policy, world } from "./fixtures.ts";

export const labelArb = fc.record({ app: fc.constantFrom("a", "b"), tier: fc.constantFrom("x", "y") }, {
  requiredKeys: ["app"],
});
const selectorArb = fc.oneof(
  fc.constant({}),
  fc.record({ matchLabels: fc.record({ app: fc.constantFrom("a", "b") }) }),
  fc.record({
    matchExpressions: fc.array(
      fc.record({
        key: fc.constantFrom("app", "tier", "team"),
        operator: fc.constantFrom("In", "NotIn", "Exists", "DoesNotExist"),
        values: fc.array(fc.constantFrom("a", "b", "x", "y"), { maxLength: 2 }),
      }),
      { maxLength: 2 },
    ),
  }),
);
const peerArb: fc.Arbitrary<PolicyPeer> = fc.oneof(
  fc.record({ podSelector: selectorArb }),
  fc.record({ namespaceSelector: selectorArb }),
  fc.record({ podSelector: selectorArb, namespaceSelector: selectorArb }),
  fc.record({
    ipBlock: fc.oneof(
      fc.record({
        cidr: fc.constantFrom("10.0.0.0/29", "10.0.0.0/24"),
        except: fc.constantFrom([], ["10.0.0.2/31"], ["10.0.0.4/32"]),
      }),
      fc.record({ cidr: fc.constantFrom("fd00::/125", "fd00::/64"), except: fc.constantFrom([], ["fd00::2/127"]) }),
    ),
  }),
);
const portArb: fc.Arbitrary<PolicyPort> = fc.oneof(
  fc.record({ protocol: fc.constantFrom("TCP", "UDP"), port: fc.constantFrom(80, 81, "http", "dns") }, {
    requiredKeys: ["port"],
  }),
  fc.record({ port: fc.constant(80), endPort: fc.constantFrom(80, 90) }),
  fc.record({ protocol: fc.constantFrom("TCP", "UDP") }),
);
const ruleArb = fc.record({
  peers: fc.option(fc.array(peerArb, { maxLength: 2 }), { nil: undefined }),
  ports: fc.option(fc.array(portArb, { maxLength: 2 }), { nil: undefined }),
});
export const policyArb = fc.record({
  ns: fc.constantFrom("ns1", "ns1", "ns2"),
  selector: fc.oneof(fc.constant({}), selectorArb),
  net: fc.constantFrom("net1", "ClusterNetwork/cnet", "net1, ClusterNetwork/cnet"),
  types: fc.option(fc.subarray(["Ingress", "Egress"] as const, { minLength: 1 }), { nil: undefined }),
  ingress: fc.option(fc.array(ruleArb, { maxLength: 2 }), { nil: undefined }),
  egress: fc.option(fc.array(ruleArb, { maxLength: 2 }), { nil: undefined }),
});
export const podArb = fc.record({
  ns: fc.constantFrom("ns1", "ns2"),
  labels: labelArb,
  http: fc.constantFrom(80, 81, undefined),
  dnsUdp: fc.boolean(),
  onNet1: fc.boolean(),
  v6: fc.boolean(),
});

export type PodGen = typeof podArb extends fc.Arbitrary<infer T> ? T : never;
export type PolicyGen = typeof policyArb extends fc.Arbitrary<infer T> ? T : never;

export function buildWorld(
  podSpecs: ReadonlyArray<PodGen>,
  policySpecs: ReadonlyArray<PolicyGen>,
  teamA: boolean,
): PolicyWorld {
  const pods: PodSpec[] = podSpecs.map((p, i) => ({
    ns: p.ns,
    name: `p${i}`,
    labels: p.labels,
    ports: [
      ...(p.http === undefined ? [] : [{ name: "http", port: p.http, protocol: "TCP" as const }]),
      ...(p.dnsUdp ? [{ name: "dns", port: 80, protocol: "UDP" as const }] : []),
    ],
    // net1 is a DanmNet of ns1: only ns1's pods can be on it; everyone is on the ClusterNetwork.
    ifs: [
      ...(p.onNet1 && p.ns === "ns1" ? [iface("net1", NET, [`10.0.0.${i + 1}`], p.v6 ? [`fd00::${i + 1}`] : [])] : []),
      iface("net2", NET2, [`10.0.0.${i + 1}`], p.v6 ? [`fd00::${i + 1}`] : []),
    ],
  }));
  const policies = policySpecs.map((s, i) =>
    policy(s.ns, `pol${i}`, {
      podSelector: s.selector,
      ...(s.types ? { policyTypes: s.types } : {}),
      ...(s.ingress
        ? {
          ingress: s.ingress.map((r) => ({
            ...(r.peers ? { from: r.peers } : {}),
            ...(r.ports ? { ports: r.ports } : {}),
          })),
        }
        : {}),
      ...(s.egress
        ? {
          egress: s.egress.map((r) => ({
            ...(r.peers ? { to: r.peers } : {}),
            ...(r.ports ? { ports: r.ports } : {}),
          })),
        }
        : {}),
    }, s.net)
  );
  return world(pods, policies, { ns1: { team: teamA ? "a" : "b" }, ns2: { team: "b" } });
}
