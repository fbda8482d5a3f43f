// Which policies apply to which pod interface: the label selector, policy-for resolution, policyTypes defaulting,
// and the world builders (DanmEps and network-status to attachments).
import type { DanmEp } from "../../../core/api/danm.ts";
import type { Pod } from "../../../core/api/k8s.ts";
import { namespaceLabels, podAttachments, worldPod } from "../../../core/netpol/model.ts";
import {
  applyingPolicies,
  invalidPolicies,
  policyNetworks,
  policyTypes,
  selectorMatches,
} from "../../../core/netpol/select.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { iface, NET, NET2, policy, world } from "./fixtures.ts";

Deno.test("selectorMatches: matchLabels AND every expression; In, NotIn, Exists, DoesNotExist; empty matches all", () => {
  const l = { app: "a", tier: "web" };
  assert(selectorMatches({}, l));
  assert(selectorMatches({}, {}));
  assert(selectorMatches({ matchLabels: { app: "a" } }, l));
  assert(!selectorMatches({ matchLabels: { app: "a", x: "y" } }, l));
  assert(selectorMatches({ matchExpressions: [{ key: "tier", operator: "In", values: ["web", "db"] }] }, l));
  assert(!selectorMatches({ matchExpressions: [{ key: "tier", operator: "In", values: ["db"] }] }, l));
  assert(!selectorMatches({ matchExpressions: [{ key: "nope", operator: "In", values: ["db"] }] }, l));
  assert(selectorMatches({ matchExpressions: [{ key: "nope", operator: "NotIn", values: ["db"] }] }, l));
  assert(!selectorMatches({ matchExpressions: [{ key: "tier", operator: "NotIn", values: ["web"] }] }, l));
  assert(selectorMatches({ matchExpressions: [{ key: "app", operator: "Exists" }] }, l));
  assert(!selectorMatches({ matchExpressions: [{ key: "x", operator: "Exists" }] }, l));
  assert(selectorMatches({ matchExpressions: [{ key: "x", operator: "DoesNotExist" }] }, l));
  assert(!selectorMatches({ matchExpressions: [{ key: "app", operator: "DoesNotExist" }] }, l));
  assert(!selectorMatches({ matchExpressions: [{ key: "app", operator: "Bogus" }] }, l), "unknown operator");
  assert(
    !selectorMatches({ matchLabels: { app: "a" }, matchExpressions: [{ key: "tier", operator: "DoesNotExist" }] }, l),
  );
  assert(selectorMatches({ matchLabels: null, matchExpressions: null }, l), "null lists count as absent");
});

Deno.test("policyNetworks resolves policy-for: plain names are a NAD or DanmNet; kinds; other namespaces", () => {
  const p = policy("ns1", "p", { podSelector: {} }, "net1, other/nad2,TenantNetwork/t,ClusterNetwork/c,DanmNet/d");
  const n = policyNetworks(p);
  assertEquals(n._tag, "Networks");
  if (n._tag !== "Networks") return;
  assertEquals([...n.networks].sort(), [
    "ClusterNetwork:c",
    "DanmNet:ns1/d",
    "DanmNet:ns1/net1",
    "DanmNet:other/nad2",
    "NetworkAttachmentDefinition:ns1/net1",
    "NetworkAttachmentDefinition:other/nad2",
    "TenantNetwork:ns1/t",
  ]);
  assertEquals(policyNetworks(policy("ns1", "p", { podSelector: {} }, null))._tag, "NoNetworks");
  assertEquals(policyNetworks(policy("ns1", "p", { podSelector: {} }, "  "))._tag, "NoNetworks");
  assertEquals(policyNetworks(policy("ns1", "p", { podSelector: {} }, "a/b/c"))._tag, "Invalid");
});

Deno.test("policyTypes: Ingress always, Egress when egress rules exist, unless policyTypes says", () => {
  assertEquals(policyTypes(policy("n", "p", { podSelector: {} })), { ingress: true, egress: false });
  assertEquals(policyTypes(policy("n", "p", { podSelector: {}, egress: [{}] })), { ingress: true, egress: true });
  assertEquals(policyTypes(policy("n", "p", { podSelector: {}, egress: [] })), { ingress: true, egress: false });
  assertEquals(policyTypes(policy("n", "p", { podSelector: {}, policyTypes: ["Egress"] })), {
    ingress: false,
    egress: true,
  });
});

