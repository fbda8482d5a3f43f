import { assertEquals } from "../../harness/assert.ts";
import { formatIp, parseIp } from "../../../core/net/ip.ts";
import {
  blockCidr,
  blockIndexOf,
  lowestFree,
  planFamily,
  poolBlockRange,
  poolCapacity,
} from "../../../core/ipam/plan.ts";
import { formatCidr } from "../../../core/net/ip.ts";

const ip = (s: string) => parseIp(s)!.value;
const show = (v: bigint | undefined, f: 4 | 6 = 4) => v === undefined ? undefined : formatIp({ family: f, value: v });

Deno.test("IPv4 pool defaults to cidr+1 … broadcast-1 and reserves edges and gateways", () => {
  const { plan } = planFamily({ cidr: "10.2.0.0/24", routes: { "10.9.0.0/16": "10.2.0.1" } }, 4);
  assertEquals(show(plan!.poolStart), "10.2.0.1");
  assertEquals(show(plan!.poolEnd), "10.2.0.254");
  assertEquals([...plan!.reserved].map((v) => show(v)).sort(), ["10.2.0.0", "10.2.0.1", "10.2.0.255"]);
  assertEquals(poolCapacity(plan!), 253n);
  // The gateway is skipped by dynamic allocation.
  assertEquals(show(lowestFree(plan!, 0n, new Set())), "10.2.0.2");
});

Deno.test("explicit pool bounds are honoured, lowest free first, none beyond the end", () => {
  const { plan } = planFamily({ cidr: "10.1.0.0/24", allocation_pool: { start: "10.1.0.10", end: "10.1.0.12" } }, 4);
  assertEquals(show(lowestFree(plan!, 0n, new Set())), "10.1.0.10");
  assertEquals(show(lowestFree(plan!, 0n, new Set([10]))), "10.1.0.11");
  assertEquals(lowestFree(plan!, 0n, new Set([10, 11, 12])), undefined);
  assertEquals(poolCapacity(plan!), 3n);
});

Deno.test("an IPv4 /8 and an IPv6 /64 plan without ceilings", () => {
  const v4 = planFamily({ cidr: "10.0.0.0/8" }, 4).plan!;
  assertEquals(poolBlockRange(v4), { first: 0n, last: (1n << 18n) - 1n });
  assertEquals(formatCidr(blockCidr(v4, 5n)), "10.0.1.64/26");
  const v6 = planFamily({ net6: "2001:db8::/64" }, 6).plan!;
  assertEquals(poolCapacity(v6), (1n << 64n) - 2n);
  assertEquals(show(lowestFree(v6, 0n, new Set()), 6), "2001:db8::1");
  assertEquals(blockIndexOf(v6, ip("2001:db8::ffff:ffff:ffff:fffe")), (1n << 58n) - 1n);
});

Deno.test("IPv6 pool cidr must lie inside net6; pool start/end inside the pool cidr", () => {
  assertEquals(
    planFamily({ net6: "2001:db8::/64", allocation_pool_v6: { cidr: "2001:db9::/80" } }, 6).problem?.field,
    "spec.Options.allocation_pool_v6.cidr",
  );
  const p = planFamily(
    { net6: "2001:db8::/64", allocation_pool_v6: { cidr: "2001:db8::/120", start: "2001:db8::10" } },
    6,
  )
    .plan!;
  assertEquals(show(p.poolStart, 6), "2001:db8::10");
  assertEquals(show(p.poolEnd, 6), "2001:db8::fe");
});

Deno.test("bad pool bounds and families are problems naming the field", () => {
  assertEquals(
    planFamily({ cidr: "10.0.0.0/24", allocation_pool: { start: "10.0.1.1" } }, 4).problem?.field,
    "spec.Options.allocation_pool.start",
  );
  assertEquals(planFamily({ cidr: "2001:db8::/64" }, 4).problem?.field, "spec.Options.cidr");
  assertEquals(
    planFamily({ cidr: "10.0.0.0/24", allocation_pool: { start: "10.0.0.9", end: "10.0.0.3" } }, 4).problem?.message,
    "pool end is before its start",
  );
  assertEquals(planFamily({}, 4), {});
});

Deno.test("/31 and /32 networks have no network or broadcast address to reserve", () => {
  const p = planFamily({ cidr: "192.0.2.0/31" }, 4).plan!;
  assertEquals(poolCapacity(p), 2n);
});
