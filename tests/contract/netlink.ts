// The Netlink contract: one suite, run against the in-memory twin (unit tier), the live layer on the host
// kernel (integration tier: veth, macvlan, vxlan, bridge) and the live layer in the QEMU guest (kernel tier:
// ipvlan, vlan, dummy). Every test works in scratch namespaces it is handed and cleans up in `finally`;
// where the environment offers `ip`, live results are also checked from outside with `ip -json`.
import { Effect, type Layer, Schema, type Scope } from "effect";
import {
  type CreatableKind,
  type Link,
  Netlink,
  type NetlinkError,
  type NetnsHandle,
  NetnsRef,
} from "../../core/ports/netlink.ts";
import { assert, assertEquals, assertMatch, fail } from "../harness/assert.ts";
import { IpAddr } from "../harness/iproute.ts";

/** A scratch namespace with lo up; removed by the fixture's dispose. */
export interface Scratch {
  readonly ref: NetnsRef;
  /** `ip -json <args>` run inside this namespace: an observer independent of the layer under test. */
  readonly ip?: (...args: string[]) => Promise<unknown[]>;
}

export interface Fixture {
  readonly layer: Layer.Layer<Netlink, unknown>;
  scratch(prefix: string): Promise<Scratch>;
  /** Removes what the fixture created and fails if anything else was left behind. */
  dispose(): Promise<void>;
}

export interface ContractEnv {
  /** Shown in test names, e.g. "memory", "live/host". */
  readonly label: string;
  /** Whether to run the kind-independent tests (addresses, routes, rules, sysctls, namespaces, …). */
  readonly core: boolean;
  /** The kinds whose own tests run here. */
  readonly kinds: ReadonlyArray<CreatableKind>;
  /** Kinds that can be created here (helpers such as veth parents), a superset of `kinds`. */
  readonly available: ReadonlyArray<CreatableKind>;
  /** Kinds that must be refused as unsupported here. */
  readonly unsupported?: ReadonlyArray<CreatableKind>;
  setup(): Promise<Fixture>;
}

type Focus = CreatableKind | "core";
type Program = Effect.Effect<void, NetlinkError | Error, Netlink | Scope.Scope>;

interface Case {
  readonly name: string;
  readonly focus: Focus;
  readonly needs: ReadonlyArray<CreatableKind>;
  readonly body: (fx: Fixture) => Promise<void>;
}

const cases: Case[] = [];
const contract = (name: string, focus: Focus, needs: CreatableKind[], body: (fx: Fixture) => Promise<void>) =>
  cases.push({ name, focus, needs, body });

