// compilePod: NetworkPolicy's semantics per network — isolation, the union of rules, peers resolved on the policed
// network only, namespace selectors, ipBlock except, ports, ranges, named ports, IPv4 and IPv6.
import { compilePod } from "../../../core/netpol/compile.ts";
import { ipBlockAddresses, unionBlocks } from "../../../core/netpol/peers.ts";
import { mayReach } from "../../../core/netpol/reach.ts";
import { applyingPolicies, selectingPolicies } from "../../../core/netpol/select.ts";
import { assertEquals } from "../../harness/assert.ts";
import { iface, NET, NET2, policy, world } from "./fixtures.ts";

const pods = [
  {
    name: "srv",
    labels: { app: "srv" },
    ports: [{ name: "http", port: 8080, protocol: "TCP" as const }],
    ifs: [iface("net1", NET, ["10.0.0.1"], ["fd00::1"]), iface("net2", NET2, ["10.9.0.1"])],
  },
  {
    name: "cli",
    labels: { app: "cli" },
    ifs: [iface("net1", NET, ["10.0.0.2"], ["fd00::2"]), iface("net2", NET2, ["10.9.0.2"])],
  },
  { name: "other", labels: { app: "other" }, ifs: [iface("net1", NET, ["10.0.0.3"])] },
  { ns: "ns2", name: "far", labels: { app: "cli" }, ifs: [iface("net2", NET2, ["10.9.0.9"])] },
];
const srvOnly = { matchLabels: { app: "srv" } };

Deno.test("no applying policy: no rules; default deny isolates ingress only", () => {
  assertEquals(compilePod(world(pods, []), "ns1/srv"), { pod: "ns1/srv", interfaces: [] });
  const r = compilePod(world(pods, [policy("ns1", "deny", { podSelector: srvOnly })]), "ns1/srv");
  assertEquals(r.interfaces, [{ ifName: "net1", network: NET, ingress: { policies: ["ns1/deny"], flows: [] } }]);
  const both = compilePod(
    world(pods, [policy("ns1", "deny", { podSelector: srvOnly, policyTypes: ["Ingress", "Egress"] })]),
    "ns1/srv",
  );
  assertEquals(both.interfaces[0].egress, { policies: ["ns1/deny"], flows: [] });
});

Deno.test("podSelector peers resolve to their addresses on the policed network only, v4 and v6", () => {
  const p = policy("ns1", "p", {
    podSelector: srvOnly,
    ingress: [{ from: [{ podSelector: { matchLabels: { app: "cli" } } }], ports: [{ port: 80 }] }],
  });
  const r = compilePod(world(pods, [p]), "ns1/srv");
  assertEquals(r.interfaces[0].ingress?.flows, [{
    peers: { v4: ["10.0.0.2/32"], v6: ["fd00::2/128"] },
    protocol: "TCP",
    ports: { from: 80, to: 80 },
    origin: { policy: "ns1/p", rule: 0 },
  }]);
  // The same policy for the ClusterNetwork: cli's address there; ns2/far is not in the policy's namespace.
  const c = compilePod(
    world(pods, [{
      ...p,
      metadata: { ...p.metadata, annotations: { "k8s.v1.cni.cncf.io/policy-for": "ClusterNetwork/cnet" } },
    }]),
    "ns1/srv",
  );
  assertEquals(c.interfaces.map((i) => [i.ifName, i.ingress?.flows[0].peers]), [["net2", {
    v4: ["10.9.0.2/32"],
    v6: [],
  }]]);
});

