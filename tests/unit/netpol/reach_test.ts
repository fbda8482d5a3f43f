// mayReach answers from the compiled rules; a property test holds it to a brute-force reading of the policies
// themselves (written independently of the compiler: selectors and ipBlocks checked per address, named ports
// looked up directly), over random worlds.
import fc from "fast-check";
import type { MultiNetworkPolicy, PolicyPeer, PolicyPort } from "../../../core/api/netpol.ts";
import { compilePod, compilePods } from "../../../core/netpol/compile.ts";
import { type NetworkKey, type PolicyWorld, type Protocol } from "../../../core/netpol/model.ts";
import { renderNft } from "../../../core/netpol/nft.ts";
import { mayReach } from "../../../core/netpol/reach.ts";
import { policyTypes, selectorMatches } from "../../../core/netpol/select.ts";
import { namespaceLabels } from "../../../core/netpol/model.ts";
import { contains, parseCidr, parseIp } from "../../../core/net/ip.ts";
import { Effect } from "effect";
import { assert, assertEquals } from "../../harness/assert.ts";
import { iface, NET, NET2, type PodSpec, policy, world } from "./fixtures.ts";
import { buildWorld, podArb, policyArb } from "./gen.ts";

Deno.test("mayReach: allowed by rules on both ends, denied by isolation, explained", () => {
  const pods: PodSpec[] = [
    { name: "a", labels: { app: "a" }, ifs: [iface("net1", NET, ["10.0.0.1"], ["fd00::1"])] },
    { name: "b", labels: { app: "b" }, ifs: [iface("net1", NET, ["10.0.0.2"], ["fd00::2"])] },
    { name: "c", labels: { app: "c" }, ifs: [iface("net2", NET2, ["10.9.0.3"])] },
  ];
  const allowA = policy("ns1", "allow-a", {
    podSelector: { matchLabels: { app: "b" } },
    ingress: [{ from: [{ podSelector: { matchLabels: { app: "a" } } }], ports: [{ port: 80 }] }],
  });
  const w = world(pods, [allowA]);
  const q = { from: "ns1/a", to: "ns1/b", network: NET, protocol: "TCP" as const, port: 80 };
  const yes = mayReach(w, q);
  assert(yes.allowed);
  assertEquals(yes.paths.map((p) => [p.family, p.source, p.destination]), [[4, "10.0.0.1", "10.0.0.2"], [
    6,
    "fd00::1",
    "fd00::2",
  ]]);
  assertEquals(yes.paths[0].ingress.allowedBy, [{ policy: "ns1/allow-a", rule: 0 }]);
  assert(yes.reasons[0].includes("egress not isolated") && yes.reasons[0].includes("ns1/allow-a ingress rule 0"));
  const no = mayReach(w, { ...q, port: 81 });
  assert(!no.allowed);
  assert(no.reasons[0].includes("ingress denied (isolated by ns1/allow-a"), no.reasons[0]);
  assert(!mayReach(w, { ...q, from: "ns1/b", to: "ns1/a", port: 80 }).allowed === false, "a is not isolated");
  assertEquals(mayReach(w, { ...q, to: "ns1/c" }).reasons, ["ns1/c has no interface on DanmNet:ns1/net1"]);
});

// --- brute force --------------------------------------------------------------------------------------------

const addrOf = (w: PolicyWorld, pod: string, net: NetworkKey, family: 4 | 6) =>
  (w.attachments.get(pod) ?? []).filter((a) => a.network === net).flatMap((a) => family === 4 ? a.v4 : a.v6);

function peerMatches(w: PolicyWorld, p: MultiNetworkPolicy, peer: PolicyPeer, other: string, addr: string): boolean {
  if (peer.ipBlock) {
    const ip = parseIp(addr)!;
    const c = parseCidr(peer.ipBlock.cidr);
    return !!c && contains(c.cidr, ip) && (peer.ipBlock.except ?? []).every((e) => !contains(parseCidr(e)!.cidr, ip));
  }
  const pod = w.pods.get(other)!;
  if (!peer.podSelector && !peer.namespaceSelector) return false;
  const nsOk = peer.namespaceSelector
    ? selectorMatches(peer.namespaceSelector, namespaceLabels(w, pod.namespace))
    : pod.namespace === p.metadata.namespace;
  return nsOk && (!peer.podSelector || selectorMatches(peer.podSelector, pod.labels));
}

