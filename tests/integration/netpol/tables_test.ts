// The live PolicyTables layer on the real kernel: `nsenter --net=… nft -f -` in real network namespaces, checked
// with real TCP and UDP traffic (IPv4 and IPv6) between two of them, and with `nft` run from outside; set-element
// patches against full renders of the same rules, read back from the kernel.
import { Effect } from "effect";
import { makeLivePolicyTables } from "../../../adapters/nftables/live.ts";
import { makeLiveProcess } from "../../../adapters/process/live.ts";
import type { PolicyTablesError } from "../../../core/ports/policy_tables.ts";
import type { Flow, PodRules } from "../../../core/netpol/model.ts";
import { diffTables, renderTable } from "../../../core/netpol/nft.ts";
import { normalizedTable } from "../../harness/nft_table.ts";
import { run } from "../../harness/proc.ts";
import { makeRng } from "../../chaos/rng.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { netnsScope } from "../../harness/netns.ts";
import { netprobeServer, probeFrom } from "../../harness/netprobe.ts";

const tables = makeLivePolicyTables(makeLiveProcess());
const runOk = <A>(e: Effect.Effect<A, PolicyTablesError>) => Effect.runPromise(e);
/** The typed error the operation fails with (a success fails the test). */
const runErr = (e: Effect.Effect<unknown, PolicyTablesError>) => Effect.runPromise(Effect.flip(e));

// Ingress on the server's veth: TCP 7001 and UDP 7002 from the client's addresses only; everything else dropped.
// Replies to the server's own connections pass (ct state), so egress stays open: this is the port's test, not
// the engine's.
const ruleset = (dev: string, v4: string, v6: string) =>
  `table inet danm_netpol {
  chain ingress {
    type filter hook input priority filter; policy accept;
    iifname != "${dev}" accept
    ct state established,related accept
    ip saddr ${v4} tcp dport 7001 accept
    ip6 saddr ${v6} tcp dport 7001 accept
    ip saddr ${v4} udp dport 7002 accept
    ip6 saddr ${v6} udp dport 7002 accept
    meta l4proto ipv6-icmp accept
    drop
  }
}
`;

async function pair() {
  const scope = netnsScope();
  const client = await scope.netns("netpolnode-c"), server = await scope.netns("netpolnode-s");
  await scope.veth({ name: "np0", ns: client }, { name: "np1", ns: server });
  for (
    const [ns, dev, v4, v6] of [[client, "np0", "10.77.0.1/24", "fd77::1/64"], [
      server,
      "np1",
      "10.77.0.2/24",
      "fd77::2/64",
    ]]
  ) {
    await scope.ip(ns, "addr", "add", v4, "dev", dev);
    await scope.ip(ns, "addr", "add", v6, "dev", dev, "nodad");
  }
  return { scope, client, server, path: scope.path(server) };
}

const targets = ["tcp:10.77.0.2:7001", "tcp:10.77.0.2:7003", "udp:10.77.0.2:7002", "udp:10.77.0.2:7003"];
const targets6 = targets.map((t) => t.replace("10.77.0.2", "fd77::2"));
const all = [...targets, ...targets6];
const allOpen = Object.fromEntries(all.map((t) => [t, true]));
const policed = Object.fromEntries(all.map((t) => [t, /:700[12]$/.test(t)]));

Deno.test("live PolicyTables: apply enforces the table on real TCP/UDP, v4 and v6; read, re-apply, remove", async () => {
  const { scope, client, server, path } = await pair();
  try {
    await using _srv = await netprobeServer(server, [7001, 7002, 7003]);
    assertEquals(await probeFrom(client, all), allOpen, "no table yet: everything passes");
    assertEquals(await runOk(tables.read(path)), undefined);

    await runOk(tables.apply(path, ruleset("np1", "10.77.0.1", "fd77::1")));
    assertEquals(await probeFrom(client, all), policed, "only the allowed ports pass");
    const listed = await runOk(tables.read(path));
    assert(listed?.includes("tcp dport 7001 accept"), `nft's listing: ${listed}`);
    assertEquals(listed, await scope.exec(server, "nft", "list", "table", "inet", "danm_netpol"));

    // Re-applying replaces the table whole (no doubled rules) — and another allowed address takes effect at once.
    await runOk(tables.apply(path, ruleset("np1", "10.77.0.9", "fd77::9")));
    assertEquals(
      await probeFrom(client, all),
      Object.fromEntries(all.map((t) => [t, false])),
      "the client's address is no longer allowed",
    );
    await runOk(tables.apply(path, ruleset("np1", "10.77.0.1", "fd77::1")));
    assertEquals(await runOk(tables.read(path)), listed, "the same table as the first time, nothing left over");

    // Someone else's change is visible in read (what the controller compares with).
    await scope.exec(server, "nft", "insert", "rule", "inet", "danm_netpol", "ingress", "accept");
    assert((await runOk(tables.read(path))) !== listed, "a tampered table reads differently");

    await runOk(tables.remove(path));
    assertEquals(await runOk(tables.read(path)), undefined);
    await runOk(tables.remove(path)); // no table: nothing to do, no error
    assertEquals(await probeFrom(client, all), allOpen, "table removed: everything passes again");
  } finally {
    await scope.dispose();
  }
});

