// DANM's pod and Service annotations and the NPWG ones: parsing, normalization and the error messages.
import {
  AnnotationError,
  encodeInterfaces,
  encodeNetworkStatus,
  type InterfaceRequest,
  type NetworkStatusEntry,
  parseInterfaces,
  parseNetworkSelection,
  parseNetworkStatus,
  podInterfaces,
  serviceSelection,
} from "../../../core/api/annotations.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { err, isObject, type JsonObject, manifestsUnder, ok } from "./compat.ts";

const noRoutes = { proutes: {}, proutes6: {} };

/** Where a workload keeps its pod annotations. */
function podAnnotations(doc: JsonObject): Record<string, string> {
  const meta = doc.kind === "Pod" ? doc.metadata : ((doc.spec as JsonObject).template as JsonObject).metadata;
  const ann = isObject(meta) ? meta.annotations : undefined;
  return isObject(ann) ? ann as Record<string, string> : fail(`${doc.kind} without annotations`);
}

Deno.test("the interfaces annotations of DANM's example workloads parse", () => {
  const got: Record<string, ReadonlyArray<InterfaceRequest>> = {};
  for (const { source, doc } of manifestsUnder("example")) {
    if (doc.kind === "Pod" || doc.kind === "Deployment") got[source] = ok(podInterfaces(podAnnotations(doc)));
  }
  assertEquals(got, {
    "example/4_0_examples/10_good_deployment.yaml": [
      { network: { kind: "TenantNetwork", name: "management" }, ip: "dynamic", ...noRoutes },
      { network: { kind: "ClusterNetwork", name: "external" }, ip: "dynamic", ...noRoutes },
      { network: { kind: "TenantNetwork", name: "internal" }, ip: "dynamic", ...noRoutes },
    ],
    "example/device_plugin_demo/sriov_pod.yaml": [
      { network: { kind: "DanmNet", name: "management" }, ip: "dynamic", ...noRoutes },
      { network: { kind: "DanmNet", name: "sriov-a" }, ip: "none", ...noRoutes },
      { network: { kind: "DanmNet", name: "sriov-b" }, ip: "none", ...noRoutes },
    ],
  });
});

Deno.test("interfaces: every documented and undocumented key, normalized", () => {
  const value = JSON.stringify([
    {
      clusterNetwork: "ext",
      ip: "10.0.0.7/24",
      ip6: "2001:db8::7",
      proutes: { "10.20.0.0/16": "10.0.0.1" },
      proutes6: { "2001:db8:1::/48": "2001:db8::1" },
      Device: "0000:03:00.1",
      DefaultIfaceName: "eth",
      SequenceId: 3,
    },
    { network: "plain", ip: "", ip6: "none" },
  ]);
  assertEquals(ok(parseInterfaces(value)), [
    {
      network: { kind: "ClusterNetwork", name: "ext" },
      ip: "10.0.0.7/24",
      ip6: "2001:db8::7",
      proutes: { "10.20.0.0/16": "10.0.0.1" },
      proutes6: { "2001:db8:1::/48": "2001:db8::1" },
      device: "0000:03:00.1",
    },
    { network: { kind: "DanmNet", name: "plain" }, ip6: "none", ...noRoutes },
  ]);
});

Deno.test("interfaces: keys match case-insensitively like Go's decoder; nulls count as absent", () => {
  assertEquals(
    ok(parseInterfaces('[{"Network":"a","IP":"dynamic","PROUTES":{"1.2.0.0/16":"10.0.0.1"},"device":"d"}]')),
    [
      {
        network: { kind: "DanmNet", name: "a" },
        ip: "dynamic",
        proutes: { "1.2.0.0/16": "10.0.0.1" },
        proutes6: {},
        device: "d",
      },
    ],
  );
  assertEquals(ok(parseInterfaces('[{"tenantnetwork":"t","ip":null,"clusterNetwork":null}]')), [
    { network: { kind: "TenantNetwork", name: "t" }, ...noRoutes },
  ]);
});

function annotationError(value: string): AnnotationError {
  const e = err(parseInterfaces(value));
  assert(e instanceof AnnotationError, "an AnnotationError");
  return e;
}

