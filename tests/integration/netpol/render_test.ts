// The policy engine on the real kernel: rulesets compiled from policies and rendered by renderNft, applied with
// nft in real network namespaces, enforce exactly what mayReach answers — checked with real TCP and UDP traffic,
// IPv4 and IPv6 (whose neighbour discovery must keep working on a policed link) — and a label change reaches the
// kernel through affectedPods. Random compiled worlds are loaded for real too: nft and the kernel accept every
// ruleset the engine makes (the kernel, not `nft -c`, is what refuses overlapping set elements).
import { Effect } from "effect";
import fc from "fast-check";
import { makeLivePolicyTables } from "../../../adapters/nftables/live.ts";
import { makeLiveProcess } from "../../../adapters/process/live.ts";
import type { MultiNetworkPolicy } from "../../../core/api/netpol.ts";
import { affectedPods } from "../../../core/netpol/affected.ts";
import { compilePod, compilePods } from "../../../core/netpol/compile.ts";
import type { PolicyWorld } from "../../../core/netpol/model.ts";
import { renderNft } from "../../../core/netpol/nft.ts";
import { mayReach } from "../../../core/netpol/reach.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { netnsScope } from "../../harness/netns.ts";
import { netprobeServer, probeFrom } from "../../harness/netprobe.ts";
import { iface, NET, policy, world } from "../../unit/netpol/fixtures.ts";
import { buildWorld, podArb, policyArb } from "../../unit/netpol/gen.ts";

const tables = makeLivePolicyTables(makeLiveProcess());
const render = (w: PolicyWorld, pod: string) => Effect.runSync(renderNft(compilePod(w, pod)));

const addrs = { client: ["10.78.0.1", "fd78::1"], server: ["10.78.0.2", "fd78::2"] };
const ports = [7001, 7002, 7003];
const targets = ["tcp", "udp"].flatMap((proto) => addrs.server.flatMap((a) => ports.map((p) => `${proto}:${a}:${p}`)));

const pods = (clientApp: string) => [
  { name: "client", labels: { app: clientApp }, ifs: [iface("npc1", NET, [addrs.client[0]], [addrs.client[1]])] },
  {
    name: "server",
    labels: { app: "srv" },
    ports: [{ name: "svc", port: 7001, protocol: "TCP" as const }],
    ifs: [iface("nps1", NET, [addrs.server[0]], [addrs.server[1]])],
  },
];

const policies: MultiNetworkPolicy[] = [
  // The server admits the client on its named port "svc" (TCP 7001) and on UDP 7002.
  policy("ns1", "srv-in", {
    podSelector: { matchLabels: { app: "srv" } },
    ingress: [{
      from: [{ podSelector: { matchLabels: { app: "cli" } } }],
      ports: [{ port: "svc" }, { protocol: "UDP", port: 7002 }],
    }],
  }),
  // The client may send TCP 7001-7003 over IPv4 and UDP 7002 over IPv6 only.
  policy("ns1", "cli-out", {
    podSelector: { matchLabels: { app: "cli" } },
    policyTypes: ["Egress"],
    egress: [
      {
        to: [{ ipBlock: { cidr: "10.78.0.0/24", except: ["10.78.0.128/25"] } }],
        ports: [{ port: 7001, endPort: 7003 }],
      },
      { to: [{ ipBlock: { cidr: "fd78::/64" } }], ports: [{ protocol: "UDP", port: 7002 }] },
    ],
  }),
];

/** What mayReach answers for each probe target (its protocol, port and the address family of its address). */
function predicted(w: PolicyWorld): Record<string, boolean> {
  return Object.fromEntries(targets.map((t) => {
    const [proto, ...rest] = t.split(":");
    const port = Number(rest.at(-1));
    const family = rest.length > 2 ? 6 : 4;
    const r = mayReach(w, {
      from: "ns1/client",
      to: "ns1/server",
      network: NET,
      protocol: proto === "tcp" ? "TCP" : "UDP",
      port,
    });
    const path = r.paths.find((p) => p.family === family);
    return [t, path?.allowed ?? false];
  }));
}