Deno.test("applyingPolicies: own namespace, podSelector, and only the interfaces on the named networks", () => {
  const w = world([
    { name: "a", labels: { app: "a" }, ifs: [iface("net1", NET, ["10.0.0.1"]), iface("net2", NET2, ["10.1.0.1"])] },
    { name: "b", labels: { app: "b" }, ifs: [iface("net1", NET, ["10.0.0.2"])] },
    { ns: "ns2", name: "a", labels: { app: "a" }, ifs: [iface("net1", "DanmNet:ns2/net1", ["10.0.0.3"])] },
  ], [
    policy("ns1", "pa", { podSelector: { matchLabels: { app: "a" } } }),
    policy("ns1", "pall", { podSelector: {} }, "ClusterNetwork/cnet"),
    policy("ns1", "none", { podSelector: {} }, null),
    policy("ns1", "bad", { podSelector: {} }, "x/y/z"),
  ]);
  const a = applyingPolicies(w, "ns1/a");
  assertEquals(a.map((i) => [i.attachment.ifName, i.policies.map(([k]) => k)]), [
    ["net1", ["ns1/pa"]],
    ["net2", ["ns1/pall"]],
  ]);
  assertEquals(applyingPolicies(w, "ns1/b"), [], "b is on net1 only, which pa does not select it on");
  assertEquals(applyingPolicies(w, "ns2/a"), [], "a policy applies in its own namespace only");
  assertEquals(applyingPolicies(w, "ns1/missing"), []);
  assertEquals(invalidPolicies(w).map((i) => i.policy), ["ns1/bad"]);
});

Deno.test("world builders: named ports, namespace name label, DanmEps and NAD network-status entries", () => {
  const pod: Pod = {
    metadata: { namespace: "ns1", name: "p", labels: { a: "b" } },
    spec: {
      containers: [
        { name: "c", ports: [{ name: "http", containerPort: 8080 }, { containerPort: 9 }] },
        { name: "d", ports: [{ name: "dns", containerPort: 53, protocol: "UDP" }] },
      ],
    },
  } as Pod;
  assertEquals(worldPod(pod), {
    namespace: "ns1",
    name: "p",
    labels: { a: "b" },
    ports: [{ name: "http", port: 8080, protocol: "TCP" }, { name: "dns", port: 53, protocol: "UDP" }],
  });
  assertEquals(namespaceLabels(world([], [], { ns1: { team: "x" } }), "ns1"), {
    team: "x",
    "kubernetes.io/metadata.name": "ns1",
  });
  const ep = (name: string, ifName: string, apiType: string, v4: string, v6: string) =>
    ({
      metadata: { namespace: "ns1", name },
      spec: {
        NetworkName: name,
        EndpointID: name,
        Pod: "p",
        Interface: { Name: ifName, Address: v4, AddressIPv6: v6 },
        ...(apiType ? { apiType } : {}),
      },
    }) as DanmEp;
  const got = podAttachments("ns1", [
    ep("dn", "net2", "", "10.0.0.5/24", "none"),
    ep("cn", "net1", "ClusterNetwork", "", "FD00::0005/64"),
  ], [
    { name: "kube-system/cluster", interface: "eth0", ips: ["10.244.0.5"], default: true },
    { name: "ns1/dn", interface: "net2", ips: ["10.0.0.5"] },
    { name: "other/nad", interface: "net3", ips: ["192.168.1.5", "fd01::5"] },
    { name: "nad2", interface: "net4", ips: ["not-an-ip"] },
  ]);
  const stale = {
    ...ep("dn", "net2", "", "10.0.0.5/24", "none"),
    spec: { ...ep("dn", "net2", "", "10.0.0.5/24", "none").spec, PodUID: "old" },
  };
  assertEquals(podAttachments("ns1", [stale], [], "new"), [], "a DanmEp of an earlier pod with the same name");
  assertEquals(podAttachments("ns1", [stale], []).length, 1, "no UID given: not filtered");
  assertEquals(got, [
    { network: "ClusterNetwork:cn", ifName: "net1", v4: [], v6: ["fd00::5"] },
    { network: "DanmNet:ns1/dn", ifName: "net2", v4: ["10.0.0.5"], v6: [] },
    { network: "NetworkAttachmentDefinition:other/nad", ifName: "net3", v4: ["192.168.1.5"], v6: ["fd01::5"] },
    { network: "NetworkAttachmentDefinition:ns1/nad2", ifName: "net4", v4: [], v6: [] },
  ]);
});
