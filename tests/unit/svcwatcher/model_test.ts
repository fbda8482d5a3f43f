// The pure rules of svcwatcher: ownership of Services, selection (DANM §6.2 and the NAD rule), readiness and
// terminating conditions, named target ports, the Endpoints object and slice packing.
import { Effect, Schema } from "effect";
import { type DanmServiceSelection, serviceSelection } from "../../../core/api/annotations.ts";
import type { DanmEp } from "../../../core/api/danm.ts";
import {
  type EndpointSlice,
  EndpointSlice as EndpointSliceSchema,
  type Pod,
  type Service,
} from "../../../core/api/k8s.ts";
import {
  buildEndpoints,
  classifyService,
  ControllerName,
  desiredEndpoints,
  endpointIp,
  planSlices,
  selectAddresses,
  sliceGroups,
} from "../../../core/svcwatcher/model.ts";
import { assert, assertEquals, fail } from "../../harness/assert.ts";
import { danmEp, ns, pod, service } from "./fixtures.ts";

const selectionOf = (svc: Service): DanmServiceSelection =>
  Effect.runSync(serviceSelection(svc.metadata.annotations)) ?? fail("no selection");

const podsByName = (...ps: Pod[]) => new Map(ps.map((p) => [p.metadata.name!, p]));

const addressesOf = (svc: Service, pods: Pod[], eps: DanmEp[]) =>
  selectAddresses(ns, selectionOf(svc), podsByName(...pods), eps).map((a) => `${a.pod.metadata.name}:${a.ip}`);

Deno.test("endpointIp strips the prefix, canonicalizes IPv6 and skips placeholders and special ranges", () => {
  assertEquals(endpointIp("10.0.0.5/24"), { ip: "10.0.0.5", family: "IPv4" });
  assertEquals(endpointIp("FD00:0:0::0005/64"), { ip: "fd00::5", family: "IPv6" });
  for (const v of ["", "none", "dynamic", "10.0.0", "127.0.0.1/8", "169.254.1.1", "fe80::1/64", "::1", "0.0.0.0"]) {
    assertEquals(endpointIp(v), undefined, v);
  }
});

Deno.test("classifyService: KEP-4770 label first, spec.selector belongs to the in-tree controllers", () => {
  const danm = service("s");
  const sel = selectionOf(danm);
  assertEquals(classifyService(danm, sel)._tag, "Managed");
  assertEquals(classifyService(danm, undefined)._tag, "NotManaged");
  const other = service("s", { labels: { "service.kubernetes.io/endpoint-controller-name": "someone-else" } });
  assertEquals(classifyService(other, sel), { _tag: "NotManaged" });
  const withSelector = service("s", { selector: { app: "lb" } });
  const c = classifyService(withSelector, sel);
  assert(c._tag === "NotManaged" && c.warning !== undefined && /spec.selector/.test(c.warning), JSON.stringify(c));
  const claimed = service("s", {
    selector: { app: "lb" },
    labels: { "service.kubernetes.io/endpoint-controller-name": ControllerName },
  });
  assertEquals(classifyService(claimed, sel)._tag, "Managed");
});

Deno.test("selection: labels AND network AND apiType; ClusterNetwork and TenantNetwork keys", () => {
  const pods = [pod("a"), pod("b"), pod("c"), pod("d"), pod("e", { labels: { app: "other" } })];
  const eps = [
    danmEp("ep-a", "a", { v4: "10.0.0.1/24" }),
    danmEp("ep-b", "b", { v4: "10.0.0.2/24", apiType: "" }), // "" means DanmNet
    danmEp("ep-c", "c", { v4: "10.0.0.3/24", apiType: "TenantNetwork" }), // same name, other kind
    danmEp("ep-d", "d", { v4: "10.0.1.4/24", network: "external" }),
    danmEp("ep-e", "e", { v4: "10.0.0.5/24", labels: { app: "other" } }),
  ];
  assertEquals(addressesOf(service("s"), pods, eps), ["a:10.0.0.1", "b:10.0.0.2"]);
  const tenant = service("s", {
    annotations: { "danm.io/selector": '{"app":"lb"}', "danm.io/tenantNetwork": "internal" },
  });
  assertEquals(addressesOf(tenant, pods, eps), ["c:10.0.0.3"]);
  // Several network keys: a DanmEp matching any of them is selected (legacy prefix too).
  const both = service("s", {
    annotations: {
      "danm.k8s.io/selector": '{"app":"lb"}',
      "danm.k8s.io/network": "external",
      "danm.k8s.io/clusterNetwork": "internal",
    },
  });
  const cluster = [...eps, danmEp("ep-a2", "a", { v4: "10.2.0.1/16", apiType: "ClusterNetwork" })];
  assertEquals(addressesOf(both, pods, cluster), ["d:10.0.1.4", "a:10.2.0.1"]);
});