Deno.test("interfaces: errors name the annotation, the entry and the field", () => {
  const cases: Array<[string, number | undefined, string | undefined, RegExp]> = [
    ['[{"network":"a"},{"network":"b","mac":"x"}]', 1, "mac", /unknown key \(accepted: network, tenantNetwork/],
    ['[{"network":"a","Network":"b"}]', 0, "Network", /the same key as "network"/],
    ['[{"ip":"dynamic"}]', 0, undefined, /exactly one of "network", "tenantNetwork", "clusterNetwork".*found: none/],
    ['[{"network":"a","clusterNetwork":"b"}]', 0, "clusterNetwork", /found: network, clusterNetwork/],
    ['[{"network":"a","ip":"10.0.0.300"}]', 0, "ip", /must be "dynamic", "none" or an IPv4 address, got "10.0.0.300"/],
    ['[{"network":"a","ip":"Dynamic"}]', 0, "ip", /got "Dynamic"/],
    ['[{"network":"a","IP6":"10.0.0.1"}]', 0, "IP6", /an IPv6 address/],
    ['[{"network":"a","proutes":{"10.0.0.0/33":"10.0.0.1"}}]', 0, 'proutes["10.0.0.0/33"]', /not an IPv4 CIDR/],
    ['[{"network":"a","proutes6":{"::/0":"10.0.0.1"}}]', 0, 'proutes6["::/0"]', /gateway "10.0.0.1" is not an IPv6/],
    ['[{"network":"a","Proutes":{"10.0.0.0/8":1}}]', 0, 'Proutes["10.0.0.0/8"]', /Expected string, got 1/],
    ['[{"network":"a","SequenceId":"1"}]', 0, "SequenceId", /Expected number/],
    ['[{"network":7}]', 0, "network", /Expected string/],
    ['[{"network":"a"}, "b"]', 1, undefined, /must be a JSON object/],
    ['{"network":"a"}', undefined, undefined, /must be a JSON array/],
    ["[{network:a}]", undefined, undefined, /not valid JSON/],
  ];
  for (const [value, entry, field, reason] of cases) {
    const e = annotationError(value);
    assertEquals([e.annotation, e.entry, e.field], ["danm.io/interfaces", entry, field], value);
    assertMatch(e.reason, reason, value);
  }
  assertEquals(
    annotationError('[{"network":"a"},{"network":"b","mac":"x"}]').message,
    "annotation danm.io/interfaces, entry 1, field mac: unknown key (accepted: network, tenantNetwork, " +
      "clusterNetwork, ip, ip6, proutes, proutes6, Device, DefaultIfaceName, SequenceId)",
  );
});

Deno.test("interfaces: no annotation, an empty value or an empty list mean the default network", () => {
  assertEquals(ok(podInterfaces(undefined)), []);
  assertEquals(ok(podInterfaces({ other: "x" })), []);
  assertEquals(ok(podInterfaces({ "danm.io/interfaces": "[]" })), []);
  assertEquals(ok(podInterfaces({ "danm.io/interfaces": " " })), []);
});

Deno.test("interfaces: the danm.k8s.io spelling works; both spellings must agree", () => {
  const v = '[{"network":"a"}]';
  const a: InterfaceRequest[] = [{ network: { kind: "DanmNet", name: "a" }, ...noRoutes }];
  assertEquals(ok(podInterfaces({ "danm.k8s.io/interfaces": v })), a);
  assertEquals(ok(podInterfaces({ "danm.k8s.io/interfaces": v, "danm.io/interfaces": v })), a);
  const e = err(podInterfaces({ "danm.k8s.io/interfaces": v, "danm.io/interfaces": '[{"network":"b"}]' }));
  assertEquals(e.annotation, "danm.io/interfaces");
  assertMatch(e.reason, /differs from danm\.k8s\.io\/interfaces/);
  const legacyError = err(podInterfaces({ "danm.k8s.io/interfaces": '[{"net":"a"}]' }));
  assertEquals([legacyError.annotation, legacyError.entry, legacyError.field], ["danm.k8s.io/interfaces", 0, "net"]);
});

Deno.test("interfaces: encodeInterfaces writes what parses back to the same requests", () => {
  const requests: InterfaceRequest[] = [
    {
      network: { kind: "TenantNetwork", name: "t" },
      ip: "dynamic",
      ip6: "dynamic",
      proutes: { "10.1.0.0/16": "10.0.0.1" },
      proutes6: {},
    },
    { network: { kind: "ClusterNetwork", name: "c" }, proutes: {}, proutes6: {}, device: "0000:01:00.2" },
  ];
  const text = encodeInterfaces(requests);
  assertEquals(JSON.parse(text), [
    { tenantNetwork: "t", ip: "dynamic", ip6: "dynamic", proutes: { "10.1.0.0/16": "10.0.0.1" } },
    { clusterNetwork: "c", Device: "0000:01:00.2" },
  ]);
  assertEquals(ok(parseInterfaces(text)), requests);
});

Deno.test("Service annotations: selector, networks of each kind, tolerate-unready", () => {
  assertEquals(
    ok(serviceSelection({
      "danm.io/selector": '{"app":"lb","tier":"front"}',
      "danm.io/network": "dn",
      "danm.io/clusterNetwork": "cn",
      "service.alpha.kubernetes.io/tolerate-unready-endpoints": "true",
    })),
    {
      selector: { app: "lb", tier: "front" },
      networks: [{ kind: "DanmNet", name: "dn" }, { kind: "ClusterNetwork", name: "cn" }],
      tolerateUnreadyEndpoints: true,
    },
  );
  assertEquals(
    ok(serviceSelection({ "danm.k8s.io/selector": '{"app":"x"}', "danm.k8s.io/tenantNetwork": "tn" })),
    { selector: { app: "x" }, networks: [{ kind: "TenantNetwork", name: "tn" }], tolerateUnreadyEndpoints: false },
  );
  assertEquals(ok(serviceSelection({ "app.kubernetes.io/name": "x" })), undefined);
  assertEquals(ok(serviceSelection(undefined)), undefined);
  for (const [v, expected] of [["1", true], ["True", true], ["false", false], ["yes", false]] as const) {
    const s = ok(serviceSelection({
      "danm.io/selector": '{"a":"b"}',
      "danm.io/network": "n",
      "service.alpha.kubernetes.io/tolerate-unready-endpoints": v,
    }));
    assertEquals(s?.tolerateUnreadyEndpoints, expected, v);
  }
});

Deno.test("Service annotations: errors name the annotation and the problem", () => {
  const cases: Array<[Record<string, string>, string, string | undefined, RegExp]> = [
    [{ "danm.io/network": "n" }, "danm.io/network", undefined, /needs a danm.io\/selector/],
    [{ "danm.io/selector": '{"a":"b"}' }, "danm.io/selector", undefined, /at least one of danm.io\/network/],
    [{ "danm.io/selector": '{"a":"b"}', "danm.io/network": "" }, "danm.io/selector", undefined, /at least one/],
    [{ "danm.io/selector": "{}", "danm.io/network": "n" }, "danm.io/selector", undefined, /at least one label/],
    [{ "danm.io/selector": "app=lb", "danm.io/network": "n" }, "danm.io/selector", undefined, /not valid JSON/],
    [{ "danm.io/selector": '{"a":1}', "danm.io/network": "n" }, "danm.io/selector", "a", /label names to values/],
    [{ "danm.io/selector": '["a"]', "danm.io/network": "n" }, "danm.io/selector", undefined, /label names/],
    [
      { "danm.io/selector": '{"a":"b"}', "danm.io/network": "n", "danm.k8s.io/network": "m" },
      "danm.io/network",
      undefined,
      /differs from danm.k8s.io\/network/,
    ],
  ];
  for (const [annotations, annotation, field, reason] of cases) {
    const e = err(serviceSelection(annotations));
    assertEquals([e.annotation, e.field], [annotation, field], JSON.stringify(annotations));
    assertMatch(e.reason, reason, JSON.stringify(annotations));
  }
});

Deno.test("NPWG networks, text form: name, namespace/name, name@interface, comma separated", () => {
  assertEquals(ok(parseNetworkSelection("net1")), [{ name: "net1" }]);
  assertEquals(ok(parseNetworkSelection(" ns1/net1@eth5 , net2@if2,other/net3 ")), [
    { name: "net1", namespace: "ns1", interface: "eth5" },
    { name: "net2", interface: "if2" },
    { name: "net3", namespace: "other" },
  ]);
  assertEquals(ok(parseNetworkSelection("net1,other/net2", "pods")), [
    { name: "net1", namespace: "pods" },
    { name: "net2", namespace: "other" },
  ]);
  assertEquals(ok(parseNetworkSelection("")), []);
  const cases: Array<[string, number, string | undefined, RegExp]> = [
    ["a/b/c", 0, undefined, /more than one "\/"/],
    ["ok,a@b@c", 1, undefined, /more than one "@"/],
    ["Net1", 0, "name", /lower case alphanumerics/],
    ["ns_1/net", 0, "namespace", /lower case/],
    ["net@-eth", 0, "interface", /lower case/],
    ["a,,b", 1, undefined, /empty item/],
  ];
  for (const [value, entry, field, reason] of cases) {
    const e = err(parseNetworkSelection(value));
    assertEquals([e.annotation, e.entry, e.field], ["k8s.v1.cni.cncf.io/networks", entry, field], value);
    assertMatch(e.reason, reason, value);
  }
});

Deno.test("NPWG networks, JSON form: the NetworkSelectionElement keys; unknown keys ignored", () => {
  const value = JSON.stringify([
    {
      name: "macvlan-conf",
      namespace: "ns",
      interface: "net1",
      ips: ["10.1.1.11/24", "2001:db8::11"],
      mac: "c2:b0:57:49:47:f1",
      "default-route": ["10.1.1.1"],
      "cni-args": { foo: { bar: 1 } },
      portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }],
      bandwidth: { ingressRate: 1000, egressRate: 2000 },
      "ipam-claim-reference": "claim-1",
      "infiniband-guid": "c2:b0:57:49:47:f1:00:01",
      futureKey: true,
    },
    { name: "plain" },
  ]);
  const [first, second] = ok(parseNetworkSelection(value, "pods"));
  assertEquals(first.namespace, "ns");
  assertEquals(first.ips, ["10.1.1.11/24", "2001:db8::11"]);
  assertEquals(first["default-route"], ["10.1.1.1"]);
  assertEquals(first["cni-args"], { foo: { bar: 1 } });
  assertEquals(first.portMappings?.[0]?.containerPort, 80);
  assertEquals("futureKey" in first, false);
  assertEquals(second, { name: "plain", namespace: "pods" });

  const cases: Array<[unknown, number | undefined, string | undefined, RegExp]> = [
    [[{ namespace: "x" }], 0, "name", /required field is missing/],
    [[{ name: "" }], 0, "name", /length of at least 1/],
    [[{ name: "a" }, { name: "b", mac: "zz:zz" }], 1, "mac", /not a MAC address/],
    [[{ name: "a", ips: ["10.0.0.1", "nope"] }], 0, "ips[1]", /not an IP address/],
    [[{ name: "a", "default-route": ["10.0.0.0/24"] }], 0, "default-route[0]", /not an IP address/],
    [[{ name: "a", interface: "a-much-too-long-name" }], 0, "interface", /Linux interface name/],
    [[{ name: "a", portMappings: [{ hostPort: "80", containerPort: 80 }] }], 0, "portMappings[0].hostPort", /number/],
    [{ name: "a" }, undefined, undefined, /must be an array/],
    [["a"], 0, undefined, /must be a JSON object/],
  ];
  for (const [json, entry, field, reason] of cases) {
    const e = err(parseNetworkSelection(JSON.stringify(json)));
    assertEquals([e.entry, e.field], [entry, field], JSON.stringify(json));
    assertMatch(e.reason, reason, JSON.stringify(json));
  }
});

