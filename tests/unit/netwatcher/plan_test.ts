// The pure part of netwatcher: which host interfaces networks need, reference counting, the conflict rule, and
// DANM's multicast group arithmetic.
import {
  type Demand,
  type DemandInput,
  demandOf,
  type NetworkRef,
  planInterfaces,
} from "../../../core/netwatcher/plan.ts";
import { multicastGroupV4, multicastGroupV6, vxlanOverhead } from "../../../core/netwatcher/vxlan.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";

const ref = (name: string, creationTimestamp = "2025-01-01T00:00:00Z", kind: NetworkRef["kind"] = "DanmNet") => ({
  kind,
  namespace: kind === "ClusterNetwork" ? undefined : "default",
  name,
  creationTimestamp,
});
const demand = (input: Omit<DemandInput, "ref"> & { ref?: NetworkRef }, name = "n"): Demand | undefined =>
  demandOf({ ref: input.ref ?? ref(name), ...input }, "multicast");

Deno.test("DANM's multicast group: 239.0.0.0/8 host #VNI, ff02::/16 host #VNI", () => {
  assertEquals(multicastGroupV4(600), "239.0.2.88");
  assertEquals(multicastGroupV4(1), "239.0.0.1");
  assertEquals(multicastGroupV4(16777215), "239.255.255.255");
  assertEquals(multicastGroupV6(600), "ff02::258");
  assertEquals(multicastGroupV6(0x12345), "ff02::1:2345");
  assertEquals([vxlanOverhead(4), vxlanOverhead(6)], [50, 70]);
});

Deno.test("demand: nothing without host_device or without vlan/vxlan; names as DANM", () => {
  assertEquals(demand({ networkId: "ext", vlan: 500 }), undefined);
  assertEquals(demand({ networkId: "ext", hostDevice: "eth1" }), undefined);
  assertEquals(demand({ networkId: "ext", hostDevice: "eth1", vlan: 500 })?.interfaces, [
    { kind: "vlan", name: "ext.500", id: 500, parent: "eth1" },
  ]);
  assertEquals(demand({ networkId: "internal", hostDevice: "eth1", vxlan: 600, mtu: 1400 })?.interfaces, [
    { kind: "vxlan", name: "vx_internal", vni: 600, mode: "multicast", parent: "eth1", mtu: 1400 },
  ]);
  assertEquals(demand({ networkId: "internal", hostDevice: "eth1", vxlan: 600, mode: "unicast" })?.interfaces[0], {
    kind: "vxlan",
    name: "vx_internal",
    vni: 600,
    mode: "unicast",
    parent: "eth1",
  });
});

Deno.test("demand: refused loudly when it cannot be derived", () => {
  assertMatch(demand({ networkId: "x", hostDevice: "eth1", vlan: 5, vxlan: 6 })!.problem!, /mutually exclusive/);
  assertMatch(demand({ hostDevice: "eth1", vlan: 5 })!.problem!, /NetworkID/);
  assertMatch(demand({ networkId: "abcdefghijklm", hostDevice: "eth1", vxlan: 6 })!.problem!, /vx_abcdefghijklm.*15/);
  assertMatch(demand({ networkId: "n", hostDevice: "eth1", vxlan: 6, mode: "broadcast" })!.problem!, /vxlan-mode/);
  // The mode annotation means nothing for VLANs.
  assertEquals(demand({ networkId: "n", hostDevice: "eth1", vlan: 6, mode: "broadcast" })!.problem, undefined);
});

Deno.test("plan: networks sharing an interface are reference-counted, oldest first", () => {
  const a = demand({ ref: ref("a", "2025-01-02T00:00:00Z"), networkId: "ext", hostDevice: "eth1", vlan: 500 })!;
  const b = demand({ ref: ref("b", "2025-01-01T00:00:00Z"), networkId: "ext", hostDevice: "eth1", vlan: 500 })!;
  const plan = planInterfaces([a, b]);
  assertEquals([...plan.interfaces.keys()], ["ext.500"]);
  assertEquals(plan.interfaces.get("ext.500")!.users.map((u) => u.name), ["b", "a"]);
  assertEquals(plan.refused.size, 0);
});