Deno.test("selection: the pod must exist with the DanmEp's PodUID and not have finished", () => {
  const eps = [
    danmEp("ep-a", "a", { v4: "10.0.0.1/24" }),
    danmEp("ep-gone", "gone", { v4: "10.0.0.2/24" }),
    danmEp("ep-old", "b", { v4: "10.0.0.3/24", podUid: "uid-of-an-earlier-b" }),
    danmEp("ep-done", "done", { v4: "10.0.0.4/24" }),
  ];
  const pods = [pod("a"), pod("b"), pod("done", { phase: "Succeeded" })];
  assertEquals(addressesOf(service("s"), pods, eps), ["a:10.0.0.1"]);
});

Deno.test("selection: dual-stack DanmEps give one address per family (DANM's append bug fixed)", () => {
  const eps = [danmEp("ep-a", "a", { v4: "10.0.0.1/24", v6: "fd00::1/64" }), danmEp("ep-b", "b", { v6: "fd00::2/64" })];
  assertEquals(addressesOf(service("s"), [pod("a"), pod("b")], eps), ["a:10.0.0.1", "a:fd00::1", "b:fd00::2"]);
});

Deno.test("selection: NAD rule — network-status `<ns>/<network>` of pods with no DanmEp on that network", () => {
  const status = (ips: string[]) => [{ name: `${ns}/internal`, ips }, { name: "cbr0", ips: ["10.244.0.9"] }];
  const pods = [
    pod("nad", { networkStatus: status(["192.168.5.7", "fd01::7"]) }),
    // Has a DanmEp on the network: the DanmEp wins, its network-status entry is not read.
    pod("both", { networkStatus: status(["192.168.5.8"]) }),
    pod("unlabelled", { labels: { app: "x" }, networkStatus: status(["192.168.5.9"]) }),
    pod("garbled", {}),
  ];
  const garbled = {
    ...pods[3],
    metadata: { ...pods[3].metadata, annotations: { "k8s.v1.cni.cncf.io/network-status": "not json" } },
  };
  const eps = [danmEp("ep-both", "both", { v4: "10.0.0.8/24" })];
  assertEquals(
    addressesOf(service("s"), [pods[0], pods[1], pods[2], garbled], eps),
    ["both:10.0.0.8", "nad:192.168.5.7", "nad:fd01::7"],
  );
  // A NAD of another namespace is named in full.
  const cross = service("s", { annotations: { "danm.io/selector": '{"app":"lb"}', "danm.io/network": "infra/sriov" } });
  const p = pod("x", { networkStatus: [{ name: "infra/sriov", ips: ["10.9.9.9"] }] });
  assertEquals(addressesOf(cross, [p], []), ["x:10.9.9.9"]);
  // tenantNetwork/clusterNetwork never reach NADs.
  const tenant = service("s", {
    annotations: { "danm.io/selector": '{"app":"lb"}', "danm.io/tenantNetwork": "internal" },
  });
  assertEquals(addressesOf(tenant, [pods[0]], []), []);
});

