import { Effect, Layer } from "effect";
import { assert, assertEquals } from "../../harness/assert.ts";
import { Ipam, ipamLayer, type IpamNetwork, makeIpam, type Owner } from "../../../core/ipam/allocator.ts";
import { BlockStore, BlockStoreFailure } from "../../../core/ipam/store.ts";
import { memoryStore } from "./memory_store.ts";

const net = (options: IpamNetwork["options"], name = "n1"): IpamNetwork => ({
  ref: { kind: "DanmNet", namespace: "default", name, uid: `uid-${name}` },
  options,
});
const owner = (i: number, node = "node-a", sandbox = `sb-${i}`): Owner => ({
  namespace: "default",
  pod: `pod-${i}`,
  podUid: `pod-uid-${i}`,
  sandbox,
  iface: "eth1",
  node,
});

function runWith<A, E>(program: Effect.Effect<A, E, Ipam>, store = memoryStore()) {
  return Effect.runPromise(Effect.scoped(Effect.provide(program, ipamLayer().pipe(Layer.provide(store.layer)))));
}

Deno.test("dynamic IPv4 from a 3-address pool: .10 .11 .12, then exhausted, then the freed one", async () => {
  const n = net({ cidr: "10.1.0.0/24", allocation_pool: { start: "10.1.0.10", end: "10.1.0.12" } });
  await runWith(Effect.gen(function* () {
    const ipam = yield* Ipam;
    const got = [];
    for (const i of [1, 2, 3]) got.push((yield* ipam.allocate(n, owner(i), "dynamic", undefined)).v4);
    assertEquals(got, ["10.1.0.10/24", "10.1.0.11/24", "10.1.0.12/24"]);
    const fourth = yield* Effect.flip(ipam.allocate(n, owner(4), "dynamic", undefined));
    assertEquals(fourth._tag, "PoolExhausted");
    assertEquals(yield* ipam.release(n, owner(2)), 1);
    assertEquals((yield* ipam.allocate(n, owner(4), "dynamic", undefined)).v4, "10.1.0.11/24");
  }));
});

Deno.test("ReservedIP addresses: never handed out dynamically, taken when asked for; a new ReservedIP counts at once", async () => {
  const pool = { cidr: "10.1.0.0/24", allocation_pool: { start: "10.1.0.10", end: "10.1.0.13" } };
  const n = net({ ...pool, heldAddresses: ["10.1.0.11", "2001:db8::5", "10.9.9.9"] });
  await runWith(Effect.gen(function* () {
    const ipam = yield* Ipam;
    const got = [];
    for (const i of [1, 2, 3]) got.push((yield* ipam.allocate(n, owner(i), "dynamic", undefined)).v4);
    assertEquals(got, ["10.1.0.10/24", "10.1.0.12/24", "10.1.0.13/24"]);
    assertEquals((yield* Effect.flip(ipam.allocate(n, owner(4), "dynamic", undefined)))._tag, "PoolExhausted");
    // A pod naming it gets it, and only one pod.
    assertEquals((yield* ipam.allocate(n, owner(5), "10.1.0.11", undefined)).v4, "10.1.0.11/24");
    assertEquals((yield* Effect.flip(ipam.allocate(n, owner(6), "10.1.0.11", undefined)))._tag, "AddressInUse");
    // Freed, it is still kept from dynamic allocation.
    yield* ipam.release(n, owner(5));
    yield* ipam.release(n, owner(3));
    assertEquals((yield* ipam.allocate(n, owner(7), "dynamic", undefined)).v4, "10.1.0.13/24");
    assertEquals((yield* Effect.flip(ipam.allocate(n, owner(8), "dynamic", undefined)))._tag, "PoolExhausted");
    // The same network with another ReservedIP added: the new options apply to the next request.
    const more = net({ ...pool, heldAddresses: ["10.1.0.11", "10.1.0.10"] });
    yield* ipam.release(more, owner(1));
    assertEquals((yield* Effect.flip(ipam.allocate(more, owner(9), "dynamic", undefined)))._tag, "PoolExhausted");
    assertEquals((yield* ipam.allocate(net(pool), owner(9), "dynamic", undefined)).v4, "10.1.0.10/24");
  }));
});

