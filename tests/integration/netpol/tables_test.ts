// The live PolicyTables layer on the real kernel: `nsenter --net=… nft -f -` in real network namespaces, checked
// with real TCP and UDP traffic (IPv4 and IPv6) between two of them, and with `nft` run from outside.
import { Effect } from "effect";
import { makeLivePolicyTables } from "../../../adapters/nftables/live.ts";
import { makeLiveProcess } from "../../../adapters/process/live.ts";
import type { PolicyTablesError } from "../../../core/ports/policy_tables.ts";
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