Deno.test("NPWG network-status: encode and parse round trip, and Multus' own output parses", () => {
  const entries: NetworkStatusEntry[] = [
    { name: "danm/default", interface: "eth0", ips: ["10.244.1.5"], mac: "0a:58:0a:f4:01:05", default: true, dns: {} },
    {
      name: "ns/sriov-a",
      interface: "first_path1",
      ips: ["10.100.20.10", "2001:db8::10"],
      mac: "c2:b0:57:49:47:f1",
      mtu: 9000,
      gateway: ["10.100.20.1"],
      dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
      "device-info": {
        type: "pci",
        version: "1.1.0",
        pci: { "pci-address": "0000:03:02.3", "pf-pci-address": "0000:03:00.0" },
      },
    },
  ];
  const text = ok(encodeNetworkStatus(entries));
  assertEquals(ok(parseNetworkStatus(text)), entries);

  const multus = `[{
    "name": "cbr0",
    "interface": "eth0",
    "ips": [ "10.244.0.7" ],
    "mac": "8a:5c:5d:53:1b:69",
    "default": true,
    "dns": {},
    "gateway": [ "10.244.0.1" ]
},{
    "name": "default/macvlan-conf",
    "interface": "net1",
    "ips": [ "192.168.1.200" ],
    "mac": "0a:d2:29:e4:26:21",
    "mtu": 1500,
    "dns": {},
    "something-new": 1
}]`;
  const parsed = ok(parseNetworkStatus(multus));
  assertEquals(parsed.map((e) => `${e.name} ${e.interface} ${e.default ?? false} ${e.mtu ?? "-"}`), [
    "cbr0 eth0 true -",
    "default/macvlan-conf net1 false 1500",
  ]);

  const bad = err(encodeNetworkStatus([{ name: "a" }, { name: "b", mtu: 1.5 }]));
  assertEquals([bad.annotation, bad.entry, bad.field], ["k8s.v1.cni.cncf.io/network-status", 1, "mtu"]);
  const badRead = err(parseNetworkStatus('[{"interface":"eth0"}]'));
  assertEquals([badRead.entry, badRead.field], [0, "name"]);
  assertMatch(err(parseNetworkStatus("{}")).reason, /must be a JSON array/);
});