Deno.test("namespaceSelector alone: every pod of matching namespaces; with podSelector: AND", () => {
  const nsLabels = { ns1: { team: "a" }, ns2: { team: "b" } };
  const mk = (peer: object) =>
    compilePod(
      world(
        pods,
        [policy("ns1", "p", { podSelector: srvOnly, ingress: [{ from: [peer] }] }, "ClusterNetwork/cnet")],
        nsLabels,
      ),
      "ns1/srv",
    ).interfaces[0].ingress?.flows.map((f) => f.peers);
  assertEquals(mk({ namespaceSelector: { matchLabels: { team: "b" } } }), [{ v4: ["10.9.0.9/32"], v6: [] }]);
  assertEquals(mk({ namespaceSelector: {} }), [{ v4: ["10.9.0.1/32", "10.9.0.2/32", "10.9.0.9/32"], v6: [] }]);
  assertEquals(
    mk({
      namespaceSelector: {
        matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ["ns1"] }],
      },
      podSelector: { matchLabels: { app: "cli" } },
    }),
    [{ v4: ["10.9.0.2/32"], v6: [] }],
  );
  assertEquals(
    mk({ namespaceSelector: { matchLabels: { team: "x" } } }),
    [],
    "peers resolving to no address allow nothing",
  );
});

Deno.test("ipBlock with except, CIDRs canonical and merged; empty from = any peer; empty ports = every protocol", () => {
  assertEquals(ipBlockAddresses("10.0.0.0/24", ["10.0.0.0/25", "10.0.0.192/26"]), { v4: ["10.0.0.128/26"], v6: [] });
  assertEquals(ipBlockAddresses("10.0.0.5/24", []), { v4: ["10.0.0.0/24"], v6: [] });
  assertEquals(ipBlockAddresses("10.0.0.0/24", ["10.0.0.1/32"]).v4, [
    "10.0.0.0/32",
    "10.0.0.2/31",
    "10.0.0.4/30",
    "10.0.0.8/29",
    "10.0.0.16/28",
    "10.0.0.32/27",
    "10.0.0.64/26",
    "10.0.0.128/25",
  ]);
  assertEquals(ipBlockAddresses("fd00::/64", ["fd00::/65"]), { v4: [], v6: ["fd00::8000:0:0:0/65"] });
  assertEquals(ipBlockAddresses("bogus", []), { v4: [], v6: [] });
  assertEquals(ipBlockAddresses("10.0.0.0/24", ["bogus"]), { v4: [], v6: [] }, "a bad except is the safe side");
  assertEquals(unionBlocks([{ v4: ["10.0.0.0/25"], v6: [] }, { v4: ["10.0.0.128/25"], v6: [] }]).v4, ["10.0.0.0/24"]);
  const p = policy("ns1", "p", {
    podSelector: srvOnly,
    ingress: [{ from: [{ ipBlock: { cidr: "192.168.0.0/16", except: ["192.168.1.0/24"] } }] }, {}],
    egress: [{ to: [], ports: [{ protocol: "UDP", port: 53 }, { protocol: "SCTP" }] }],
  });
  const r = compilePod(world(pods, [p]), "ns1/srv").interfaces[0];
  assertEquals(r.ingress?.flows, [
    {
      peers: {
        v4: [
          "192.168.0.0/24",
          "192.168.2.0/23",
          "192.168.4.0/22",
          "192.168.8.0/21",
          "192.168.16.0/20",
          "192.168.32.0/19",
          "192.168.64.0/18",
          "192.168.128.0/17",
        ],
        v6: [],
      },
      origin: { policy: "ns1/p", rule: 0 },
    },
    { peers: "any", origin: { policy: "ns1/p", rule: 1 } },
  ]);
  assertEquals(r.egress?.flows, [
    { peers: "any", protocol: "UDP", ports: { from: 53, to: 53 }, origin: { policy: "ns1/p", rule: 0 } },
    { peers: "any", protocol: "SCTP", origin: { policy: "ns1/p", rule: 0 } },
  ]);
});