Deno.test("a full block is skipped until it has room again: freed addresses in earlier blocks come back first", async () => {
  // 64-address blocks: .1–.63 fill block 0 (.0 is the network address), .64 opens block 1.
  const n = net({ cidr: "10.1.0.0/24" });
  await runWith(Effect.gen(function* () {
    const ipam = yield* Ipam;
    for (let i = 1; i <= 64; i++) yield* ipam.allocate(n, owner(i), "dynamic", undefined);
    assertEquals((yield* ipam.allocate(n, owner(65), "dynamic", undefined)).v4, "10.1.0.65/24");
    assertEquals(yield* ipam.release(n, owner(7)), 1);
    assertEquals((yield* ipam.allocate(n, owner(66), "dynamic", undefined)).v4, "10.1.0.7/24");
    // A release and an allocation in the same batch: the block the release frees is open again at once.
    const [freed, got] = yield* Effect.all([
      ipam.release(n, owner(9)),
      ipam.allocate(n, owner(67), "dynamic", undefined),
    ], { concurrency: 2 });
    assertEquals(freed, 1);
    assertEquals(got.v4, "10.1.0.9/24");
  }));
});

Deno.test("a block full under one pool has room under a wider one (the network's pool was changed)", async () => {
  const narrow = net({ cidr: "10.1.0.0/24", allocation_pool: { start: "10.1.0.10", end: "10.1.0.63" } });
  const wide = net({ cidr: "10.1.0.0/24", allocation_pool: { start: "10.1.0.1", end: "10.1.0.254" } });
  await runWith(Effect.gen(function* () {
    const ipam = yield* Ipam;
    for (let i = 10; i <= 63; i++) yield* ipam.allocate(narrow, owner(i), "dynamic", undefined);
    assertEquals((yield* Effect.flip(ipam.allocate(narrow, owner(64), "dynamic", undefined)))._tag, "PoolExhausted");
    assertEquals((yield* ipam.allocate(wide, owner(64), "dynamic", undefined)).v4, "10.1.0.1/24");
  }));
});

Deno.test("repeated ADD for the same pod UID and interface gets the same addresses", async () => {
  const n = net({ cidr: "10.1.0.0/24", net6: "2001:db8::/64" });
  await runWith(Effect.gen(function* () {
    const ipam = yield* Ipam;
    const a = yield* ipam.allocate(n, owner(1), "dynamic", "dynamic");
    const b = yield* ipam.allocate(n, owner(1, "node-a", "sb-retry"), "dynamic", "dynamic");
    assertEquals(a, { v4: "10.1.0.1/24", v6: "2001:db8::1/64" });
    assertEquals(b, a);
    // The old sandbox's late DEL must not free what the new sandbox now holds.
    assertEquals(yield* ipam.release(n, owner(1, "node-a", "sb-1")), 0);
    assertEquals(yield* ipam.release(n, owner(1, "node-a", "sb-retry")), 2);
  }));
});

Deno.test("static addresses: inside cidr outside pool allowed and never handed out dynamically; duplicates refused", async () => {
  const n = net({ cidr: "10.1.0.0/24", allocation_pool: { start: "10.1.0.100", end: "10.1.0.101" } });
  await runWith(Effect.gen(function* () {
    const ipam = yield* Ipam;
    assertEquals((yield* ipam.allocate(n, owner(1), "10.1.0.50", undefined)).v4, "10.1.0.50/24");
    assertEquals((yield* ipam.allocate(n, owner(2), "10.1.0.51/16", undefined)).v4, "10.1.0.51/24");
    const dup = yield* Effect.flip(ipam.allocate(n, owner(3), "10.1.0.50", undefined));
    assertEquals(dup._tag, "AddressInUse");
    assert(dup.message.includes("default/pod-1"), dup.message);
    const outside = yield* Effect.flip(ipam.allocate(n, owner(3), "10.2.0.1", undefined));
    assertEquals(outside._tag, "AddressNotAllowed");
    const bcast = yield* Effect.flip(ipam.allocate(n, owner(3), "10.1.0.255", undefined));
    assertEquals(bcast._tag, "AddressNotAllowed");
    assertEquals((yield* ipam.allocate(n, owner(4), "dynamic", undefined)).v4, "10.1.0.100/24");
  }));
});

