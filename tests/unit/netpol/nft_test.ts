// renderNft: the exact script for a small case, the empty case, deterministic bytes, shared sets, and refusal of
// anything that is not an interface name, canonical CIDR, protocol or port (nothing is quoted into the text).
import { Effect } from "effect";
import type { Flow, PodRules } from "../../../core/netpol/model.ts";
import { NetpolRenderError, renderNft } from "../../../core/netpol/nft.ts";
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
\tset in_0_s0 {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.0.0.2/32, 10.1.0.0/16 }
\t}
\tset in_0_s1 {
\t\ttype ipv6_addr
\t\tflags interval
\t\telements = { fd00::2/128 }
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
\t\tip saddr @in_0_s0 meta l4proto tcp th dport 80 accept
\t\tip6 saddr @in_0_s1 meta l4proto tcp th dport 80 accept
\t\tip saddr @in_0_s0 meta l4proto udp th dport 1000-2000 accept
\t\tip6 saddr @in_0_s1 meta l4proto udp th dport 1000-2000 accept
\t\tmeta l4proto sctp accept
\t\tdrop
\t}
\tchain out_0 {
\t\t${nd}
\t\taccept
\t\tdrop
\t}
\tchain out_1 {
\t\t${nd}
\t\tdrop
\t}
}
`,
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