/** Registers the suite for `env` with Deno.test. */
export function registerNetlinkContract(env: ContractEnv): void {
  for (const c of cases) {
    if (c.focus === "core" ? !env.core : !env.kinds.includes(c.focus)) continue;
    const missing = c.needs.filter((k) => !env.available.includes(k));
    if (missing.length > 0) continue; // the kind's own tier runs it
    Deno.test(`netlink contract [${env.label}] ${c.focus}: ${c.name}`, async () => {
      const fx = await env.setup();
      try {
        await c.body(fx);
      } finally {
        await fx.dispose();
      }
    });
  }
  for (const kind of env.unsupported ?? []) {
    Deno.test(`netlink contract [${env.label}] ${kind}: creating one is NetlinkUnsupported`, async () => {
      const fx = await env.setup();
      try {
        const s = await fx.scratch("unsup");
        await run(
          fx,
          Effect.gen(function* () {
            const ns = yield* handle(s);
            yield* ns.createLink({ kind: "veth", name: "p0", peer: { name: "p1" } });
            const spec = kind === "vlan"
              ? { kind, name: "x0", parent: "p0", id: 5 } as const
              : kind === "ipvlan" || kind === "macvlan"
              ? { kind, name: "x0", parent: "p0" } as const
              : kind === "vxlan"
              ? { kind, name: "x0", vni: 5 } as const
              : kind === "veth"
              ? { kind, name: "x0", peer: { name: "x1" } } as const
              : { kind, name: "x0" } as const;
            yield* expectFail(
              ns.createLink(spec),
              "NetlinkUnsupported",
              new RegExp(`^create link x0 \\(${kind}\\): unsupported`),
            );
          }),
        );
      } finally {
        await fx.dispose();
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

/** Runs a test program against the fixture's layer, with a scope for the handles it opens. */
async function run(fx: Fixture, program: Program): Promise<void> {
  await Effect.runPromise(Effect.provide(Effect.scoped(program), fx.layer));
}

const handle = (s: Scratch): Effect.Effect<NetnsHandle, NetlinkError, Netlink | Scope.Scope> =>
  Netlink.use((nl) => nl.netns(s.ref));

const fromPromise = <A>(f: () => Promise<A>): Effect.Effect<A, Error> =>
  Effect.tryPromise({ try: f, catch: (e) => (e instanceof Error ? e : new Error(String(e))) });

/** Expects `eff` to fail with `tag` (and a message matching `message`); returns the error. */
const expectFail = <A, R>(
  eff: Effect.Effect<A, NetlinkError, R>,
  tag: NetlinkError["_tag"],
  message?: RegExp,
): Effect.Effect<NetlinkError, never, R> =>
  Effect.flatMap(Effect.result(eff), (r) =>
    Effect.sync(() => {
      if (r._tag === "Success") fail(`expected ${tag}, but the operation succeeded`);
      const e = r.failure;
      assertEquals(e._tag, tag, `error class (message: ${e.message})`);
      if (message) assertMatch(e.message, message);
      return e;
    }));

/**
 * Polls `eff` until `pick` yields `want` (or 3 s pass) and returns the last value: the kernel applies carrier
 * changes of stacked devices through linkwatch, asynchronously.
 */
const settled = <A, B, R>(eff: Effect.Effect<A, NetlinkError, R>, pick: (a: A) => B, want: B) =>
  Effect.gen(function* () {
    for (let i = 0;; i++) {
      const got = pick(yield* eff);
      if (got === want || i >= 150) return got;
      yield* Effect.sleep("20 millis");
    }
  });

const names = (links: ReadonlyArray<Link>) => links.map((l) => l.name).sort();
const byName = (links: ReadonlyArray<Link>, name: string): Link =>
  links.find((l) => l.name === name) ?? fail(`no link ${name} in ${JSON.stringify(names(links))}`);
const isMac = (s: string | undefined) => s !== undefined && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(s);

// `ip -json` output is external input: decoded with Schema, keeping only what the checks read.
const IpLink = Schema.Struct({
  ifindex: Schema.Number,
  ifname: Schema.String,
  mtu: Schema.Number,
  flags: Schema.Array(Schema.String),
  operstate: Schema.String,
  address: Schema.optionalKey(Schema.String),
  master: Schema.optionalKey(Schema.String),
  ifalias: Schema.optionalKey(Schema.String),
  linkinfo: Schema.optionalKey(Schema.Struct({
    info_kind: Schema.optionalKey(Schema.String),
    info_data: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown)),
  })),
});
const IpRoute = Schema.Struct({
  dst: Schema.String,
  gateway: Schema.optionalKey(Schema.String),
  dev: Schema.optionalKey(Schema.String),
  table: Schema.optionalKey(Schema.String),
  protocol: Schema.optionalKey(Schema.String),
  type: Schema.optionalKey(Schema.String),
});
const IpRule = Schema.Struct({
  priority: Schema.Number,
  src: Schema.optionalKey(Schema.String),
  srclen: Schema.optionalKey(Schema.Number),
  table: Schema.String,
});
const IpNeigh = Schema.Struct({
  dst: Schema.String,
  dev: Schema.optionalKey(Schema.String),
  lladdr: Schema.optionalKey(Schema.String),
  state: Schema.optionalKey(Schema.Array(Schema.String)),
});

const observe = <A, I>(s: Scratch, schema: Schema.Codec<A, I>, ...args: string[]) =>
  fromPromise(async () => Schema.decodeUnknownSync(Schema.Array(schema))(await s.ip!(...args)));

// ---------------------------------------------------------------------------------------------------------
// Links: generic rules (veth serves as the always-available kind)

contract("a scratch namespace holds only lo, which is up", "core", ["veth"], async (fx) => {
  const s = await fx.scratch("fresh");
  await run(
    fx,
    Effect.gen(function* () {
      const ns = yield* handle(s);
      const links = yield* ns.links();
      assertEquals(names(links), ["lo"]);
      const lo = byName(links, "lo");
      assertEquals([lo.kind, lo.index, lo.up, lo.mtu, lo.mac], ["loopback", 1, true, 65536, "00:00:00:00:00:00"]);
      assertEquals((yield* ns.link(1)).name, "lo");
    }),
  );
});

contract("veth pair: created, listed with kind and peer, deleted together", "veth", [], async (fx) => {
  const s = await fx.scratch("veth");
  await run(
    fx,
    Effect.gen(function* () {
      const ns = yield* handle(s);
      yield* ns.createLink({ kind: "veth", name: "va", peer: { name: "vb", mtu: 1400 }, mac: "02:00:00:00:0a:01" });
      const links = yield* ns.links();
      const a = byName(links, "va"), b = byName(links, "vb");
      assertEquals([a.kind, b.kind], ["veth", "veth"]);
      assertEquals([a.parent, b.parent], [b.index, a.index]);
      assertEquals([a.mtu, b.mtu], [1500, 1400]);
      assertEquals(a.mac, "02:00:00:00:0a:01");
      assert(isMac(b.mac) && b.mac !== a.mac, `peer MAC ${b.mac}`);
      assertEquals([a.up, a.operstate], [false, "down"]);
      if (s.ip) {
        const seen = yield* observe(s, IpLink, "-d", "link", "show", "dev", "va");
        assertEquals(
          [seen[0].ifindex, seen[0].mtu, seen[0].address, seen[0].linkinfo?.info_kind],
          [a.index, 1500, "02:00:00:00:0a:01", "veth"],
        );
      }
      yield* ns.setLink("va", { up: true });
      const state = (l: Link) => `${l.up} ${l.lowerUp} ${l.operstate}`;
      assertEquals(yield* settled(ns.link("va"), state, "true false lowerlayerdown"), "true false lowerlayerdown");
      yield* ns.setLink("vb", { up: true });
      assertEquals(yield* settled(ns.link("va"), state, "true true up"), "true true up");
      yield* ns.deleteLink("vb");
      assertEquals(names(yield* ns.links()), ["lo"]);
    }),
  );
});

contract("veth peer created directly in another namespace; link created directly elsewhere", "veth", [], async (fx) => {
  const a = await fx.scratch("pa"), b = await fx.scratch("pb");
  await run(
    fx,
    Effect.gen(function* () {
      const na = yield* handle(a), nb = yield* handle(b);
      // ifindexes are allocated per namespace; a spare pair keeps host0's index clear of eth0's, since the
      // kernel leaves IFLA_LINK out when the two happen to be equal.
      yield* na.createLink({ kind: "veth", name: "spare0", peer: { name: "spare1" } });
      yield* na.createLink({ kind: "veth", name: "host0", peer: { name: "eth0", netns: b.ref } });
      assertEquals(names(yield* na.links()), ["host0", "lo", "spare0", "spare1"]);
      const peer = yield* nb.link("eth0"), host0 = yield* na.link("host0");
      assertEquals([peer.parent, host0.parent], [host0.index, peer.index]);
      yield* na.deleteLink("spare0");
      yield* na.createLink({ kind: "veth", name: "x0", netns: b.ref, peer: { name: "x1" } });
      assertEquals(names(yield* na.links()), ["host0", "lo", "x1"]);
      assertEquals(names(yield* nb.links()), ["eth0", "lo", "x0"]);
      // Deleting one end deletes the peer in the other namespace.
      yield* nb.deleteLink("eth0");
      yield* na.deleteLink("x1");
      assertEquals(names(yield* na.links()), ["lo"]);
      assertEquals(names(yield* nb.links()), ["lo"]);
    }),
  );
});

contract(
  "link names: unique per namespace, at most 15 bytes; errors name the operation",
  "core",
  ["veth"],
  async (fx) => {
    const s = await fx.scratch("names");
    await run(
      fx,
      Effect.gen(function* () {
        const ns = yield* handle(s);
        yield* ns.createLink({ kind: "veth", name: "n15-abcdefghijk", peer: { name: "n0" } });
        yield* expectFail(
          ns.createLink({ kind: "veth", name: "n0", peer: { name: "n1" } }),
          "NetlinkExists",
          /^create link n0 \(veth\): exists/,
        );
        yield* expectFail(
          ns.createLink({ kind: "veth", name: "n16-abcdefghijkl", peer: { name: "n2" } }),
          "NetlinkInvalid",
          /^create link n16-abcdefghijkl \(veth\): invalid argument/,
        );
        yield* expectFail(ns.createLink({ kind: "veth", name: "bad/name", peer: { name: "n3" } }), "NetlinkInvalid");
        yield* expectFail(ns.link("nope0"), "NetlinkNotFound", /^get link nope0: not found/);
        yield* expectFail(ns.link(99999), "NetlinkNotFound", /^get link 99999: not found/);
        yield* expectFail(ns.deleteLink("nope0"), "NetlinkNotFound", /^delete link nope0: not found/);
        yield* expectFail(ns.deleteLink("lo"), "NetlinkUnsupported", /^delete link lo: unsupported/);
        assertEquals(names(yield* ns.links()), ["lo", "n0", "n15-abcdefghijk"]);
        yield* ns.deleteLink("n0");
      }),
    );
  },
);

contract("setLink: mtu, MAC, alias, rename (down), up/down; bad values are invalid", "core", ["veth"], async (fx) => {
  const s = await fx.scratch("set");
  await run(
    fx,
    Effect.gen(function* () {
      const ns = yield* handle(s);
      yield* ns.createLink({ kind: "veth", name: "s0", peer: { name: "s1" } });
      yield* ns.setLink("s0", { mtu: 9000, mac: "02:00:00:00:0b:01", alias: "pod uplink", name: "eth7", up: true });
      const l = yield* ns.link("eth7");
      assertEquals([l.mtu, l.mac, l.alias, l.up], [9000, "02:00:00:00:0b:01", "pod uplink", true]);
      if (s.ip) {
        const seen = yield* observe(s, IpLink, "link", "show", "dev", "eth7");
        assertEquals([seen[0].mtu, seen[0].address, seen[0].ifalias], [9000, "02:00:00:00:0b:01", "pod uplink"]);
        assert(seen[0].flags.includes("UP"), "UP flag");
      }
      yield* ns.setLink(l.index, { alias: null, up: false });
      const cleared = yield* ns.link("eth7");
      assertEquals([cleared.alias, cleared.up], [undefined, false]);
      yield* expectFail(ns.setLink("eth7", { mtu: 60 }), "NetlinkInvalid", /^set link eth7: invalid argument/);
      yield* expectFail(ns.setLink("eth7", { mtu: 70000 }), "NetlinkInvalid");
      yield* expectFail(ns.setLink("eth7", { mac: "01:00:5e:00:00:01" }), "NetlinkInvalid");
      yield* expectFail(ns.setLink("eth7", { mac: "zz" }), "NetlinkInvalid");
      yield* expectFail(ns.setLink("eth7", { name: "s1" }), "NetlinkExists");
      yield* expectFail(ns.setLink("gone0", { up: true }), "NetlinkNotFound", /^set link gone0: not found/);
      assertEquals((yield* ns.link("eth7")).mtu, 9000);
      yield* ns.deleteLink("eth7");
    }),
  );
});

contract("moveLink: by path and by fd; the link arrives down, bare, with its index", "core", ["veth"], async (fx) => {
  const a = await fx.scratch("ma"), b = await fx.scratch("mb");
  await run(
    fx,
    Effect.gen(function* () {
      const nl = yield* Netlink;
      const na = yield* handle(a), nb = yield* handle(b);
      yield* na.createLink({ kind: "veth", name: "m0", peer: { name: "m1" }, up: true });
      yield* na.setLink("m1", { up: true });
      yield* na.addAddress({ link: "m0", cidr: "10.20.0.1/24" });
      const before = yield* na.link("m0");
      yield* na.moveLink("m0", b.ref);
      assertEquals(names(yield* na.links()), ["lo", "m1"]);
      const moved = yield* nb.link("m0");
      assertEquals([moved.index, moved.up, moved.mac], [before.index, false, before.mac]);
      assertEquals(yield* nb.addresses({ link: "m0", family: 4 }), []);
      // Through an fd opened on the namespace file.
      if (a.ref._tag === "Path") {
        const fd = yield* nl.openNetns(a.ref.path);
        yield* nb.moveLink("m0", fd);
        assertEquals(names(yield* na.links()), ["lo", "m0", "m1"]);
      }
      yield* na.createLink({ kind: "veth", name: "c0", peer: { name: "c1" } });
      yield* nb.createLink({ kind: "veth", name: "c0", peer: { name: "c2" } });
      yield* expectFail(na.moveLink("c0", b.ref), "NetlinkExists", /^move link c0 to netns .*: exists/);
      yield* expectFail(na.moveLink("lo", b.ref), "NetlinkInvalid");
      yield* expectFail(na.moveLink("zz0", b.ref), "NetlinkNotFound");
      yield* na.deleteLink("c0");
      yield* nb.deleteLink("c0");
      yield* na.deleteLink("m1");
    }),
  );
});

// ---------------------------------------------------------------------------------------------------------
// The pod-style sequence, checked through the port and from outside

contract("pod sequence: veth, move, rename, v4+v6 addresses, up, routes, rule", "core", ["veth"], async (fx) => {
  const host = await fx.scratch("node"), pod = await fx.scratch("pod");
  await run(
    fx,
    Effect.gen(function* () {
      const nh = yield* handle(host), np = yield* handle(pod);
      yield* nh.createLink({ kind: "veth", name: "vethpod0", peer: { name: "tmp-pod0" } });
      yield* nh.moveLink("tmp-pod0", pod.ref);
      yield* np.setLink("tmp-pod0", { name: "eth0", mtu: 1450 });
      yield* np.addAddress({ link: "eth0", cidr: "10.1.0.5/24" });
      yield* np.addAddress({ link: "eth0", cidr: "2001:db8:1::5/64", nodad: true });
      yield* np.setLink("eth0", { up: true });
      yield* nh.setLink("vethpod0", { up: true });
      yield* np.addRoute({ dst: "default", gateway: "10.1.0.1", link: "eth0" });
      yield* np.addRoute({ dst: "10.9.0.0/16", gateway: "10.1.0.1", table: 100 });
      yield* np.addRoute({ dst: "2001:db8:9::/64", gateway: "2001:db8:1::1", link: "eth0" });
      yield* np.addRule({ src: "10.1.0.5/32", table: 100, priority: 100 });

      assertEquals(yield* settled(np.link("eth0"), (l) => l.operstate, "up"), "up");
      const eth0 = yield* np.link("eth0");
      assertEquals([eth0.kind, eth0.mtu, eth0.up], ["veth", 1450, true]);
      const global = (yield* np.addresses({ link: "eth0" })).filter((a) => a.scope === "universe");
      assertEquals(global.map((a) => a.cidr).sort(), ["10.1.0.5/24", "2001:db8:1::5/64"]);
      assert(global.find((a) => a.family === 6)!.flags.includes("nodad"), "nodad flag");
      const main4 = (yield* np.routes({ family: 4 })).map((r) => `${r.dst} ${r.gateway ?? "-"} ${r.protocol}`).sort();
      assertEquals(main4, ["10.1.0.0/24 - kernel", "default 10.1.0.1 boot"]);
      const t100 = yield* np.routes({ table: 100 });
      assertEquals(t100.map((r) => [r.dst, r.gateway, r.link, r.table]), [[
        "10.9.0.0/16",
        "10.1.0.1",
        eth0.index,
        100,
      ]]);
      const v6 = (yield* np.routes({ family: 6 })).filter((r) => r.dst.startsWith("2001:"));
      assertEquals(v6.map((r) => `${r.dst} ${r.gateway ?? "-"}`).sort(), [
        "2001:db8:1::/64 -",
        "2001:db8:9::/64 2001:db8:1::1",
      ]);
      const rule = (yield* np.rules(4)).find((r) => r.priority === 100);
      assertEquals(rule && [rule.src, rule.table, rule.action], ["10.1.0.5/32", 100, "lookup"]);

      if (pod.ip) {
        // The same state seen by iproute2 from outside.
        const links = yield* observe(pod, IpLink, "-d", "link", "show");
        assertEquals(links.map((l) => l.ifname).sort(), ["eth0", "lo"]);
        const l = links.find((x) => x.ifname === "eth0")!;
        assertEquals([l.ifindex, l.mtu, l.address, l.operstate, l.linkinfo?.info_kind], [
          eth0.index,
          1450,
          eth0.mac,
          "UP",
          "veth",
        ]);
        const addrs = yield* observe(pod, IpAddr, "addr", "show", "dev", "eth0");
        const seen = addrs[0].addr_info.filter((a) => a.scope === "global");
        assertEquals(seen.map((a) => `${a.local}/${a.prefixlen}`).sort(), ["10.1.0.5/24", "2001:db8:1::5/64"]);
        assertEquals(seen.find((a) => a.family === "inet6")!.nodad, true);
        const r4 = yield* observe(pod, IpRoute, "-4", "route", "show", "table", "all");
        const mine = r4.filter((r) => r.type === undefined || r.type === "unicast")
          .map((r) => `${r.dst} ${r.gateway ?? "-"} ${r.dev} ${r.table ?? "main"}`).sort();
        assertEquals(mine, ["10.1.0.0/24 - eth0 main", "10.9.0.0/16 10.1.0.1 eth0 100", "default 10.1.0.1 eth0 main"]);
        const r6 = yield* observe(pod, IpRoute, "-6", "route", "show", "2001:db8:9::/64");
        assertEquals(r6.map((r) => [r.gateway, r.dev]), [["2001:db8:1::1", "eth0"]]);
        const rules = yield* observe(pod, IpRule, "-4", "rule", "show");
        // iproute2 leaves out a full-length prefix.
        assertEquals(rules.map((r) => `${r.priority} ${r.src ?? "all"}${r.srclen ? `/${r.srclen}` : ""} ${r.table}`), [
          "0 all local",
          "100 10.1.0.5 100",
          "32766 all main",
          "32767 all default",
        ]);
      }
      yield* nh.deleteLink("vethpod0");
      assertEquals(names(yield* np.links()), ["lo"]);
      assertEquals(yield* np.routes({ table: 100 }), []);
    }),
  );
});

// ---------------------------------------------------------------------------------------------------------
// Addresses

contract("addresses: add, list, replace, delete; duplicates, secondaries, bad input", "core", ["veth"], async (fx) => {
  const s = await fx.scratch("addr");
  await run(
    fx,
    Effect.gen(function* () {
      const ns = yield* handle(s);
      yield* ns.createLink({ kind: "veth", name: "a0", peer: { name: "a1" } });
      yield* ns.addAddress({ link: "a0", cidr: "192.0.2.10/24" });
      yield* ns.addAddress({ link: "a0", cidr: "192.0.2.11/24" });
      yield* ns.addAddress({ link: "a0", cidr: "2001:db8::10/64", nodad: true });
      const list = yield* ns.addresses({ link: "a0" });
      const flags = Object.fromEntries(list.map((a) => [a.cidr, a.flags.filter((f) => f !== "permanent")]));
      assertEquals(flags, { "192.0.2.10/24": [], "192.0.2.11/24": ["secondary"], "2001:db8::10/64": ["nodad"] });
      assertEquals(list.find((a) => a.cidr === "192.0.2.10/24")!.label, "a0");
      assertEquals((yield* ns.addresses({ link: "a0", family: 6 })).map((a) => a.cidr), ["2001:db8::10/64"]);
      yield* expectFail(
        ns.addAddress({ link: "a0", cidr: "192.0.2.10/24" }),
        "NetlinkExists",
        /^add address 192\.0\.2\.10\/24 on a0: exists/,
      );
      // An IPv6 address is one per device whatever its prefix length.
      yield* expectFail(ns.addAddress({ link: "a0", cidr: "2001:db8::10/80", nodad: true }), "NetlinkExists");
      yield* ns.replaceAddress({ link: "a0", cidr: "2001:db8::10/64" });
      assertEquals((yield* ns.addresses({ link: "a0", family: 6 }))[0].flags.includes("nodad"), false);
      yield* expectFail(ns.addAddress({ link: "a0", cidr: "192.0.2.300/24" }), "NetlinkInvalid");
      yield* expectFail(ns.addAddress({ link: "a0", cidr: "192.0.2.1/33" }), "NetlinkInvalid");
      yield* expectFail(ns.addAddress({ link: "zz0", cidr: "192.0.2.1/24" }), "NetlinkNotFound");
      yield* expectFail(
        ns.deleteAddress("a0", "192.0.2.99/24"),
        "NetlinkNotFound",
        /^delete address 192\.0\.2\.99\/24 on a0: not found/,
      );
      // Without promote_secondaries, the primary takes its secondary along.
      yield* ns.deleteAddress("a0", "192.0.2.10/24");
      assertEquals((yield* ns.addresses({ link: "a0", family: 4 })).map((a) => a.cidr), []);
      yield* ns.addAddress({ link: "a1", cidr: "198.51.100.1/24" });
      yield* ns.deleteLink("a0");
      assertEquals((yield* ns.addresses({ family: 4 })).filter((a) => a.scope === "universe"), []);
    }),
  );
});

contract("link down drops routes and IPv6 addresses; up restores connected routes", "core", ["veth"], async (fx) => {
  const s = await fx.scratch("down");
  await run(
    fx,
    Effect.gen(function* () {
      const ns = yield* handle(s);
      yield* ns.createLink({ kind: "veth", name: "d0", peer: { name: "d1" }, up: true });
      yield* ns.setLink("d1", { up: true });
      yield* ns.addAddress({ link: "d0", cidr: "10.30.0.1/24" });
      yield* ns.addAddress({ link: "d0", cidr: "2001:db8:30::1/64", nodad: true });
      yield* ns.addRoute({ dst: "10.31.0.0/16", gateway: "10.30.0.254" });
      const dsts = function* () {
        return (yield* ns.routes({ link: "d0" })).map((r) => r.dst).filter((d) => !d.startsWith("fe80")).sort();
      };
      assertEquals(yield* dsts(), ["10.30.0.0/24", "10.31.0.0/16", "2001:db8:30::/64"]);
      yield* ns.setLink("d0", { up: false });
      assertEquals(yield* dsts(), []);
      assertEquals((yield* ns.addresses({ link: "d0" })).map((a) => a.cidr), ["10.30.0.1/24"]);
      yield* ns.setLink("d0", { up: true });
      assertEquals(yield* dsts(), ["10.30.0.0/24"]);
      yield* ns.deleteLink("d0");
    }),
  );
});

// ---------------------------------------------------------------------------------------------------------
// Routes

contract(
  "routes: add, replace, delete, tables, reject types; kernel's reachability rules",
  "core",
  ["veth"],
  async (fx) => {
    const s = await fx.scratch("route");
    await run(
      fx,
      Effect.gen(function* () {
        const ns = yield* handle(s);
        yield* ns.createLink({ kind: "veth", name: "r0", peer: { name: "r1" } });
        yield* expectFail(
          ns.addRoute({ dst: "10.40.0.0/24", link: "r0" }),
          "NetlinkFailure",
          /^add route 10\.40\.0\.0\/24 dev r0: ENETDOWN/,
        );
        yield* ns.setLink("r0", { up: true });
        yield* ns.addAddress({ link: "r0", cidr: "10.40.0.1/24" });
        yield* ns.addAddress({ link: "r0", cidr: "2001:db8:40::1/64", nodad: true });
        yield* ns.addRoute({ dst: "10.41.0.0/16", link: "r0" });
        yield* ns.addRoute({ dst: "10.42.0.0/16", gateway: "10.40.0.2", metric: 50 });
        yield* ns.addRoute({ dst: "default", gateway: "10.40.0.1", table: 200 });
        yield* ns.addRoute({ dst: "10.43.0.0/16", type: "blackhole" });
        yield* ns.addRoute({ dst: "2001:db8:41::/48", gateway: "2001:db8:40::2" });
        const r0 = (yield* ns.link("r0")).index;
        const main = (yield* ns.routes({ family: 4 })).filter((r) => r.protocol !== "kernel");
        assertEquals(
          main.map((r) => [r.dst, r.gateway, r.link, r.scope, r.type, r.metric]).sort(),
          [
            ["10.41.0.0/16", undefined, r0, "link", "unicast", undefined],
            ["10.42.0.0/16", "10.40.0.2", r0, "universe", "unicast", 50],
            ["10.43.0.0/16", undefined, undefined, "universe", "blackhole", undefined],
          ],
        );
        const v6 = (yield* ns.routes({ family: 6 })).find((r) => r.dst === "2001:db8:41::/48");
        assertEquals(v6 && [v6.gateway, v6.link, v6.metric], ["2001:db8:40::2", r0, 1024]);
        assertEquals((yield* ns.routes({ table: 200 })).map((r) => [r.dst, r.gateway, r.table]), [[
          "default",
          "10.40.0.1",
          200,
        ]]);
        assert((yield* ns.routes({ table: "all" })).some((r) => r.table === 200), "table all includes 200");
        yield* expectFail(
          ns.addRoute({ dst: "10.41.0.0/16", link: "r0" }),
          "NetlinkExists",
          /^add route 10\.41\.0\.0\/16 dev r0: exists/,
        );
        yield* ns.replaceRoute({ dst: "10.41.0.0/16", gateway: "10.40.0.3" });
        assertEquals((yield* ns.routes({ family: 4 })).find((r) => r.dst === "10.41.0.0/16")?.gateway, "10.40.0.3");
        const unreachable = yield* expectFail(
          ns.addRoute({ dst: "10.44.0.0/16", gateway: "10.99.0.1" }),
          "NetlinkFailure",
        );
        assertEquals(unreachable._tag === "NetlinkFailure" && unreachable.errnoName, "ENETUNREACH");
        const unreachable6 = yield* expectFail(
          ns.addRoute({ dst: "2001:db8:42::/48", gateway: "2001:db8:99::1" }),
          "NetlinkFailure",
        );
        assertEquals(unreachable6._tag === "NetlinkFailure" && unreachable6.errnoName, "EHOSTUNREACH");
        yield* expectFail(ns.addRoute({ dst: "10.45.0.1/16", link: "r0" }), "NetlinkInvalid");
        yield* expectFail(ns.addRoute({ dst: "10.45.0.0/16", link: "zz0" }), "NetlinkNotFound");
        yield* expectFail(ns.addRoute({ dst: "10.45.0.0/16", gateway: "2001:db8::1" }), "NetlinkInvalid");
        yield* ns.deleteRoute({ dst: "10.42.0.0/16" });
        yield* ns.deleteRoute({ dst: "default", table: 200 });
        yield* ns.deleteRoute({ dst: "10.43.0.0/16", type: "blackhole" });
        yield* expectFail(
          ns.deleteRoute({ dst: "10.42.0.0/16" }),
          "NetlinkNotFound",
          /^delete route 10\.42\.0\.0\/16: not found/,
        );
        assertEquals(yield* ns.routes({ table: 200 }), []);
        // Routes leave with their device.
        yield* ns.deleteLink("r0");
        assertEquals(
          yield* ns.routes({ table: "all", family: 4 }).pipe(Effect.map((rs) => rs.filter((r) => r.link === r0))),
          [],
        );
      }),
    );
  },
);

// ---------------------------------------------------------------------------------------------------------
// Policy rules

contract("policy rules: defaults, priorities, duplicates, delete", "core", [], async (fx) => {
  const s = await fx.scratch("rule");
  await run(
    fx,
    Effect.gen(function* () {
      const ns = yield* handle(s);
      const show = function* (family: 4 | 6) {
        return (yield* ns.rules(family)).map((r) => `${r.priority} ${r.src ?? "all"} ${r.table}`);
      };
      assertEquals(yield* show(4), ["0 all 255", "32766 all 254", "32767 all 253"]);
      assertEquals(yield* show(6), ["0 all 255", "32766 all 254"]);
      yield* ns.addRule({ src: "10.50.0.0/24", table: 100 });
      yield* ns.addRule({ src: "10.50.0.0/24", table: 100 });
      yield* ns.addRule({ src: "10.51.0.7/32", table: 101, priority: 200 });
      yield* ns.addRule({ src: "2001:db8:50::/64", table: 102, priority: 300 });
      assertEquals(yield* show(4), [
        "0 all 255",
        "200 10.51.0.7/32 101",
        "32764 10.50.0.0/24 100",
        "32765 10.50.0.0/24 100",
        "32766 all 254",
        "32767 all 253",
      ]);
      assertEquals(yield* show(6), ["0 all 255", "300 2001:db8:50::/64 102", "32766 all 254"]);
      yield* expectFail(
        ns.addRule({ src: "10.51.0.7/32", table: 101, priority: 200 }),
        "NetlinkExists",
        /^add rule priority 200 from 10\.51\.0\.7\/32 lookup 101: exists/,
      );
      yield* ns.deleteRule({ src: "10.51.0.7/32", table: 101, priority: 200 });
      yield* ns.deleteRule({ priority: 32764 });
      yield* ns.deleteRule({ family: 6, priority: 300 });
      yield* expectFail(
        ns.deleteRule({ priority: 999 }),
        "NetlinkNotFound",
        /^delete rule priority 999 from all: not found/,
      );
      assertEquals(yield* show(4), ["0 all 255", "32765 10.50.0.0/24 100", "32766 all 254", "32767 all 253"]);
      yield* expectFail(ns.addRule({ src: "10.50.0.0/99", table: 100 }), "NetlinkInvalid");
    }),
  );
});

// ---------------------------------------------------------------------------------------------------------
// Neighbours

contract("neighbours: permanent ARP/NDP entries add, replace, delete", "core", ["veth"], async (fx) => {
  const s = await fx.scratch("neigh");
  await run(
    fx,
    Effect.gen(function* () {
      const ns = yield* handle(s);
      yield* ns.createLink({ kind: "veth", name: "e0", peer: { name: "e1" }, up: true });
      yield* ns.addNeighbour({ family: "inet", link: "e0", dst: "10.60.0.2", lladdr: "02:00:00:00:60:02" });
      yield* ns.addNeighbour({ family: "inet6", link: "e0", dst: "2001:db8:60::2", lladdr: "02:00:00:00:60:03" });
      const v4 = yield* ns.neighbours({ family: "inet", link: "e0" });
      assertEquals(v4.map((n) => [n.dst, n.lladdr, n.state]), [["10.60.0.2", "02:00:00:00:60:02", ["permanent"]]]);
      assertEquals((yield* ns.neighbours({ family: "inet6", link: "e0" })).map((n) => n.dst), ["2001:db8:60::2"]);
      yield* expectFail(
        ns.addNeighbour({ family: "inet", link: "e0", dst: "10.60.0.2", lladdr: "02:00:00:00:60:09" }),
        "NetlinkExists",
      );
      yield* ns.addNeighbour({ family: "inet", link: "e0", dst: "10.60.0.2", lladdr: "02:00:00:00:60:09" }, "replace");
      assertEquals((yield* ns.neighbours({ family: "inet", link: "e0" }))[0].lladdr, "02:00:00:00:60:09");
      if (s.ip) {
        const seen = yield* observe(s, IpNeigh, "-4", "neigh", "show", "dev", "e0");
        assertEquals(seen.map((n) => [n.dst, n.lladdr, n.state]), [["10.60.0.2", "02:00:00:00:60:09", ["PERMANENT"]]]);
      }
      yield* ns.deleteNeighbour({ family: "inet", link: "e0", dst: "10.60.0.2", lladdr: "02:00:00:00:60:09" });
      yield* expectFail(
        ns.deleteNeighbour({ family: "inet", link: "e0", dst: "10.60.0.2", lladdr: "02:00:00:00:60:09" }),
        "NetlinkNotFound",
      );
      yield* expectFail(
        ns.addNeighbour({ family: "inet", link: "e0", dst: "2001:db8::1", lladdr: "02:00:00:00:60:09" }),
        "NetlinkInvalid",
      );
      yield* ns.deleteLink("e0");
    }),
  );
});

// ---------------------------------------------------------------------------------------------------------
// Sysctls

contract("sysctls: per namespace and per link, disable_ipv6 takes effect", "core", ["veth"], async (fx) => {
  const a = await fx.scratch("sa"), b = await fx.scratch("sb");
  await run(
    fx,
    Effect.gen(function* () {
      const na = yield* handle(a), nb = yield* handle(b);
      yield* na.createLink({ kind: "veth", name: "y0", peer: { name: "y1" } });
      assertEquals(yield* na.sysctl("net/ipv6/conf/y0/disable_ipv6"), "0");
      yield* na.setSysctl("net/ipv6/conf/y0/disable_ipv6", "1");
      assertEquals(yield* na.sysctl("net/ipv6/conf/y0/disable_ipv6"), "1");
      assertEquals(yield* na.sysctl("net/ipv6/conf/y1/disable_ipv6"), "0");
      yield* expectFail(
        na.addAddress({ link: "y0", cidr: "2001:db8:70::1/64", nodad: true }),
        "NetlinkPermission",
        /^add address 2001:db8:70::1\/64 on y0: permission denied/,
      );
      // A new namespace starts with the host's IPv4 settings (devconf_inherit_init_net=0 copies init_net's), and a
      // Kubernetes node has ip_forward=1: flip a's value away from b's instead of assuming the kernel default.
      const forwardB = yield* nb.sysctl("net/ipv4/ip_forward");
      const flipped = forwardB === "1" ? "0" : "1";
      yield* na.setSysctl("net/ipv4/ip_forward", flipped);
      assertEquals(yield* na.sysctl("net/ipv4/ip_forward"), flipped);
      assertEquals(yield* nb.sysctl("net/ipv4/ip_forward"), forwardB, "a namespace's ip_forward is its own");
      yield* expectFail(
        nb.sysctl("net/ipv6/conf/y0/disable_ipv6"),
        "NetlinkNotFound",
        /^get sysctl net\/ipv6\/conf\/y0/,
      );
      yield* expectFail(na.setSysctl("net/ipv6/conf/y0/disable_ipv6", "yes"), "NetlinkInvalid");
      yield* expectFail(na.sysctl("net/../kernel/hostname"), "NetlinkInvalid");
      yield* expectFail(na.sysctl("kernel/hostname"), "NetlinkInvalid");
      yield* na.deleteLink("y0");
      yield* expectFail(na.sysctl("net/ipv6/conf/y0/disable_ipv6"), "NetlinkNotFound");
    }),
  );
});

// ---------------------------------------------------------------------------------------------------------
// Gratuitous ARP

contract("gratuitous ARP: announced to the peer, which learns it with arp_accept", "core", ["veth"], async (fx) => {
  const a = await fx.scratch("ga"), b = await fx.scratch("gb");
  await run(
    fx,
    Effect.gen(function* () {
      const na = yield* handle(a), nb = yield* handle(b);
      yield* na.createLink({ kind: "veth", name: "g0", peer: { name: "g1", netns: b.ref } });
      yield* nb.setSysctl("net/ipv4/conf/g1/arp_accept", "1");
      yield* nb.addAddress({ link: "g1", cidr: "10.80.0.2/24" });
      yield* nb.setLink("g1", { up: true });
      yield* na.addAddress({ link: "g0", cidr: "10.80.0.1/24" });
      yield* expectFail(
        na.gratuitousArp("g0", "10.80.0.1"),
        "NetlinkFailure",
        /^send gratuitous arp 10\.80\.0\.1 on g0: ENETDOWN/,
      );
      yield* na.setLink("g0", { up: true });
      yield* na.gratuitousArp("g0", "10.80.0.1");
      const mac = (yield* na.link("g0")).mac;
      // Delivery is immediate on a veth, but give the receiving softirq a moment.
      let learned: string | undefined;
      for (let i = 0; i < 50 && !learned; i++) {
        learned = (yield* nb.neighbours({ family: "inet", link: "g1" })).find((n) => n.dst === "10.80.0.1")?.lladdr;
        if (!learned) yield* Effect.sleep("20 millis");
      }
      assertEquals(learned, mac);
      yield* expectFail(na.gratuitousArp("g0", "2001:db8::1"), "NetlinkInvalid");
      yield* expectFail(na.gratuitousArp("zz0", "10.80.0.1"), "NetlinkNotFound");
      yield* na.deleteLink("g0");
    }),
  );
});

// ---------------------------------------------------------------------------------------------------------
// Named namespaces

contract(
  "namespaces: create, list, open by fd, delete; held namespaces outlive their name",
  "core",
  ["veth"],
  async (fx) => {
    const name = `danm-ct-${crypto.randomUUID().slice(0, 6)}`;
    await run(
      fx,
      Effect.gen(function* () {
        const nl = yield* Netlink;
        const path = yield* nl.createNetns(name);
        let deleted = false;
        try {
          assertMatch(path, new RegExp(`/${name}$`));
          assert((yield* nl.listNetns()).includes(name), "listed");
          yield* expectFail(nl.createNetns(name), "NetlinkExists", new RegExp(`^create netns ${name}: exists`));
          const fd = yield* nl.openNetns(path);
          const viaFd = yield* nl.netns(fd);
          const viaPath = yield* nl.netns(NetnsRef.path(path));
          yield* viaPath.createLink({ kind: "veth", name: "f0", peer: { name: "f1" } });
          assertEquals(names(yield* viaFd.links()), ["f0", "f1", "lo"]);
          assertEquals(names(yield* nl.host.links()).includes("f0"), false);
          yield* nl.deleteNetns(name);
          deleted = true;
          assertEquals((yield* nl.listNetns()).includes(name), false);
          assertEquals(names(yield* viaFd.links()), ["f0", "f1", "lo"]);
          yield* expectFail(nl.deleteNetns(name), "NetlinkNotFound", new RegExp(`^delete netns ${name}: not found`));
          yield* expectFail(nl.netns(NetnsRef.path(path)), "NetlinkNotFound");
          yield* expectFail(nl.createNetns("a/b"), "NetlinkInvalid");
        } finally {
          if (!deleted) yield* nl.deleteNetns(name).pipe(Effect.ignore);
        }
      }),
    );
  },
);

// ---------------------------------------------------------------------------------------------------------
// Kind-specific behaviour

contract("macvlan: modes, parent, MTU bound, created into another namespace, dies with its parent", "macvlan", [
  "veth",
], async (fx) => {
  const a = await fx.scratch("mva"), b = await fx.scratch("mvb");
  await run(
    fx,
    Effect.gen(function* () {
      const na = yield* handle(a), nb = yield* handle(b);
      yield* na.createLink({ kind: "veth", name: "up0", peer: { name: "up1" }, mtu: 1600 });
      const parent = yield* na.link("up0");
      yield* na.createLink({ kind: "macvlan", name: "mv0", parent: "up0" });
      yield* na.createLink({ kind: "macvlan", name: "mv1", parent: parent.index, mode: "private", mtu: 1500 });
      yield* na.createLink({ kind: "macvlan", name: "eth1", parent: "up0", mode: "vepa", netns: b.ref, up: true });
      const mv0 = yield* na.link("mv0"), mv1 = yield* na.link("mv1"), pod = yield* nb.link("eth1");
      assertEquals([mv0.kind, mv0.parent, mv0.macvlan?.mode, mv0.mtu], ["macvlan", parent.index, "bridge", 1600]);
      assertEquals([mv1.macvlan?.mode, mv1.mtu], ["private", 1500]);
      assertEquals([pod.macvlan?.mode, pod.up, pod.parent], ["vepa", true, parent.index]);
      assert(isMac(mv0.mac) && mv0.mac !== parent.mac, "own MAC");
      if (a.ip) {
        const seen = yield* observe(a, IpLink, "-d", "link", "show", "dev", "mv1");
        assertEquals([seen[0].linkinfo?.info_kind, seen[0].linkinfo?.info_data?.mode], ["macvlan", "private"]);
      }
      yield* expectFail(na.createLink({ kind: "macvlan", name: "mv2", parent: "up0", mtu: 1700 }), "NetlinkInvalid");
      yield* expectFail(na.createLink({ kind: "macvlan", name: "mv2", parent: "lo" }), "NetlinkInvalid");
      yield* expectFail(na.createLink({ kind: "macvlan", name: "mv2", parent: "zz0" }), "NetlinkNotFound");
      // The parent carries the children: up only with it.
      yield* na.setLink("mv0", { up: true });
      assertEquals(yield* settled(na.link("mv0"), (l) => l.operstate, "lowerlayerdown"), "lowerlayerdown");
      yield* na.setLink("up0", { up: true });
      yield* na.setLink("up1", { up: true });
      assertEquals(yield* settled(na.link("mv0"), (l) => l.operstate, "up"), "up");
      yield* na.deleteLink("up0");
      assertEquals(names(yield* na.links()), ["lo"]);
      assertEquals(names(yield* nb.links()), ["lo"]);
    }),
  );
});

contract(
  "bridge: ports join and leave, kernel's enslaving rules, stays in its namespace",
  "bridge",
  ["veth"],
  async (fx) => {
    const a = await fx.scratch("bra"), b = await fx.scratch("brb");
    await run(
      fx,
      Effect.gen(function* () {
        const na = yield* handle(a);
        yield* na.createLink({ kind: "bridge", name: "br0", up: true });
        const br = yield* na.link("br0");
        assertEquals([br.kind, br.operstate], ["bridge", "unknown"]);
        yield* na.createLink({ kind: "veth", name: "p0", peer: { name: "p1" } });
        yield* na.setLink("p0", { master: "br0", up: true });
        assertEquals((yield* na.link("p0")).master, br.index);
        assertEquals(yield* settled(na.link("br0"), (l) => l.operstate, "down"), "down");
        yield* na.setLink("p1", { up: true });
        assertEquals(yield* settled(na.link("br0"), (l) => l.operstate, "up"), "up");
        if (a.ip) {
          const seen = yield* observe(a, IpLink, "link", "show", "dev", "p0");
          assertEquals(seen[0].master, "br0");
        }
        yield* na.setLink("p0", { master: null });
        assertEquals((yield* na.link("p0")).master, undefined);
        yield* expectFail(na.setLink("p1", { master: "p0" }), "NetlinkUnsupported", /^set link p1: unsupported/);
        yield* na.createLink({ kind: "bridge", name: "br1" });
        const loop = yield* expectFail(na.setLink("br1", { master: "br0" }), "NetlinkFailure");
        assertEquals(loop._tag === "NetlinkFailure" && loop.errnoName, "ELOOP");
        yield* expectFail(na.setLink("lo", { master: "br0" }), "NetlinkInvalid");
        yield* expectFail(na.moveLink("br0", b.ref), "NetlinkInvalid", /^move link br0 to netns .*: invalid argument/);
        yield* na.setLink("p0", { master: "br0" });
        yield* na.deleteLink("br0");
        assertEquals((yield* na.link("p0")).master, undefined);
        yield* na.deleteLink("br1");
        yield* na.deleteLink("p0");
      }),
    );
  },
);

contract(
  "macvlan and bridge exclude each other on one lower device (EBUSY)",
  "bridge",
  ["veth", "macvlan"],
  async (fx) => {
    const s = await fx.scratch("busy");
    await run(
      fx,
      Effect.gen(function* () {
        const ns = yield* handle(s);
        yield* ns.createLink({ kind: "bridge", name: "br0" });
        yield* ns.createLink({ kind: "veth", name: "l0", peer: { name: "l1" } });
        yield* ns.createLink({ kind: "macvlan", name: "mv0", parent: "l0" });
        yield* expectFail(ns.setLink("l0", { master: "br0" }), "NetlinkBusy", /^set link l0: busy/);
        yield* ns.setLink("l1", { master: "br0" });
        yield* expectFail(ns.createLink({ kind: "macvlan", name: "mv1", parent: "l1" }), "NetlinkBusy");
        yield* ns.deleteLink("l0");
        yield* ns.deleteLink("br0");
      }),
    );
  },
);

contract(
  "vxlan: VNI, port, remote/local, learning, l2miss/l3miss, underlay MTU, VNI rules",
  "vxlan",
  ["veth"],
  async (fx) => {
    const s = await fx.scratch("vx");
    await run(
      fx,
      Effect.gen(function* () {
        const ns = yield* handle(s);
        yield* ns.createLink({ kind: "veth", name: "u0", peer: { name: "u1" }, mtu: 9000 });
        yield* ns.createLink({
          kind: "vxlan",
          name: "vx_a",
          vni: 100,
          local: "10.90.0.1",
          learning: false,
          l2miss: true,
          l3miss: true,
          dev: "u0",
        });
        yield* ns.createLink({ kind: "vxlan", name: "vx_b", vni: 101, port: 8472, remote: "10.90.0.2", ttl: 16 });
        yield* ns.createLink({ kind: "vxlan", name: "vx_c", vni: 102, group: "239.1.1.1", dev: "u0" });
        const u0 = yield* ns.link("u0");
        const va = yield* ns.link("vx_a"), vb = yield* ns.link("vx_b"), vc = yield* ns.link("vx_c");
        assertEquals(va.vxlan, {
          vni: 100,
          port: 4789,
          local: "10.90.0.1",
          learning: false,
          l2miss: true,
          l3miss: true,
          dev: u0.index,
          ttl: 0,
        });
        assertEquals(vb.vxlan, {
          vni: 101,
          port: 8472,
          remote: "10.90.0.2",
          learning: true,
          l2miss: false,
          l3miss: false,
          ttl: 16,
        });
        assertEquals([vc.vxlan?.group, vc.vxlan?.remote], ["239.1.1.1", undefined]);
        assertEquals([va.mtu, vb.mtu], [8950, 1500]);
        if (s.ip) {
          const seen = yield* observe(s, IpLink, "-d", "link", "show", "dev", "vx_a");
          const d = seen[0].linkinfo?.info_data ?? {};
          assertEquals([d.id, d.port, d.local, d.learning, d.l2miss, d.l3miss, d.link], [
            100,
            4789,
            "10.90.0.1",
            false,
            true,
            true,
            "u0",
          ]);
        }
        yield* expectFail(
          ns.createLink({ kind: "vxlan", name: "vx_d", vni: 100, dev: "u0" }),
          "NetlinkExists",
          /^create link vx_d \(vxlan\): exists/,
        );
        yield* expectFail(ns.createLink({ kind: "vxlan", name: "vx_d", vni: 0 }), "NetlinkInvalid");
        yield* expectFail(ns.createLink({ kind: "vxlan", name: "vx_d", vni: 16777216 }), "NetlinkInvalid");
        yield* expectFail(ns.createLink({ kind: "vxlan", name: "vx_d", vni: 5, group: "239.1.1.2" }), "NetlinkInvalid");
        yield* expectFail(ns.createLink({ kind: "vxlan", name: "vx_d", vni: 5, dev: "zz0" }), "NetlinkNotFound");
        yield* ns.createLink({ kind: "vxlan", name: "vx_d", vni: 16777215 });
        // A VXLAN dies with its underlay device.
        yield* ns.deleteLink("u0");
        assertEquals(names(yield* ns.links()), ["lo", "vx_b", "vx_d"]);
        yield* ns.deleteLink("vx_b");
        yield* ns.deleteLink("vx_d");
      }),
    );
  },
);

contract("vxlan FDB: unicast flood list (bridge fdb append 00:00:00:00:00:00 … dst …)", "vxlan", [], async (fx) => {
  const s = await fx.scratch("fdb");
  await run(
    fx,
    Effect.gen(function* () {
      const ns = yield* handle(s);
      yield* ns.createLink({ kind: "vxlan", name: "vx_f", vni: 200, local: "10.91.0.1", learning: false });
      yield* ns.createLink({ kind: "vxlan", name: "vx_r", vni: 201, remote: "10.91.0.9" });
      const zero = "00:00:00:00:00:00";
      const fdb = function* (link: string) {
        return (yield* ns.neighbours({ family: "bridge", link })).map((n) => `${n.lladdr} ${n.dst ?? "-"}`).sort();
      };
      assertEquals(yield* fdb("vx_f"), []);
      assertEquals(yield* fdb("vx_r"), [`${zero} 10.91.0.9`]);
      for (const dst of ["10.91.0.2", "10.91.0.3", "10.91.0.2"]) {
        yield* ns.addNeighbour({ family: "bridge", link: "vx_f", lladdr: zero, dst }, "append");
      }
      yield* ns.addNeighbour({ family: "bridge", link: "vx_f", lladdr: "02:00:00:00:91:05", dst: "10.91.0.5" });
      assertEquals(yield* fdb("vx_f"), [`${zero} 10.91.0.2`, `${zero} 10.91.0.3`, "02:00:00:00:91:05 10.91.0.5"]);
      const entries = yield* ns.neighbours({ family: "bridge", link: "vx_f" });
      assert(entries.every((e) => e.state.includes("permanent") && e.flags.includes("self")), JSON.stringify(entries));
      yield* expectFail(
        ns.addNeighbour({ family: "bridge", link: "vx_f", lladdr: zero, dst: "10.91.0.4" }),
        "NetlinkExists",
        /^add neighbour 00:00:00:00:00:00 dst 10\.91\.0\.4 dev vx_f \(fdb\): exists/,
      );
      yield* ns.deleteNeighbour({ family: "bridge", link: "vx_f", lladdr: zero, dst: "10.91.0.2" });
      assertEquals(yield* fdb("vx_f"), [`${zero} 10.91.0.3`, "02:00:00:00:91:05 10.91.0.5"]);
      // As the kernel: an unknown destination of a known MAC is ignored; an unknown MAC is not found.
      yield* ns.deleteNeighbour({ family: "bridge", link: "vx_f", lladdr: zero, dst: "10.91.0.2" });
      yield* expectFail(
        ns.deleteNeighbour({ family: "bridge", link: "vx_f", lladdr: "02:00:00:00:91:99", dst: "10.91.0.2" }),
        "NetlinkNotFound",
        /^delete neighbour 02:00:00:00:91:99 dst 10\.91\.0\.2 dev vx_f \(fdb\): not found/,
      );
      yield* ns.deleteNeighbour({ family: "bridge", link: "vx_f", lladdr: "02:00:00:00:91:05" });
      assertEquals(yield* fdb("vx_f"), [`${zero} 10.91.0.3`]);
      yield* ns.deleteLink("vx_f");
      yield* ns.deleteLink("vx_r");
    }),
  );
});

contract(
  "vlan: ID range, one per ID and parent, parent's MAC, up needs the parent up, cascade",
  "vlan",
  ["veth"],
  async (fx) => {
    const s = await fx.scratch("vlan");
    await run(
      fx,
      Effect.gen(function* () {
        const ns = yield* handle(s);
        yield* ns.createLink({ kind: "veth", name: "t0", peer: { name: "t1" }, mtu: 9000 });
        const t0 = yield* ns.link("t0");
        yield* ns.createLink({ kind: "vlan", name: "t0.100", parent: "t0", id: 100 });
        yield* ns.createLink({ kind: "vlan", name: "t0.4094", parent: t0.index, id: 4094, mtu: 1500 });
        const v = yield* ns.link("t0.100");
        assertEquals([v.kind, v.vlan?.id, v.parent, v.mac, v.mtu], ["vlan", 100, t0.index, t0.mac, 9000]);
        assertEquals((yield* ns.link("t0.4094")).mtu, 1500);
        if (s.ip) {
          const seen = yield* observe(s, IpLink, "-d", "link", "show", "dev", "t0.100");
          assertEquals([seen[0].linkinfo?.info_kind, seen[0].linkinfo?.info_data?.id], ["vlan", 100]);
        }
        yield* expectFail(ns.createLink({ kind: "vlan", name: "t0.x", parent: "t0", id: 100 }), "NetlinkExists");
        yield* expectFail(ns.createLink({ kind: "vlan", name: "t0.x", parent: "t0", id: 0 }), "NetlinkInvalid");
        yield* expectFail(ns.createLink({ kind: "vlan", name: "t0.x", parent: "t0", id: 4095 }), "NetlinkInvalid");
        yield* expectFail(
          ns.createLink({ kind: "vlan", name: "t0.x", parent: "t0", id: 7, mtu: 9001 }),
          "NetlinkInvalid",
        );
        const down = yield* expectFail(ns.setLink("t0.100", { up: true }), "NetlinkFailure");
        assertEquals(down._tag === "NetlinkFailure" && down.errnoName, "ENETDOWN");
        yield* ns.setLink("t0", { up: true });
        yield* ns.setLink("t0.100", { up: true });
        yield* ns.setLink("t0", { up: false });
        assertEquals((yield* ns.link("t0.100")).up, false);
        yield* ns.deleteLink("t0");
        assertEquals(names(yield* ns.links()), ["lo"]);
      }),
    );
  },
);

contract("ipvlan: l2/l3/l3s modes, parent's MAC, excludes macvlan on the same parent, cascade", "ipvlan", [
  "veth",
], async (fx) => {
  const a = await fx.scratch("ipa"), b = await fx.scratch("ipb");
  await run(
    fx,
    Effect.gen(function* () {
      const na = yield* handle(a), nb = yield* handle(b);
      yield* na.createLink({ kind: "veth", name: "h0", peer: { name: "h1" } });
      const h0 = yield* na.link("h0");
      yield* na.createLink({ kind: "ipvlan", name: "ip0", parent: "h0" });
      const ip0 = yield* na.link("ip0");
      assertEquals([ip0.kind, ip0.parent, ip0.ipvlan, ip0.mac], [
        "ipvlan",
        h0.index,
        { mode: "l2", flag: "bridge" },
        h0.mac,
      ]);
      // Mode and flag belong to the lower device's ipvlan port: the latest creation sets them for all.
      yield* na.createLink({ kind: "ipvlan", name: "ip1", parent: "h0", mode: "l3", flag: "private" });
      assertEquals((yield* na.link("ip0")).ipvlan, { mode: "l3", flag: "private" });
      if (a.ip) {
        const seen = yield* observe(a, IpLink, "-d", "link", "show", "dev", "ip0");
        assertEquals([seen[0].linkinfo?.info_kind, seen[0].linkinfo?.info_data?.mode], ["ipvlan", "l3"]);
      }
      yield* na.createLink({ kind: "ipvlan", name: "eth0", parent: "h0", mode: "l3s", netns: b.ref });
      const pod = yield* nb.link("eth0");
      assertEquals([pod.ipvlan, pod.parent], [{ mode: "l3s", flag: "bridge" }, h0.index]);
      assertEquals((yield* na.link("ip1")).ipvlan, { mode: "l3s", flag: "bridge" });
      yield* expectFail(na.createLink({ kind: "ipvlan", name: "ip9", parent: "lo" }), "NetlinkInvalid");
      yield* na.deleteLink("h0");
      assertEquals(names(yield* na.links()), ["lo"]);
      assertEquals(names(yield* nb.links()), ["lo"]);
    }),
  );
});

contract(
  "ipvlan and macvlan exclude each other on one lower device (EBUSY)",
  "ipvlan",
  ["veth", "macvlan"],
  async (fx) => {
    const s = await fx.scratch("ipbusy");
    await run(
      fx,
      Effect.gen(function* () {
        const ns = yield* handle(s);
        yield* ns.createLink({ kind: "veth", name: "k0", peer: { name: "k1" } });
        yield* ns.createLink({ kind: "ipvlan", name: "ipv0", parent: "k0" });
        yield* expectFail(
          ns.createLink({ kind: "macvlan", name: "mv0", parent: "k0" }),
          "NetlinkBusy",
          /^create link mv0 \(macvlan\): busy/,
        );
        yield* ns.createLink({ kind: "macvlan", name: "mv1", parent: "k1" });
        yield* expectFail(ns.createLink({ kind: "ipvlan", name: "ipv1", parent: "k1" }), "NetlinkBusy");
        yield* ns.deleteLink("k0");
      }),
    );
  },
);

contract(
  "dummy: created, up reports unknown operstate with carrier, no MTU ceiling at 65535",
  "dummy",
  [],
  async (fx) => {
    const s = await fx.scratch("dummy");
    await run(
      fx,
      Effect.gen(function* () {
        const ns = yield* handle(s);
        yield* ns.createLink({ kind: "dummy", name: "dm0", mac: "02:00:00:00:d0:01", up: true });
        const d = yield* ns.link("dm0");
        assertEquals([d.kind, d.mac, d.up, d.lowerUp, d.operstate, d.mtu], [
          "dummy",
          "02:00:00:00:d0:01",
          true,
          true,
          "unknown",
          1500,
        ]);
        yield* ns.setLink("dm0", { mtu: 70000 });
        assertEquals((yield* ns.link("dm0")).mtu, 70000);
        if (s.ip) {
          const seen = yield* observe(s, IpLink, "-d", "link", "show", "dev", "dm0");
          assertEquals([seen[0].linkinfo?.info_kind, seen[0].mtu], ["dummy", 70000]);
        }
        yield* ns.addAddress({ link: "dm0", cidr: "10.95.0.1/24" });
        assertEquals((yield* ns.routes({ link: "dm0", family: 4 })).map((r) => r.dst), ["10.95.0.0/24"]);
        yield* ns.deleteLink("dm0");
        assertEquals(names(yield* ns.links()), ["lo"]);
      }),
    );
  },
);