Deno.test("none, omitted, L2 and malformed requests", async () => {
  await runWith(Effect.gen(function* () {
    const ipam = yield* Ipam;
    const l3 = net({ cidr: "10.1.0.0/24" });
    assertEquals(yield* ipam.allocate(l3, owner(1), "none", undefined), { v4: "none" });
    assertEquals(yield* ipam.allocate(l3, owner(1), undefined, ""), {});
    const l2 = net({}, "l2");
    const e = yield* Effect.flip(ipam.allocate(l2, owner(1), "dynamic", undefined));
    assertEquals(e._tag, "InvalidAddressRequest");
    assert(e.message.includes("L2 network"), e.message);
    const bad = yield* Effect.flip(ipam.allocate(l3, owner(1), "10.1.0", undefined));
    assertEquals(bad._tag, "InvalidAddressRequest");
    const fam = yield* Effect.flip(ipam.allocate(l3, owner(1), undefined, "10.1.0.5"));
    assertEquals(fam._tag, "InvalidAddressRequest");
  }));
});

Deno.test("dual stack is all or nothing: a failing IPv6 gives the IPv4 address back", async () => {
  const store = memoryStore();
  const n = net({
    cidr: "10.1.0.0/24",
    net6: "2001:db8::/120",
    allocation_pool_v6: { start: "2001:db8::5", end: "2001:db8::5" },
  });
  await runWith(
    Effect.gen(function* () {
      const ipam = yield* Ipam;
      yield* ipam.allocate(n, owner(1), undefined, "dynamic");
      const e = yield* Effect.flip(ipam.allocate(n, owner(2), "dynamic", "dynamic"));
      assertEquals(e._tag, "PoolExhausted");
      // owner 2's IPv4 went back: the next request gets the same first address.
      assertEquals((yield* ipam.allocate(n, owner(3), "dynamic", undefined)).v4, "10.1.0.1/24");
    }),
    store,
  );
});

Deno.test("concurrent allocators on several nodes never hand out an address twice", async () => {
  const store = memoryStore();
  const n = net({ cidr: "10.8.0.0/22" });
  const nodes = ["a", "b", "c", "d"];
  const all = await Promise.all(nodes.map((node) =>
    runWith(
      Effect.gen(function* () {
        const ipam = yield* Ipam;
        return yield* Effect.forEach(
          Array.from({ length: 60 }, (_, i) => i),
          (i) => ipam.allocate(n, owner(i + 1000 * node.charCodeAt(0), node), "dynamic", undefined),
          { concurrency: 16 },
        );
      }),
      store,
    )
  ));
  const addrs = all.flat().map((r) => r.v4);
  assertEquals(addrs.length, 240);
  assertEquals(new Set(addrs).size, 240);
  // Group commit: far fewer writes than allocations.
  assert(store.writes < 240, `expected batched writes, got ${store.writes}`);
});

Deno.test("a release whose block changed meanwhile and cannot be re-read at once still frees the address", async () => {
  // One /26 = one block, shared by two nodes; node A's copy goes stale when node B writes it.
  const n = net({ cidr: "10.1.0.0/26" });
  const store = memoryStore();
  let failGets = 0;
  const flaky = Layer.effect(
    BlockStore,
    Effect.gen(function* () {
      const s = yield* BlockStore;
      return BlockStore.of({
        ...s,
        get: (name) =>
          failGets-- > 0
            ? Effect.fail(new BlockStoreFailure({ operation: "get", name, cause: "apiserver restarting (injected)" }))
            : s.get(name),
      });
    }),
  ).pipe(Layer.provide(store.layer));
  await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
    const a = yield* makeIpam().pipe(Effect.provide(flaky));
    const b = yield* makeIpam().pipe(Effect.provide(store.layer));
    yield* a.allocate(n, owner(1, "node-a"), "dynamic", undefined);
    yield* b.allocate(n, owner(2, "node-b"), "dynamic", undefined);
    failGets = 1;
    assertEquals(yield* a.release(n, owner(1, "node-a")), 1, "the address was released");
  })));
  const left = store.blocks().flatMap((blk) => Object.values(blk.spec.reservations).map((r) => r.pod));
  assertEquals(left, ["default/pod-2"]);
});