Deno.test("live PolicyTables: a refused ruleset is a typed error with nft's message and leaves the old table", async () => {
  const { scope, path } = await pair();
  try {
    await runOk(tables.apply(path, ruleset("np1", "10.77.0.1", "fd77::1")));
    const before = await runOk(tables.read(path));
    const bad =
      `table inet danm_netpol {\n  chain ingress {\n    type filter hook input priority filter;\n    ip saddr 10.77.0.1 tcp dport 99999 accept\n  }\n}\n`;
    const err = await runErr(tables.apply(path, bad));
    assertEquals(err._tag, "PolicyTableError");
    assert(err._tag === "PolicyTableError" && /99999/.test(err.stderr), `nft's stderr: ${err.message}`);
    assertEquals(await runOk(tables.read(path)), before, "the failed transaction changed nothing");
  } finally {
    await scope.dispose();
  }
});

Deno.test("live PolicyTables: a missing netns, nft or nsenter is a typed error naming it", async () => {
  const gone = await runErr(tables.apply("/run/netns/netpolnode-no-such-netns", "table inet danm_netpol {}\n"));
  assertEquals(gone._tag, "PolicyNetnsGone");

  const empty = await Deno.makeTempDir({ prefix: "netpolnode-path-" });
  const onlyNsenter = await Deno.makeTempDir({ prefix: "netpolnode-path-" });
  try {
    const nsenter = (await new Deno.Command("which", { args: ["nsenter"] }).output()).stdout;
    await Deno.symlink(new TextDecoder().decode(nsenter).trim(), `${onlyNsenter}/nsenter`);
    const noNsenter = await runErr(makeLivePolicyTables(makeLiveProcess(), { path: empty }).read("/proc/self/ns/net"));
    assert(noNsenter._tag === "PolicyToolMissing" && noNsenter.program === "nsenter", noNsenter.message);
    const noNft = await runErr(
      makeLivePolicyTables(makeLiveProcess(), { path: onlyNsenter }).read("/proc/self/ns/net"),
    );
    assert(noNft._tag === "PolicyToolMissing" && noNft.program === "nft", noNft.message);
  } finally {
    await Deno.remove(empty, { recursive: true });
    await Deno.remove(onlyNsenter, { recursive: true });
  }
});

/** Seeded, so a failure repeats. */
const prng = (seed: number) => makeRng(seed).next;

/**
 * Random rules of one pod with the same shape each time (two interfaces; ingress TCP/UDP port ranges and an
 * all-protocol peer set, egress TCP; v4 and v6 peers always present), so successive renders mostly differ in
 * elements only: peers coming and going, host addresses that merge into and split out of wider CIDRs, port ranges.
 */
function randomRules(random: () => number, anyProtocol = true): PodRules {
  const pick = <T>(xs: ReadonlyArray<T>, n: number) => xs.filter(() => random() < n / xs.length);
  const v4 = (n: number) => [`10.50.0.${1 + Math.floor(random() * 8)}/32`, ...pick(v4Pool, n)];
  const v6 = (n: number) => [`fd50::${1 + Math.floor(random() * 8)}/128`, ...pick(v6Pool, n)];
  const port = () => 1000 + Math.floor(random() * 6);
  const origin = { policy: "ns1/p", rule: 0 };
  const flow = (protocol: "TCP" | "UDP"): Flow => {
    const from = port();
    return { peers: { v4: v4(4), v6: v6(3) }, protocol, ports: { from, to: from + Math.floor(random() * 3) }, origin };
  };
  return {
    pod: "ns1/a",
    interfaces: [
      {
        ifName: "net1",
        network: "DanmNet:ns1/net1",
        ingress: {
          policies: ["ns1/p"],
          flows: [
            flow("TCP"),
            flow("UDP"),
            flow("TCP"),
            ...(anyProtocol ? [{ peers: { v4: v4(3), v6: v6(2) }, origin }] : []),
          ],
        },
      },
      { ifName: "net2", network: "DanmNet:ns1/net2", egress: { policies: ["ns1/p"], flows: [flow("TCP")] } },
    ],
  };
}
const v4Pool = Array.from({ length: 12 }, (_, i) => `10.50.${1 + (i % 3)}.${i * 4}/${i % 4 === 0 ? 30 : 32}`);
const v6Pool = Array.from(
  { length: 8 },
  (_, i) => `fd50:${1 + (i % 2)}::${(16 + i * 4).toString(16)}/${i % 3 === 0 ? 126 : 128}`,
);