Deno.test("engine on the real kernel: compiled + rendered rules enforce exactly what mayReach says, v4 and v6", async () => {
  const scope = netnsScope();
  try {
    const client = await scope.netns("netpol-c"), server = await scope.netns("netpol-s");
    await scope.veth({ name: "npc1", ns: client }, { name: "nps1", ns: server });
    for (const [ns, dev, [v4, v6]] of [[client, "npc1", addrs.client], [server, "nps1", addrs.server]] as const) {
      await scope.ip(ns, "addr", "add", `${v4}/24`, "dev", dev);
      // With DAD on, the address only works once ND ran across the policed link.
      await scope.ip(ns, "addr", "add", `${v6}/64`, "dev", dev);
    }
    await using _srv = await netprobeServer(server, ports);
    const paths = { client: scope.path(client), server: scope.path(server) };
    const apply = async (w: PolicyWorld, keys: Iterable<string>) => {
      for (const [key, rules] of compilePods(w, keys)) {
        const path = key === "ns1/client" ? paths.client : paths.server;
        await Effect.runPromise(tables.apply(path, Effect.runSync(renderNft(rules))));
      }
    };

    const before = world(pods("cli"), policies);
    await apply(before, ["ns1/client", "ns1/server"]);
    // Past DAD (~1-2 s) so IPv6 is really usable; ND had to pass the policed link for that.
    await new Promise((r) => setTimeout(r, 2500));
    const expected = predicted(before);
    assertEquals(expected, {
      "tcp:10.78.0.2:7001": true, // egress 7001-7003 v4, ingress "svc"
      "tcp:10.78.0.2:7002": false, // server's ingress: UDP only
      "tcp:10.78.0.2:7003": false,
      "tcp:fd78::2:7001": false, // the client's v6 egress is UDP 7002 only
      "tcp:fd78::2:7002": false,
      "tcp:fd78::2:7003": false,
      "udp:10.78.0.2:7001": false,
      "udp:10.78.0.2:7002": false, // egress v4 is TCP only (the port range's default protocol)
      "udp:10.78.0.2:7003": false,
      "udp:fd78::2:7001": false,
      "udp:fd78::2:7002": true,
      "udp:fd78::2:7003": false,
    }, "the policies' meaning");
    assertEquals(await probeFrom(client, targets), expected, "the kernel agrees with mayReach");

    // The client loses the label the server admits: only the affected pods are recompiled, and the kernel follows.
    const after = world(pods("other"), policies);
    const affected = affectedPods(before, after, ["ns1/client", "ns1/server"]);
    assertEquals([...affected].sort(), ["ns1/client", "ns1/server"]);
    await apply(after, affected);
    assertEquals(Object.values(predicted(after)).filter(Boolean), [], "nothing is admitted any more");
    assertEquals(await probeFrom(client, targets), predicted(after));

    // No policy left: the script removes danm's table and everything passes again.
    const open = world(pods("other"), []);
    await apply(open, ["ns1/client", "ns1/server"]);
    assertEquals(await Effect.runPromise(tables.read(paths.server)), undefined);
    assertEquals(await probeFrom(client, targets), Object.fromEntries(targets.map((t) => [t, true])));
  } finally {
    await scope.dispose();
  }
});

Deno.test("engine on the real kernel: every ruleset compiled from random worlds loads, and reads back", async () => {
  const scope = netnsScope();
  try {
    const ns = await scope.netns("netpol-r");
    const path = scope.path(ns);
    const samples = fc.sample(
      fc.tuple(fc.array(podArb, { minLength: 2, maxLength: 4 }), fc.array(policyArb, { minLength: 1, maxLength: 3 })),
      { numRuns: 30, seed: 20261207 },
    );
    let loaded = 0;
    for (const [podSpecs, policySpecs] of samples) {
      const w = buildWorld(podSpecs, policySpecs, true);
      for (const key of w.pods.keys()) {
        const script = render(w, key);
        await Effect.runPromise(tables.apply(path, script));
        const listed = await Effect.runPromise(tables.read(path));
        assertEquals(listed !== undefined, compilePod(w, key).interfaces.length > 0, script);
        if (listed !== undefined) loaded++;
      }
    }
    assert(loaded > 20, `only ${loaded} non-empty rulesets were loaded`);
  } finally {
    await scope.dispose();
  }
});