function portMatches(w: PolicyWorld, pp: PolicyPort, portOwner: string, proto: Protocol, port: number): boolean {
  if ((pp.protocol ?? "TCP") !== proto) return false;
  if (pp.port === undefined || pp.port === null) return true;
  if (typeof pp.port === "string") {
    return w.pods.get(portOwner)!.ports.some((n) => n.name === pp.port && n.protocol === proto && n.port === port);
  }
  return port >= pp.port && port <= (pp.endPort ?? pp.port);
}

/** One direction at `self` with the other end `other` (address `otherAddr`); named ports live on `portOwner`. */
function bruteDirection(
  w: PolicyWorld,
  way: "ingress" | "egress",
  self: string,
  other: string,
  otherAddr: string,
  net: NetworkKey,
  proto: Protocol,
  port: number,
): boolean {
  const me = w.pods.get(self)!;
  const applying = [...w.policies.values()].filter((p) =>
    p.metadata.namespace === me.namespace && selectorMatches(p.spec!.podSelector, me.labels) &&
    (p.metadata.annotations?.["k8s.v1.cni.cncf.io/policy-for"] ?? "").split(",").some((n) =>
      n.trim() === "net1" ? net === NET : net === NET2
    ) &&
    policyTypes(p)[way]
  );
  if (applying.length === 0) return true;
  const portOwner = way === "ingress" ? self : other;
  return applying.some((p) =>
    (way === "ingress" ? p.spec!.ingress ?? [] : (p.spec!.egress ?? []).map((r) => ({ from: r.to, ports: r.ports })))
      .some((r) =>
        ((r.from ?? []).length === 0 || r.from!.some((peer) => peerMatches(w, p, peer, other, otherAddr))) &&
        ((r.ports ?? []).length === 0 || r.ports!.some((pp) => portMatches(w, pp, portOwner, proto, port)))
      )
  );
}

Deno.test("property: mayReach agrees with a brute-force reading of the policies; rendering is deterministic", () => {
  let allowed = 0;
  let denied = 0;
  fc.assert(
    fc.property(
      fc.array(podArb, { minLength: 2, maxLength: 4 }),
      fc.array(policyArb, { minLength: 1, maxLength: 3 }),
      fc.boolean(),
      (podSpecs, policySpecs, teamA) => {
        const w = buildWorld(podSpecs, policySpecs, teamA);
        const keys = [...w.pods.keys()];
        // A batch sharing one cache compiles exactly what pods compiled one by one do.
        const batch = compilePods(w, keys);
        const backwards = <K, V>(m: ReadonlyMap<K, V>) => new Map([...m].reverse());
        const shuffled: PolicyWorld = {
          policies: backwards(w.policies),
          pods: backwards(w.pods),
          namespaces: backwards(w.namespaces),
          attachments: new Map([...w.attachments].reverse().map(([k, a]) => [k, [...a].reverse()])),
        };
        for (const k of keys) assertEquals(batch.get(k), compilePod(w, k));
        for (const from of keys) {
          // Same world in another order (maps filled backwards, interfaces reversed): the same bytes.
          assertEquals(
            Effect.runSync(renderNft(compilePod(w, from))),
            Effect.runSync(renderNft(compilePod(shuffled, from))),
          );
          for (const to of keys) {
            for (const net of [NET, NET2]) {
              for (const protocol of ["TCP", "UDP"] as const) {
                for (const port of [80, 81, 85]) {
                  const got = mayReach(w, { from, to, network: net, protocol, port });
                  let expected = true;
                  let paths = 0;
                  for (const family of [4, 6] as const) {
                    for (const s of addrOf(w, from, net, family)) {
                      for (const d of addrOf(w, to, net, family)) {
                        paths++;
                        expected &&= bruteDirection(w, "egress", from, to, d, net, protocol, port) &&
                          bruteDirection(w, "ingress", to, from, s, net, protocol, port);
                      }
                    }
                  }
                  assertEquals(
                    got.allowed,
                    paths > 0 && expected,
                    `${from} → ${to} ${net} ${protocol}/${port}\n${got.reasons.join("\n")}`,
                  );
                  if (paths > 0) got.allowed ? allowed++ : denied++;
                }
              }
            }
          }
        }
      },
    ),
    { numRuns: 150 },
  );
  // The generator must exercise both answers, or the agreement above proves little.
  assert(allowed > 500 && denied > 500, `allowed ${allowed}, denied ${denied}`);
});