Deno.test("readiness: Ready condition, terminating pods, publishNotReadyAddresses and the tolerate annotation", () => {
  const pods = [pod("ready"), pod("notready", { ready: false }), pod("leaving", { deleting: true })];
  const eps = pods.map((p, i) => danmEp(`ep-${i}`, p.metadata.name!, { v4: `10.0.0.${i + 1}/24` }));
  const conditions = (svc: Service) => {
    const sel = selectionOf(svc);
    return desiredEndpoints(svc, sel, selectAddresses(ns, sel, podsByName(...pods), eps)).map((e) =>
      `${e.podName} r=${e.ready} s=${e.serving} t=${e.terminating} ep=${e.endpointsReady}`
    );
  };
  assertEquals(conditions(service("s")), [
    "ready r=true s=true t=false ep=true",
    "notready r=false s=false t=false ep=false",
    // Terminating: not ready, serving as its readiness says, left out of the Endpoints object.
    "leaving r=false s=true t=true ep=undefined",
  ]);
  const publishing = [
    "ready r=true s=true t=false ep=true",
    "notready r=true s=false t=false ep=true",
    "leaving r=true s=true t=true ep=true",
  ];
  assertEquals(conditions(service("s", { publishNotReady: true })), publishing);
  const tolerate = service("s", {
    annotations: {
      "danm.io/selector": '{"app":"lb"}',
      "danm.io/network": "internal",
      "service.alpha.kubernetes.io/tolerate-unready-endpoints": "true",
    },
  });
  assertEquals(conditions(tolerate), publishing);
});

Deno.test("buildEndpoints: subsets per port set, named target ports resolved per pod, DANM annotations copied", () => {
  const svc = service("web", {
    ports: [
      { name: "http", port: 80, targetPort: "web", protocol: "TCP" },
      { name: "dns", port: 53, targetPort: 5353, protocol: "UDP" },
    ],
    labels: { team: "a" },
  });
  const pods = [
    pod("a", { ports: [{ name: "web", containerPort: 8080 }], hostname: "a-host" }),
    pod("b", { ports: [{ name: "web", containerPort: 9090 }], ready: false, node: "node-b" }),
    pod("c", { ports: [{ name: "web", containerPort: 8080, protocol: "UDP" }] }), // protocol differs: no http
  ];
  const eps = [
    danmEp("ep-a", "a", { v4: "10.0.0.1/24", v6: "fd00::1/64" }),
    danmEp("ep-b", "b", { v4: "10.0.0.2/24" }),
    danmEp("ep-c", "c", { v4: "10.0.0.3/24" }),
  ];
  const sel = selectionOf(svc);
  const desired = desiredEndpoints(svc, sel, selectAddresses(ns, sel, podsByName(...pods), eps));
  const ep = buildEndpoints(svc, desired);
  const ref = (name: string) => ({ kind: "Pod", namespace: ns, name, uid: `uid-${name}` });
  assertEquals(ep.metadata, {
    name: "web",
    namespace: ns,
    labels: {
      team: "a",
      "service.kubernetes.io/headless": "",
      "endpointslice.kubernetes.io/skip-mirror": "true",
      "endpoints.danm.io/managed-by": "svcwatcher.danm.io",
    },
    annotations: { "danm.io/selector": '{"app":"lb"}', "danm.io/network": "internal" },
    ownerReferences: [{ apiVersion: "v1", kind: "Service", name: "web", uid: "uid-svc-web", controller: true }],
  });
  const dns = { name: "dns", port: 5353, protocol: "UDP" as const };
  // Subsets are ordered by the JSON of their port set, so [dns, http…] sorts before [dns].
  assertEquals(ep.subsets, [
    {
      addresses: [
        { ip: "10.0.0.1", hostname: "a-host", nodeName: "node-a", targetRef: ref("a") },
        { ip: "fd00::1", hostname: "a-host", nodeName: "node-a", targetRef: ref("a") },
      ],
      ports: [dns, { name: "http", port: 8080, protocol: "TCP" }],
    },
    {
      notReadyAddresses: [{ ip: "10.0.0.2", nodeName: "node-b", targetRef: ref("b") }],
      ports: [dns, { name: "http", port: 9090, protocol: "TCP" }],
    },
    { addresses: [{ ip: "10.0.0.3", nodeName: "node-a", targetRef: ref("c") }], ports: [dns] },
  ]);
});

