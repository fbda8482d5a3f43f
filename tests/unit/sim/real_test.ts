// The real mode's report from what a real cluster shows (core/sim/real.ts): pods' links labelled by their DanmEps,
// and the pings over each secondary network.
import { assertEquals } from "../../harness/assert.ts";
import type { DanmEp } from "../../../core/api/danm.ts";
import { pingOf, pingProbes, realHostInterfaces, realPod } from "../../../core/sim/real.ts";

const ep = (pod: string, iface: string, network: string, apiType?: string) =>
  ({
    metadata: { namespace: "ns", name: `${pod}-${iface}` },
    spec: { Pod: pod, NetworkName: network, Interface: { Name: iface }, ...(apiType ? { apiType } : {}) },
  }) as unknown as DanmEp;

const eps = [
  ep("a", "bh", "backhaul"),
  ep("b", "bh", "backhaul"),
  ep("a", "fh", "fronthaul", "ClusterNetwork"),
  ep("b", "fh", "fronthaul", "ClusterNetwork"),
];
const link = (name: string, ...addresses: string[]) => ({ name, kind: "macvlan", addresses });
const podA = realPod({ namespace: "ns", name: "a", node: "n1", running: true }, [
  link("fh", "10.2.0.1/24", "fd00::1/64"),
  link("bh", "10.1.0.1/24"),
  link("eth0", "10.0.0.1/24"),
], eps);
const podB = realPod({ namespace: "ns", name: "b", node: "n2", running: true }, [
  link("eth0", "10.0.0.2/24"),
  link("bh", "10.1.0.2/24"),
  link("fh", "10.2.0.2/24"),
  link("extra", "10.9.0.2/24"),
], eps);
const podC = realPod({ namespace: "ns", name: "c", node: "n1", running: false }, [], eps);

Deno.test("sim --real report: links eth0 first, labelled with the DanmEp's network and kind; a pod not up failed", () => {
  assertEquals(podA.interfaces.map((i) => [i.name, i.network, i.kind]), [
    ["eth0", "", ""],
    ["bh", "backhaul", "DanmNet"],
    ["fh", "fronthaul", "ClusterNetwork"],
  ]);
  assertEquals([podC.status, podC.error, podC.interfaces], ["Failed", "not Running/Ready in time", []]);
});

Deno.test("sim --real report: pings between running pods over each secondary network, one family at a time", () => {
  const pings = pingProbes([podA, podB, podC]).map((p) => pingOf(p, true));
  // In the order the networks first appear on the pods (a's links sorted: eth0, bh, fh); fd00::1 has no v6 peer.
  assertEquals(pings.map((p) => `${p.network}: ${p.from} -> ${p.to} ${p.address}`), [
    "DanmNet backhaul: ns/a -> ns/b 10.1.0.2",
    "DanmNet backhaul: ns/b -> ns/a 10.1.0.1",
    "ClusterNetwork fronthaul: ns/a -> ns/b 10.2.0.2",
    "ClusterNetwork fronthaul: ns/b -> ns/a 10.2.0.1",
  ]);
  assertEquals(realHostInterfaces(["lo", "ens3", "ens3.100", "vx_overlay", "br0"]), [
    { name: "ens3.100", kind: "vlan" },
    { name: "vx_overlay", kind: "vxlan" },
  ]);
});