Deno.test("ports: TCP by default, endPort ranges, invalid ranges allow nothing, named ports per side", () => {
  const p = policy("ns1", "p", {
    podSelector: {},
    ingress: [{
      ports: [{ port: 1000, endPort: 2000 }, { port: 5, endPort: 4 }, { port: "http" }, {
        port: "http",
        protocol: "UDP",
      }, { port: "nope" }],
    }],
    egress: [{ to: [{ podSelector: {} }], ports: [{ port: "http" }] }],
  });
  const w = world(pods, [p]);
  const srv = compilePod(w, "ns1/srv").interfaces[0];
  assertEquals(srv.ingress?.flows.map((f) => [f.protocol, f.ports]), [["TCP", { from: 1000, to: 2000 }], ["TCP", {
    from: 8080,
    to: 8080,
  }]]);
  // cli's egress to "http": only srv has that port; srv's address with srv's number.
  assertEquals(compilePod(w, "ns1/cli").interfaces[0].egress?.flows, [
    {
      peers: { v4: ["10.0.0.1/32"], v6: ["fd00::1/128"] },
      protocol: "TCP",
      ports: { from: 8080, to: 8080 },
      origin: { policy: "ns1/p", rule: 0 },
    },
  ]);
  // cli has no "http" port itself: its ingress on it allows nothing but the range.
  assertEquals(compilePod(w, "ns1/cli").interfaces[0].ingress?.flows.length, 1);
});

Deno.test("several policies: their rules add up; one for another network or namespace does not apply", () => {
  const a = policy("ns1", "a", { podSelector: srvOnly, ingress: [{ ports: [{ port: 1 }] }] });
  const b = policy("ns1", "b", { podSelector: {}, ingress: [{ ports: [{ port: 2 }] }], egress: [{}] });
  const c = policy("ns1", "c", { podSelector: {}, ingress: [{ ports: [{ port: 3 }] }] }, "ClusterNetwork/cnet");
  const d = policy("ns2", "d", { podSelector: {}, ingress: [{ ports: [{ port: 4 }] }] });
  const r = compilePod(world(pods, [d, c, b, a]), "ns1/srv");
  assertEquals(r.interfaces.map((i) => i.ifName), ["net1", "net2"]);
  assertEquals(r.interfaces[0].ingress?.policies, ["ns1/a", "ns1/b"]);
  assertEquals(r.interfaces[0].ingress?.flows.map((f) => f.ports?.from), [1, 2]);
  assertEquals(r.interfaces[0].egress, {
    policies: ["ns1/b"],
    flows: [{ peers: "any", origin: { policy: "ns1/b", rule: 0 } }],
  });
  assertEquals(r.interfaces[1].ingress?.flows.map((f) => f.ports?.from), [3]);
  assertEquals(r.interfaces[1].egress, undefined);
});

Deno.test("the primary interface (eth0) is never policed, even on a network a policy names; its addresses are peers", () => {
  const onNet = [
    { name: "srv", labels: { app: "srv" }, ifs: [iface("eth0", NET, ["10.0.0.1"]), iface("net1", NET, ["10.0.0.11"])] },
    { name: "cli", labels: { app: "cli" }, ifs: [iface("eth0", NET, ["10.0.0.2"])] },
  ];
  const w = world(onNet, [
    policy("ns1", "in", {
      podSelector: {},
      ingress: [{ from: [{ podSelector: { matchLabels: { app: "cli" } } }] }],
    }),
  ]);
  // srv: only net1 is policed; cli's eth0 address is the allowed peer. cli: nothing (its only interface is eth0).
  assertEquals(compilePod(w, "ns1/srv").interfaces, [{
    ifName: "net1",
    network: NET,
    ingress: {
      policies: ["ns1/in"],
      flows: [{ peers: { v4: ["10.0.0.2/32"], v6: [] }, origin: { policy: "ns1/in", rule: 0 } }],
    },
  }]);
  assertEquals(compilePod(w, "ns1/cli").interfaces, []);
  assertEquals(selectingPolicies(w, "ns1/cli").map((a) => [a.attachment.ifName, a.primary]), [["eth0", true]]);
  assertEquals(applyingPolicies(w, "ns1/cli"), []);
  assertEquals(mayReach(w, { from: "ns1/srv", to: "ns1/cli", network: NET, port: 80, protocol: "TCP" }).allowed, true);
});