Deno.test("buildEndpoints: a targetPort number is used as is; no targetPort means the port (DANM)", () => {
  const svc = service("s", { ports: [{ port: 80, targetPort: 8080 }, { name: "b", port: 81 }] });
  const sel = selectionOf(svc);
  const desired = desiredEndpoints(
    svc,
    sel,
    selectAddresses(ns, sel, podsByName(pod("a")), [danmEp("e", "a", { v4: "10.0.0.1/24" })]),
  );
  assertEquals(buildEndpoints(svc, desired).subsets?.[0].ports, [
    { port: 8080, protocol: "TCP" },
    { name: "b", port: 81, protocol: "TCP" },
  ]);
});

const sliceOf = (name: string, family: "IPv4" | "IPv6", ips: string[], extra: Partial<EndpointSlice> = {}) =>
  ({
    metadata: { name, namespace: ns, uid: `uid-${name}`, resourceVersion: "1" },
    addressType: family,
    endpoints: ips.map((ip) => ({ addresses: [ip] })),
    ...extra,
  }) as EndpointSlice;

function plan(pods: Pod[], eps: DanmEp[], existing: EndpointSlice[], max = 100, svc = service("s")) {
  const sel = selectionOf(svc);
  const desired = desiredEndpoints(svc, sel, selectAddresses(ns, sel, podsByName(...pods), eps));
  return planSlices(svc, sliceGroups(svc, desired), existing, max);
}

Deno.test("planSlices: one slice per family with the full shape; unchanged state plans nothing", () => {
  const pods = [pod("a", { hostname: "h" }), pod("b", { ready: false })];
  const eps = [danmEp("ea", "a", { v4: "10.0.0.1/24", v6: "fd00::1/64" }), danmEp("eb", "b", { v4: "10.0.0.2/24" })];
  const first = plan(pods, eps, []);
  assertEquals(first.update.length + first.delete.length, 0);
  assertEquals(first.create.map((s) => [s.addressType, s.endpoints.map((e) => e.addresses[0])]), [
    ["IPv4", ["10.0.0.1", "10.0.0.2"]],
    ["IPv6", ["fd00::1"]],
  ]);
  const v4 = first.create[0];
  assert(/^s-danm-v4-[0-9a-f]{8}-0$/.test(v4.metadata.name!), v4.metadata.name);
  assertEquals(v4.metadata.labels, {
    "service.kubernetes.io/headless": "",
    "kubernetes.io/service-name": "s",
    "endpointslice.kubernetes.io/managed-by": "svcwatcher.danm.io",
  });
  assertEquals(v4.ports, [{ name: "http", port: 80, protocol: "TCP" }]);
  assertEquals(v4.endpoints[1], {
    addresses: ["10.0.0.2"],
    conditions: { ready: false, serving: false, terminating: false },
    nodeName: "node-a",
    targetRef: { kind: "Pod", namespace: ns, name: "b", uid: "uid-b" },
  });
  // As stored by the apiserver (uid, resourceVersion added): nothing to do.
  const stored = first.create.map((s, i) => ({
    ...s,
    metadata: { ...s.metadata, uid: `u${i}`, resourceVersion: "7" },
  }));
  const again = plan(pods, eps, stored);
  assertEquals([again.create.length, again.update.length, again.delete.length], [0, 0, 0]);
});