/** The table as the kernel has it, by content (nft's JSON, set elements sorted). */
const contentOf = async (path: string) =>
  normalizedTable(await run(["nsenter", `--net=${path}`, "--", "nft", "-j", "list", "table", "inet", "danm_netpol"]));

/** The live tables patching with `patchWith`, and how many nft processes its patches ran. */
function patcher(patchWith: "netlink" | "nft") {
  const process = makeLiveProcess();
  const counted = { nftPatches: 0 };
  const exec: typeof process.exec = (o) => {
    if (o.stdin !== undefined && /^(delete|add) element /.test(String(o.stdin))) counted.nftPatches++;
    return process.exec(o);
  };
  return { tables: makeLivePolicyTables({ ...process, exec }, { patchWith }), counted };
}

/** 40 seeded random steps: patched where only elements change, else replaced; each compared with a full render. */
async function patchesMatchFullRenders(patchWith: "netlink" | "nft", anyProtocol: boolean) {
  const scope = netnsScope();
  try {
    const patchedNs = scope.path(await scope.netns("netpolconv-p"));
    const wholeNs = scope.path(await scope.netns("netpolconv-w"));
    const { tables: patching, counted } = patcher(patchWith);
    const random = prng(20261207);
    const render = (r: PodRules) => Effect.runSync(renderTable(r));
    let current = render(randomRules(random, anyProtocol));
    await runOk(patching.apply(patchedNs, current.script));
    let patches = 0, elements = 0;
    for (let step = 0; step < 40; step++) {
      const next = render(randomRules(random, anyProtocol));
      const sets = diffTables(current, next);
      if (sets === undefined) await runOk(patching.apply(patchedNs, next.script));
      else {
        await runOk(patching.patch(patchedNs, { from: current.script, to: next.script, sets }));
        patches++;
        elements += sets.reduce((n, c) => n + c.add.length + c.remove.length, 0);
      }
      await runOk(tables.apply(wholeNs, next.script));
      assertEquals(await contentOf(patchedNs), await contentOf(wholeNs), `step ${step}: patched vs whole`);
      current = next;
    }
    assert(patches >= 30 && elements >= 100, `only ${patches} patches, ${elements} elements: the test tested little`);
    return { patches, nftPatches: counted.nftPatches };
  } finally {
    await scope.dispose();
  }
}

Deno.test("live PolicyTables: nft patches leave exactly the set elements a full render gives (40 random steps, v4+v6)", async () => {
  const r = await patchesMatchFullRenders("nft", true);
  assertEquals(r.nftPatches, r.patches);
});

Deno.test("live PolicyTables: netlink patches of (addr . proto . port) sets leave exactly what a full render gives", async () => {
  // Only concatenated sets: every patch goes as one netlink batch, no nft process.
  assertEquals((await patchesMatchFullRenders("netlink", false)).nftPatches, 0);
  // With all-protocol address sets too (plain interval sets, which the netlink encoder leaves to nft): those
  // patches run nft, and the table still ends as the full render.
  const mixed = await patchesMatchFullRenders("netlink", true);
  assert(mixed.nftPatches > 0, "no patch fell back to nft");
});

for (const patchWith of ["netlink", "nft"] as const) {
  Deno.test(`live PolicyTables: a ${patchWith} patch that cannot apply fails typed and changes nothing (one transaction)`, async () => {
    const { tables: patching } = patcher(patchWith);
    const scope = netnsScope();
    try {
      const path = scope.path(await scope.netns("netpolconv-t"));
      const table = Effect.runSync(renderTable(randomRules(prng(7))));
      await runOk(tables.apply(path, table.script));
      const before = await contentOf(path);
      const set = table.sets[0].name;
      const err = await runErr(patching.patch(path, {
        from: table.script,
        to: table.script,
        // The addition is fine; the removal names an element the set does not hold.
        sets: [{ set, add: ["10.99.0.1/32 . tcp . 1000"], remove: ["10.99.0.2/32 . tcp . 1000"] }],
      }));
      assert(err._tag === "PolicyTableError" && err.op === "patch", err.message);
      assertEquals(await contentOf(path), before, "the refused patch added nothing either");
      const gone = await runErr(
        patching.patch("/run/netns/netpolconv-no-such-netns", {
          from: "",
          to: "",
          sets: [{ set, add: ["10.99.0.1/32 . tcp . 1000"], remove: [] }],
        }),
      );
      assertEquals(gone._tag, "PolicyNetnsGone");
    } finally {
      await scope.dispose();
    }
  });
}
