// The IPAM's batch planning (core/ipam/batch.ts) on its own: no store, no queue — what one batch decides.
import type { IPBlock } from "../../../core/api/ipam.ts";
import { type AddressRequest, BatchPlan, cacheBlock, emptyCache, type Owner } from "../../../core/ipam/batch.ts";
import { type FamilyPlan, planFamily, type PoolOptions } from "../../../core/ipam/plan.ts";
import { formatIp, parseIp } from "../../../core/net/ip.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const planOf = (options: PoolOptions): FamilyPlan => planFamily(options, 4).plan!;
const owner = (pod: string, node = "n1", extra: Partial<Owner> = {}): Owner => ({
  namespace: "default",
  pod,
  podUid: `uid-${pod}`,
  sandbox: `sb-${pod}`,
  iface: "eth1",
  node,
  ...extra,
});
const dynamic: AddressRequest = { kind: "dynamic" };
const fixed = (ip: string): AddressRequest => ({ kind: "static", ip: parseIp(ip)! });
const text = (value: bigint) => formatIp({ family: 4, value });
const since = () => "2026-12-07T00:00:00Z";

/** The stored blocks `plan` would leave behind, as if every write succeeded. */
function commit(cache: ReturnType<typeof emptyCache>, plan: BatchPlan<string>) {
  for (const [index, w] of plan.work) {
    const block = {
      metadata: { name: `b-${index}` },
      spec: { node: w.node ?? w.base?.spec.node, reservations: w.reservations },
    };
    cacheBlock(cache, index, Object.keys(w.reservations).length ? block as unknown as IPBlock : undefined);
  }
}

Deno.test("batch plan: lowest free first, one working copy per block, each request attached to the block it writes", () => {
  const pool = planOf({ cidr: "10.1.0.0/24", allocation_pool: { start: "10.1.0.10", end: "10.1.0.200" } });
  const cache = emptyCache(4, "TenantNetwork default/t");
  const batch = new BatchPlan<string>(cache, since);
  const got = ["a", "b", "c"].map((p) => batch.reserve(p, owner(p), dynamic, pool));
  assertEquals(got.map((s) => s._tag === "Assigned" ? text(s.value) : s._tag), ["10.1.0.10", "10.1.0.11", "10.1.0.12"]);
  assertEquals([...batch.work.keys()], [0n]);
  const w = batch.work.get(0n)!;
  assertEquals([w.ops, w.node, Object.keys(w.reservations).length], [["a", "b", "c"], "n1", 3]);
  assertEquals(w.reservations[10], {
    pod: "default/a",
    podUid: "uid-a",
    sandbox: "sb-a",
    iface: "eth1",
    node: "n1",
    since: since(),
  });
  // The same pod and interface asking again (a retried ADD) gets the same address, in the batch and after it.
  const again = batch.reserve("a2", owner("a"), dynamic, pool);
  assertEquals(again._tag === "Assigned" && text(again.value), "10.1.0.10");
  commit(cache, batch);
  const next = new BatchPlan<string>(cache, since);
  const retried = next.reserve("a3", owner("a"), dynamic, pool);
  assertEquals(retried._tag === "Assigned" && text(retried.value), "10.1.0.10");
  assertEquals(next.work.size, 0, "an unchanged reservation writes nothing");
});

Deno.test("batch plan: a release frees only its own sandbox's reservation, and the freed address is reused", () => {
  const pool = planOf({ cidr: "10.1.0.0/24" });
  const cache = emptyCache(4, "n");
  const first = new BatchPlan<string>(cache, since);
  first.reserve("a", owner("a"), dynamic, pool);
  first.reserve("b", owner("b"), dynamic, pool);
  commit(cache, first);
  const second = new BatchPlan<string>(cache, since);
  assertEquals(second.release("x", owner("a", "n1", { sandbox: "another" })), 0);
  assertEquals(second.work.size, 0);
  assertEquals(second.release("del-a", owner("a")), 1);
  assertEquals(second.release("del-a-again", owner("a")), 0, "already freed in this batch");
  const c = second.reserve("c", owner("c"), dynamic, pool);
  assertEquals(c._tag === "Assigned" && text(c.value), "10.1.0.1");
  assertEquals(second.work.get(0n)?.ops, ["del-a", "c"]);
});

Deno.test("batch plan: static addresses — refused outside the network, on reserved addresses, and when held", () => {
  const pool = planOf({ cidr: "10.1.0.0/24", routes: { "10.2.0.0/16": "10.1.0.254" } });
  const cache = emptyCache(4, "net");
  const batch = new BatchPlan<string>(cache, since);
  const refusal = (p: string, ip: string, o = owner(p)) => {
    const s = batch.reserve(p, o, fixed(ip), pool);
    return s._tag === "Refused" ? `${s.error._tag}` : s._tag;
  };
  assertEquals(refusal("out", "10.9.0.1"), "AddressNotAllowed");
  assertEquals(refusal("net", "10.1.0.0"), "AddressNotAllowed");
  assertEquals(refusal("gw", "10.1.0.254"), "AddressNotAllowed");
  assertEquals(refusal("s", "10.1.0.50"), "Assigned");
  assertEquals(refusal("t", "10.1.0.50"), "AddressInUse");
  // The same pod under a new UID (a re-created StatefulSet pod): the caller decides whether the old owner is gone.
  const held = batch.reserve("s2", owner("s", "n1", { podUid: "uid-s-new" }), fixed("10.1.0.50"), pool);
  assert(held._tag === "HeldBySamePod", held._tag);
  assertEquals([held.holder.podUid, held.address], ["uid-s", "10.1.0.50"]);
  batch.claim("s2", owner("s", "n1", { podUid: "uid-s-new" }), pool, held.value, true);
  assertEquals(batch.work.get(0n)?.reservations[50]?.podUid, "uid-s-new");
  assertEquals(batch.work.get(0n)?.reservations[50]?.static, true);
  // A block opened by static addresses belongs to no node: a node's first dynamic request opens the next block.
  const d = batch.reserve("d", owner("d"), dynamic, pool);
  assertEquals(d._tag === "Assigned" && text(d.value), "10.1.0.64");
});

Deno.test("batch plan: pool exhausted; a second node takes a block of its own, then another node's free addresses", () => {
  const pool = planOf({ cidr: "10.1.0.0/24", allocation_pool: { start: "10.1.0.1", end: "10.1.0.2" } });
  const cache = emptyCache(4, "tiny");
  const batch = new BatchPlan<string>(cache, since);
  assertEquals(batch.reserve("a", owner("a"), dynamic, pool)._tag, "Assigned");
  assertEquals(batch.reserve("b", owner("b", "n2"), dynamic, pool)._tag, "Assigned", "n2 uses n1's block");
  const c = batch.reserve("c", owner("c"), dynamic, pool);
  assertEquals(c._tag === "Refused" && c.error._tag, "PoolExhausted");

  const wide = planOf({ cidr: "10.1.0.0/16" });
  const spread = emptyCache(4, "wide");
  const one = new BatchPlan<string>(spread, since);
  one.reserve("a", owner("a", "n1"), dynamic, wide);
  commit(spread, one);
  const two = new BatchPlan<string>(spread, since);
  const b = two.reserve("b", owner("b", "n2"), dynamic, wide);
  assert(b._tag === "Assigned");
  assertEquals([...two.work.keys()].length, 1);
  assert(![...spread.blocks.keys()].includes([...two.work.keys()][0]), "n2 opened a block of its own");
  assertEquals(two.work.values().next().value?.node, "n2");
});
