// renderNft: the exact script for a small case, the empty case, deterministic bytes, shared sets, and refusal of
// anything that is not an interface name, canonical CIDR, protocol or port (nothing is quoted into the text).
import { Effect } from "effect";
import fc from "fast-check";
import type { Flow, PodRules, Protocol } from "../../../core/netpol/model.ts";
import { foldDirection, type FoldedDirection, NetpolRenderError, renderNft } from "../../../core/netpol/nft.ts";
import { blocksContain } from "../../../core/netpol/peers.ts";
import { directionVerdict } from "../../../core/netpol/reach.ts";
import { cidrsOverlap, parseCidr } from "../../../core/net/ip.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const origin = { policy: "ns1/p", rule: 0 };
const rules = (flows: Flow[], ifName = "net1"): PodRules => ({
  pod: "ns1/a",
  interfaces: [{ ifName, network: "DanmNet:ns1/net1", ingress: { policies: ["ns1/p"], flows } }],
});
const render = (r: PodRules) => Effect.runSync(renderNft(r));
const refused = (r: PodRules) => {
  const out = Effect.runSync(Effect.result(renderNft(r)));
  if (out._tag === "Success") throw new Error(`rendered:\n${out.success}`);
  assert(out.failure instanceof NetpolRenderError);
  return out.failure;
};

Deno.test("renderNft: one transaction replacing danm's table; per-interface chains; sets; ND always allowed", () => {
  const peers = { v4: ["10.0.0.2/32", "10.1.0.0/16"], v6: ["fd00::2/128"] };
  const script = render({
    pod: "ns1/a",
    interfaces: [
      {
        ifName: "net1",
        network: "DanmNet:ns1/net1",
        ingress: {
          policies: ["ns1/p"],
          flows: [
            { peers, protocol: "TCP", ports: { from: 80, to: 80 }, origin },
            { peers, protocol: "UDP", ports: { from: 1000, to: 2000 }, origin },
            { peers: "any", protocol: "SCTP", origin },
          ],
        },
        egress: { policies: ["ns1/p"], flows: [{ peers: "any", origin }] },
      },
      { ifName: "net2", network: "ClusterNetwork:c", egress: { policies: ["ns1/q"], flows: [] } },
    ],
  });
  const nd = "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, " +
    "nd-redirect, mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report } accept";
  assertEquals(
    script,
    `# danm MultiNetworkPolicy rules of one pod; the table is replaced whole.
table inet danm_netpol {}
delete table inet danm_netpol
table inet danm_netpol {
\tset in_0_l4v4 {
\t\ttype ipv4_addr . inet_proto . inet_service
\t\tflags interval
\t\telements = { 10.0.0.2/32 . tcp . 80, 10.1.0.0/16 . tcp . 80, 10.0.0.2/32 . udp . 1000-2000, ` +
      `10.1.0.0/16 . udp . 1000-2000, 0.0.0.0/0 . sctp . 0-65535 }
\t}
\tset in_0_l4v6 {
\t\ttype ipv6_addr . inet_proto . inet_service
\t\tflags interval
\t\telements = { fd00::2/128 . tcp . 80, fd00::2/128 . udp . 1000-2000, ::/0 . sctp . 0-65535 }
\t}
\tchain pod_in {
\t\ttype filter hook input priority filter; policy accept;
\t\tct state established,related accept
\t\tiifname vmap { "net1" : jump in_0 }
\t}
\tchain pod_out {
\t\ttype filter hook output priority filter; policy accept;
\t\tct state established,related accept
\t\toifname vmap { "net1" : jump out_0, "net2" : jump out_1 }
\t}
\tchain in_0 {
\t\t${nd}
\t\tip saddr . meta l4proto . th dport @in_0_l4v4 accept
\t\tip6 saddr . meta l4proto . th dport @in_0_l4v6 accept
\t\tdrop
\t}
\tchain out_0 {
\t\t${nd}
\t\taccept
\t}
\tchain out_1 {
\t\t${nd}
\t\tdrop
\t}
}
`,
  );
});

Deno.test("foldDirection: overlapping rules become disjoint elements; port segments merge; all-protocol peers", () => {
  const f = foldDirection({
    policies: [],
    flows: [
      { peers: { v4: ["10.0.0.0/24"], v6: [] }, protocol: "TCP", ports: { from: 80, to: 90 }, origin },
      { peers: { v4: ["10.0.0.0/25"], v6: [] }, protocol: "TCP", ports: { from: 85, to: 100 }, origin },
      { peers: { v4: ["10.0.0.128/25"], v6: [] }, protocol: "TCP", ports: { from: 91, to: 100 }, origin },
      { peers: { v4: ["10.1.0.0/24"], v6: ["fd00::/64"] }, origin },
      { peers: { v4: ["10.1.0.0/25"], v6: [] }, origin },
    ],
  });
  assertEquals(f.acceptAll, false);
  assertEquals(f.l4.v4.map((e) => `${e.cidr} ${e.protocol} ${e.from}-${e.to}`), ["10.0.0.0/24 TCP 80-100"]);
  assertEquals(f.l4.v6, []);
  assertEquals(f.anyProtocol, { v4: ["10.1.0.0/24"], v6: ["fd00::/64"] });
});