Deno.test("plan: same name with another VNI → the older network wins, whatever the input order", () => {
  const older = demand({ ref: ref("z-old", "2025-01-01T00:00:00Z"), networkId: "x", hostDevice: "eth1", vxlan: 600 })!;
  const newer = demand({ ref: ref("a-new", "2025-01-01T00:00:01Z"), networkId: "x", hostDevice: "eth1", vxlan: 601 })!;
  for (const order of [[older, newer], [newer, older]]) {
    const plan = planInterfaces(order);
    assertEquals(plan.interfaces.get("vx_x")!.spec, {
      kind: "vxlan",
      name: "vx_x",
      vni: 600,
      mode: "multicast",
      parent: "eth1",
    });
    assertEquals([...plan.refused.keys()], ["DanmNet/default/a-new"]);
    const r = plan.refused.get("DanmNet/default/a-new")!;
    assertEquals(r.reason, "Conflict");
    assertMatch(r.message, /vx_x is already claimed by the older DanmNet default\/z-old \(VNI 600 on eth1/);
  }
});

Deno.test("plan: other conflicts — mode, MTU, parent, and one VLAN ID on one parent under two names", () => {
  const t0 = "2025-01-01T00:00:00Z", t1 = "2025-01-01T00:00:05Z";
  const cases: Array<[Omit<DemandInput, "ref">, Omit<DemandInput, "ref">]> = [
    [{ networkId: "x", hostDevice: "eth1", vxlan: 7 }, {
      networkId: "x",
      hostDevice: "eth1",
      vxlan: 7,
      mode: "unicast",
    }],
    [{ networkId: "x", hostDevice: "eth1", vlan: 7 }, { networkId: "x", hostDevice: "eth1", vlan: 7, mtu: 1400 }],
    [{ networkId: "x", hostDevice: "eth1", vxlan: 7 }, { networkId: "x", hostDevice: "eth2", vxlan: 7 }],
    [{ networkId: "x", hostDevice: "eth1", vlan: 7 }, { networkId: "y", hostDevice: "eth1", vlan: 7 }],
    [{ networkId: "x", hostDevice: "eth1", vxlan: 7 }, { networkId: "y", hostDevice: "eth1", vxlan: 7 }],
  ];
  for (const [first, second] of cases) {
    const plan = planInterfaces([
      demand({ ...second, ref: ref("second", t1) })!,
      demand({ ...first, ref: ref("first", t0) })!,
    ]);
    assertEquals([...plan.refused.keys()], ["DanmNet/default/second"], JSON.stringify(second));
    assertEquals(plan.interfaces.size, 1);
  }
  // The same VLAN ID on two parents, or the same NetworkID on VLAN and VXLAN, are no conflict.
  const ok = planInterfaces([
    demand({ ref: ref("a", t0), networkId: "x", hostDevice: "eth1", vlan: 7 })!,
    demand({ ref: ref("b", t0), networkId: "y", hostDevice: "eth2", vlan: 7 })!,
    demand({ ref: ref("c", t0), networkId: "x", hostDevice: "eth1", vxlan: 7 })!,
  ]);
  assertEquals([...ok.interfaces.keys()].sort(), ["vx_x", "x.7", "y.7"]);
  assertEquals(ok.refused.size, 0);
});

Deno.test("plan: equal timestamps are broken by kind, then namespace/name (every node picks the same winner)", () => {
  const same = "2025-01-01T00:00:00Z";
  const mk = (r: NetworkRef, vni: number) => demand({ ref: r, networkId: "x", hostDevice: "eth1", vxlan: vni })!;
  const plan = planInterfaces([
    mk(ref("b", same, "DanmNet"), 1),
    mk(ref("a", same, "TenantNetwork"), 2),
    mk(ref("c", same, "ClusterNetwork"), 3),
  ]);
  assertEquals(plan.interfaces.get("vx_x")!.users.map((u) => u.kind), ["ClusterNetwork"]);
  assert(plan.refused.has("DanmNet/default/b") && plan.refused.has("TenantNetwork/default/a"));
});

Deno.test("plan: invalid networks are refused without claiming anything", () => {
  const bad = demand({
    ref: ref("bad", "2024-01-01T00:00:00Z"),
    networkId: "x",
    hostDevice: "eth1",
    vlan: 1,
    vxlan: 2,
  })!;
  const good = demand({ ref: ref("good"), networkId: "x", hostDevice: "eth1", vxlan: 2 })!;
  const plan = planInterfaces([bad, good]);
  assertEquals(plan.refused.get("DanmNet/default/bad")?.reason, "InvalidNetwork");
  assertEquals([...plan.interfaces.keys()], ["vx_x"]);
});