Deno.test("planSlices: endpoints stay put, new ones fill gaps, empty and foreign-shaped slices go", () => {
  const pods = ["a", "b", "c", "d", "e"].map((n) => pod(n));
  const eps = pods.map((p, i) => danmEp(`e${i}`, p.metadata.name!, { v4: `10.0.0.${i + 1}/24` }));
  const first = plan(pods, eps, [], 2);
  assertEquals(first.create.map((s) => s.endpoints.map((e) => e.addresses[0])), [
    ["10.0.0.1", "10.0.0.2"],
    ["10.0.0.3", "10.0.0.4"],
    ["10.0.0.5"],
  ]);
  const stored = first.create.map((s) => ({
    ...s,
    metadata: { ...s.metadata, uid: s.metadata.name, resourceVersion: "1" },
  }));
  // b leaves, f joins: f takes b's place in slice 0; the other slices are untouched.
  const pods2 = [...pods.filter((p) => p.metadata.name !== "b"), pod("f")];
  const eps2 = [...eps.filter((e) => e.spec.Pod !== "b"), danmEp("e5", "f", { v4: "10.0.0.9/24" })];
  const second = plan(pods2, eps2, stored, 2);
  assertEquals(second.create.length + second.delete.length, 0);
  assertEquals(
    second.update.map((s) => [s.metadata.name, s.metadata.resourceVersion, s.endpoints.map((e) => e.addresses[0])]),
    [
      [stored[0].metadata.name, "1", ["10.0.0.1", "10.0.0.9"]],
    ],
  );
  // Only a and c remain: slices 0 and 1 keep one each, slice 2 is deleted; a stale slice of a port set the
  // Service no longer has is deleted too.
  const stale = sliceOf("s-danm-v4-00000000-0", "IPv4", ["10.0.0.1"]);
  const third = plan([pods[0], pods[2]], [eps[0], eps[2]], [...stored, stale], 2);
  assertEquals(third.delete.map((s) => s.metadata.name).sort(), [stored[2].metadata.name, stale.metadata.name].sort());
  assertEquals(third.update.map((s) => s.endpoints.map((e) => e.addresses[0])), [["10.0.0.1"], ["10.0.0.3"]]);
});

Deno.test("planSlices: duplicates across slices are dropped and a hand-edited slice is rewritten", () => {
  const pods = [pod("a"), pod("b")];
  const eps = [danmEp("ea", "a", { v4: "10.0.0.1/24" }), danmEp("eb", "b", { v4: "10.0.0.2/24" })];
  const [good] = plan(pods, eps, [], 1).create;
  const prefix = good.metadata.name!.replace(/0$/, "");
  const s0 = { ...good, metadata: { ...good.metadata, uid: "u0", resourceVersion: "1" } };
  // Slice 1 holds a copy of a's endpoint plus garbage (edited by hand); b is nowhere.
  const s1 = {
    ...s0,
    metadata: { ...s0.metadata, name: `${prefix}1`, uid: "u1" },
    endpoints: [s0.endpoints[0], { addresses: ["10.9.9.9"] }],
  };
  const p = plan(pods, eps, [s0, s1], 1);
  assertEquals(p.create.length + p.delete.length, 0);
  assertEquals(p.update.map((s) => [s.metadata.name, s.endpoints.map((e) => e.addresses[0])]), [[`${prefix}1`, [
    "10.0.0.2",
  ]]]);
});

Deno.test("buildEndpoints: over 1000 addresses, ready ones are kept first and the object is marked truncated", () => {
  const svc = service("big");
  const sel = selectionOf(svc);
  const pods = Array.from({ length: 1005 }, (_, i) => pod(`p${i}`, { ready: i >= 10 }));
  const eps = pods.map((p, i) => danmEp(`e${i}`, p.metadata.name!, { v4: `10.1.${i >> 8}.${i & 255}/16` }));
  const ep = buildEndpoints(svc, desiredEndpoints(svc, sel, selectAddresses(ns, sel, podsByName(...pods), eps)));
  const ready = ep.subsets?.flatMap((s) => s.addresses ?? []) ?? [];
  const notReady = ep.subsets?.flatMap((s) => s.notReadyAddresses ?? []) ?? [];
  assertEquals([ready.length, notReady.length], [995, 5]);
  assertEquals(ep.metadata.annotations?.["endpoints.kubernetes.io/over-capacity"], "truncated");
});

Deno.test("EndpointSlice decodes the apiserver's null lists (empty endpoints and ports) as empty", () => {
  const slice = Schema.decodeUnknownSync(EndpointSliceSchema)({
    metadata: { name: "s" },
    addressType: "IPv4",
    endpoints: null,
    ports: null,
  });
  assertEquals([slice.endpoints, slice.ports], [[], []]);
});