/** A reading of the folded sets as the kernel does: accept-all, one l4 lookup, one address lookup. */
function foldedAllows(f: FoldedDirection, peer: string, protocol: Protocol, port: number): boolean {
  if (f.acceptAll || blocksContain(f.anyProtocol, peer)) return true;
  const family = peer.includes(":") ? f.l4.v6 : f.l4.v4;
  return family.some((e) =>
    e.protocol === protocol && port >= e.from && port <= e.to &&
    blocksContain(peer.includes(":") ? { v4: [], v6: [e.cidr] } : { v4: [e.cidr], v6: [] }, peer)
  );
}

Deno.test("property: the folded sets admit exactly what the flows admit (so mayReach = the kernel)", () => {
  const cidrArb = fc.constantFrom("10.0.0.0/24", "10.0.0.0/25", "10.0.0.128/26", "10.0.0.7/32", "10.0.1.0/24");
  const cidr6Arb = fc.constantFrom("fd00::/64", "fd00::/120", "fd00::7/128");
  const flowArb: fc.Arbitrary<Flow> = fc.record({
    peers: fc.oneof(
      fc.constant("any" as const),
      fc.record({ v4: fc.uniqueArray(cidrArb, { maxLength: 2 }), v6: fc.uniqueArray(cidr6Arb, { maxLength: 1 }) }),
    ),
    protocol: fc.option(fc.constantFrom<Protocol>("TCP", "UDP", "SCTP"), { nil: undefined }),
    ports: fc.option(
      fc.tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 5 })).map(([a, n]) => ({
        from: a,
        to: a + n,
      })),
      { nil: undefined },
    ),
    origin: fc.constant(origin),
  }).map((f) => (f.protocol === undefined ? { peers: f.peers, origin } : f));
  const peers = ["10.0.0.1", "10.0.0.7", "10.0.0.130", "10.0.0.200", "10.0.1.9", "10.2.0.1", "fd00::7", "fd00::1:0"];
  fc.assert(
    fc.property(fc.array(flowArb, { maxLength: 5 }), (flows) => {
      const d = { policies: ["ns1/p"], flows };
      // The folded sets must also be what nft accepts: disjoint elements, canonical CIDRs.
      Effect.runSync(renderNft({ pod: "ns1/a", interfaces: [{ ifName: "net1", network: "n", ingress: d }] }));
      const folded = foldDirection(d);
      for (const peer of peers) {
        for (const protocol of ["TCP", "UDP", "SCTP"] as const) {
          for (let port = 0; port <= 18; port++) {
            assertEquals(
              foldedAllows(folded, peer, protocol, port),
              directionVerdict(d, peer, protocol, port).allowed,
              `${peer} ${protocol}/${port}`,
            );
          }
        }
      }
      for (const list of [folded.l4.v4, folded.l4.v6]) {
        for (const [i, a] of list.entries()) {
          for (const b of list.slice(i + 1)) {
            const overlap = a.protocol === b.protocol && a.from <= b.to && b.from <= a.to &&
              cidrsOverlap(parseCidr(a.cidr)!.cidr, parseCidr(b.cidr)!.cidr);
            assert(!overlap, `${JSON.stringify(a)} overlaps ${JSON.stringify(b)}`);
          }
        }
      }
    }),
    { numRuns: 120 },
  );
});

Deno.test("renderNft: no policed interface removes the table and nothing else; same rules, same bytes", () => {
  assertEquals(
    render({ pod: "ns1/a", interfaces: [] }),
    "# danm MultiNetworkPolicy rules of one pod; the table is replaced whole.\n" +
      "table inet danm_netpol {}\ndelete table inet danm_netpol\n",
  );
  const r = rules([{ peers: { v4: ["10.0.0.0/24"], v6: [] }, protocol: "TCP", origin }]);
  assertEquals(render(r), render(structuredClone(r)));
});

Deno.test("renderNft refuses what is not an interface name, canonical CIDR, protocol or port — typed, naming it", () => {
  for (const name of ['net1"; flush ruleset; "', "a b", "", "0123456789abcdef", "net1\n}", "-x"]) {
    const e = refused(rules([], name));
    assertEquals([e.field, e.value, e.pod], ["interface", name, "ns1/a"]);
  }
  for (const cidr of ["10.0.0.1/24", "10.0.0.0/33", "10.0.0.0/24 }", "bogus", "fd00::2/128"]) {
    assertEquals(refused(rules([{ peers: { v4: [cidr], v6: [] }, origin }])).field, "address", cidr);
  }
  assertEquals(refused(rules([{ peers: { v4: [], v6: ["FD00::2/128"] }, origin }])).field, "address");
  assertEquals(refused(rules([{ peers: "any", protocol: "ICMP" as "TCP", origin }])).field, "protocol");
  for (const ports of [{ from: 0, to: 1 }, { from: 5, to: 4 }, { from: 1, to: 65536 }, { from: 1.5, to: 2 }]) {
    assertEquals(refused(rules([{ peers: "any", protocol: "TCP", ports, origin }])).field, "port");
  }
  const twice: PodRules = { pod: "ns1/a", interfaces: [...rules([]).interfaces, ...rules([]).interfaces] };
  assertEquals(refused(twice).reason, "appears twice");
});
