// The danm API schemas against DANM's own manifests and serialization quirks, strict vs lenient decoding.
import { Effect, Result } from "effect";
import {
  ClusterNetworkResource,
  DanmEpResource,
  type DanmKind,
  DanmKinds,
  DanmNetResource,
  decodeAnyDanmObject,
  decodeDanmObject,
  hostInterfacesMessage,
  LegacyClusterNetworkResource,
  LegacyDanmNetResource,
  TenantConfigResource,
  TenantNetworkResource,
} from "../../../core/api/danm.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { err, type JsonObject, manifest, manifestsUnder, ok, withoutNulls } from "./compat.ts";

const isDanmKind = (k: unknown): k is DanmKind => typeof k === "string" && (DanmKinds as readonly string[]).includes(k);

Deno.test("every danm.io object in DANM's examples decodes strictly and loses nothing", () => {
  const seen: string[] = [];
  for (const { source, doc } of manifestsUnder("example")) {
    if (doc.apiVersion === "danm.io/v1") {
      assert(isDanmKind(doc.kind), `${source}: unexpected kind ${doc.kind}`);
      const decoded = ok(decodeDanmObject(doc.kind, doc, "strict"));
      assertEquals(decoded as unknown, doc, `${source} round trip`);
      assertEquals(ok(decodeDanmObject(doc.kind, doc, "lenient")) as unknown, doc, `${source} lenient`);
      seen.push(`${doc.kind}:${source}`);
    } else {
      // Workloads (their annotations are tested in annotations_test.ts) and the demo's Namespace.
      assert(["Deployment", "Pod", "Namespace"].includes(String(doc.kind)), `${source}: unexpected ${doc.kind}`);
    }
  }
  assertEquals(seen.length, 10, `danm objects decoded: ${seen.join(", ")}`);
});

Deno.test("the examples meant to be rejected pass the schema and fail a webhook rule instead", () => {
  // 0_wrong_tconf: vniType without vniRange — webhook rule T3 (spec §7.6), not a structural error.
  const wrongTconf = ok(
    decodeDanmObject("TenantConfig", manifest("example/4_0_examples/0_wrong_tconf.yaml"), "strict"),
  );
  const profile = wrongTconf.hostDevices?.[0];
  assertEquals(profile?.vniType, "vlan");
  assertEquals(profile?.vniRange, undefined);

  // 5_wrong_device: host_device ens6 is no profile of the TenantConfig (1_good_tconf) — rule V19 (spec §7.3).
  const goodTconf = ok(decodeDanmObject("TenantConfig", manifest("example/4_0_examples/1_good_tconf.yaml"), "strict"));
  const wrongDevice = ok(
    decodeDanmObject("TenantNetwork", manifest("example/4_0_examples/5_wrong_device.yaml"), "strict"),
  );
  const device = wrongDevice.spec.Options?.host_device;
  assertEquals(device, "ens6");
  assert(!goodTconf.hostDevices?.some((p) => p.name === device), "ens6 must not be an allowed profile");
});

/** Paths strict decoding reports as unknown fields (other problems, e.g. placeholders left empty, aside). */
function unknownFields(kind: DanmKind, doc: unknown): string[] {
  const r = Effect.runSync(Effect.result(decodeDanmObject(kind, doc, "strict")));
  return Result.isFailure(r) ? r.failure.problems.filter((p) => p.message === "unknown field").map((p) => p.path) : [];
}

Deno.test("DANM's schema descriptions use only field names the schemas know", () => {
  // The files are templates whose values are comments (YAML null); their keys are DANM's complete field list.
  for (const file of ["DanmNet", "TenantNetwork", "ClusterNetwork", "TenantConfig"] as const) {
    const doc = withoutNulls(manifest(`schema/${file}.yaml`)) as JsonObject;
    assertEquals(doc.kind, file);
    assertEquals(unknownFields(file, doc), [], file);
    assertEquals(unknownFields(file, { ...doc, zzUnknown: 1 }), ["zzUnknown"], `${file} with an unknown field`);
  }
});

/** A DanmNet as DANM's Go code writes it back: unset members serialized as "" and 0. */
const danmWritten: JsonObject = {
  apiVersion: "danm.io/v1",
  kind: "DanmNet",
  metadata: { name: "written", namespace: "default", resourceVersion: "42", uid: "u-1" },
  spec: {
    NetworkID: "written",
    NetworkType: "ipvlan",
    Options: {
      host_device: "",
      container_prefix: "",
      cidr: "10.10.0.0/24",
      allocation_pool: { start: "10.10.0.1", end: "10.10.0.254", lastIp: "10.10.0.5/24" },
      allocation_pool_v6: { cidr: "", start: "", end: "", lastIp: "" },
      alloc: "gAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=",
      rt_tables: 0,
    },
  },
  status: {},
};

Deno.test("objects DANM wrote, with empty-string members, decode in both modes", () => {
  assertEquals(ok(decodeDanmObject("DanmNet", danmWritten, "strict")) as unknown, danmWritten);
  const ep: JsonObject = {
    apiVersion: "danm.k8s.io/v1",
    kind: "DanmEp",
    metadata: { name: "0b5e4f3c", namespace: "default", labels: { app: "x" } },
    spec: {
      NetworkName: "management",
      NetworkType: "ipvlan",
      EndpointID: "0b5e4f3c",
      Interface: {
        Name: "eth0",
        Address: "10.0.0.5/24",
        AddressIPv6: "",
        MacAddress: "",
        proutes: null,
        proutes6: null,
      },
      Host: "node-1",
      Pod: "p",
      CID: "abc",
      netns: "/var/run/netns/x",
      apiType: "",
    },
  };
  assertEquals(ok(decodeDanmObject("DanmEp", ep, "strict")) as unknown, ep);
  const badType = { ...ep, spec: { ...(ep.spec as JsonObject), apiType: "NetworkAttachmentDefinition" } };
  assertEquals(err(decodeDanmObject("DanmEp", badType, "lenient")).problems.map((p) => p.path), ["spec.apiType"]);
});

Deno.test("strict mode refuses unknown fields, with a hint for DANM v3's; lenient mode drops them", () => {
  const legacy = {
    ...danmWritten,
    metadata: { name: "v3", managedFields: [{ manager: "kubectl" }], selfLink: "/x" },
    spec: {
      NetworkID: "v3",
      Validation: true,
      Options: { cidr: "10.0.0.0/24", dpdk: true, mystery: "x" },
    },
    extra: 1,
  };
  const e = err(decodeDanmObject("DanmNet", legacy, "strict"));
  assertEquals(e._tag, "DanmObjectError");
  assertEquals(e.problems.map((p) => p.path).sort(), [
    "extra",
    "spec.Options.dpdk",
    "spec.Options.mystery",
    "spec.Validation",
  ]);
  const byPath = Object.fromEntries(e.problems.map((p) => [p.path, p.message]));
  assertMatch(byPath["spec.Validation"], /DANM v3 field/);
  assertMatch(byPath["spec.Options.dpdk"], /DANM v3 field/);
  assertEquals(byPath["spec.Options.mystery"], "unknown field");
  assertMatch(e.message, /^decoding DanmNet "v3" \(strict\): /);
  assertMatch(e.message, /spec\.Options\.mystery: unknown field/);

  const lenient = ok(decodeDanmObject("DanmNet", legacy, "lenient"));
  assertEquals(lenient.spec as unknown, { NetworkID: "v3", Options: { cidr: "10.0.0.0/24" } });
  assertEquals(lenient.metadata as unknown, { name: "v3" });
});

// Found by `deno task fuzz` (crd-*): a field named like an Object.prototype member found the prototype's function as
// its "legacy hint", and building the error died on it.
Deno.test("strict mode: fields named toString, constructor, __proto__ are plain unknown fields", () => {
  const input = JSON.parse(
    '{"kind":"DanmNet","metadata":{"name":"p"},"spec":{"NetworkID":"p"},"toString":1,"constructor":2,"__proto__":3}',
  );
  const e = err(decodeDanmObject("DanmNet", input, "strict"));
  assertEquals(e._tag, "DanmObjectError");
  assertEquals(e.problems.map((p) => `${p.path}: ${p.message}`).sort(), [
    "__proto__: unknown field",
    "constructor: unknown field",
    "toString: unknown field",
  ]);
});

Deno.test("strict mode keeps metadata open: the apiserver's fields are no user error", () => {
  const obj = {
    ...danmWritten,
    metadata: {
      name: "m",
      managedFields: [{ manager: "kubectl", operation: "Update" }],
      ownerReferences: [{ apiVersion: "v1", kind: "Pod", name: "p", uid: "u", futureField: true }],
    },
  };
  const decoded = ok(decodeDanmObject("DanmNet", obj, "strict"));
  assertEquals(decoded.metadata.ownerReferences?.[0]?.name, "p");
});

function withOptions(options: { readonly [k: string]: unknown }): { readonly [k: string]: unknown } {
  return { ...danmWritten, spec: { NetworkID: "n", Options: options } };
}

function problemPaths(options: { readonly [k: string]: unknown }): string[] {
  const r = decodeDanmObject("DanmNet", withOptions(options), "lenient");
  return err(r).problems.map((p) => p.path);
}

Deno.test("ranges: vlan 1–4094, vxlan 1–16777215, rt_tables 0–255, mtu 68–65535, integers only", () => {
  const goods: JsonObject[] = [
    { vlan: 1 },
    { vlan: 4094 },
    { vxlan: 1 },
    { vxlan: 16777215 },
    { rt_tables: 0 },
    { rt_tables: 255 },
    { mtu: 68 },
    { mtu: 9000 },
    { mtu: 65535 },
  ];
  for (const good of goods) {
    ok(decodeDanmObject("DanmNet", withOptions(good), "strict"));
  }
  for (
    const [bad, path] of [
      [{ vlan: 0 }, "vlan"],
      [{ vlan: 4095 }, "vlan"],
      [{ vlan: 1.5 }, "vlan"],
      [{ vlan: "100" }, "vlan"],
      [{ vxlan: 0 }, "vxlan"],
      [{ vxlan: 16777216 }, "vxlan"],
      [{ rt_tables: -1 }, "rt_tables"],
      [{ rt_tables: 256 }, "rt_tables"],
      [{ mtu: 67 }, "mtu"],
      [{ mtu: 65536 }, "mtu"],
    ] as const
  ) {
    assertEquals(problemPaths(bad), [`spec.Options.${path}`], JSON.stringify(bad));
  }
  const msg = err(decodeDanmObject("DanmNet", withOptions({ vlan: 5000 }), "strict")).message;
  assertMatch(msg, /spec\.Options\.vlan: Expected a value between 1 and 4094/);
});

Deno.test("address fields take their family's syntax or an empty string", () => {
  ok(decodeDanmObject(
    "DanmNet",
    withOptions({
      cidr: "10.0.0.0/9",
      net6: "2001:db8::/64",
      allocation_pool: { start: "10.0.0.1", end: "", lastIp: "" },
      allocation_pool_v6: { cidr: "2001:db8::/106", start: "2001:db8::1", end: "", lastIp: "2001:db8::5/64" },
    }),
    "strict",
  ));
  for (
    const [bad, path] of [
      [{ cidr: "10.0.0.0/33" }, "cidr"],
      [{ cidr: "10.0.0.0" }, "cidr"],
      [{ cidr: "2001:db8::/64" }, "cidr"],
      [{ net6: "10.0.0.0/24" }, "net6"],
      [{ net6: "fe80::1%eth0/64" }, "net6"],
      [{ allocation_pool: { start: "10.0.0.256" } }, "allocation_pool.start"],
      [{ allocation_pool: { start: "010.0.0.1" } }, "allocation_pool.start"],
      [{ allocation_pool: { end: "10.1" } }, "allocation_pool.end"],
      [{ allocation_pool: { lastIp: "10.0.0.5" } }, "allocation_pool.lastIp"],
      [{ allocation_pool_v6: { start: "10.0.0.1" } }, "allocation_pool_v6.start"],
      [{ allocation_pool_v6: { cidr: "2001:db8::/129" } }, "allocation_pool_v6.cidr"],
    ] as const
  ) {
    assertEquals(problemPaths(bad), [`spec.Options.${path}`], JSON.stringify(bad));
  }
});

Deno.test("every problem is reported, not only the first", () => {
  assertEquals(problemPaths({ vlan: 0, vxlan: 0, cidr: "x" }).sort(), [
    "spec.Options.cidr",
    "spec.Options.vlan",
    "spec.Options.vxlan",
  ]);
});

Deno.test("a network's status carries conditions and observedGeneration", () => {
  const obj = {
    ...danmWritten,
    metadata: { name: "s", generation: 3 },
    status: {
      observedGeneration: 3,
      conditions: [{
        type: "HostInterfacesReady",
        status: "False",
        observedGeneration: 3,
        lastTransitionTime: "2026-01-02T03:04:05Z",
        reason: "Pending",
        message: hostInterfacesMessage(2, 3),
      }],
    },
  };
  const decoded = ok(decodeDanmObject("ClusterNetwork", { ...obj, kind: "ClusterNetwork" }, "strict"));
  assertEquals(decoded.status?.conditions?.[0]?.message, "2/3 nodes");
  const badStatus = { ...obj, status: { conditions: [{ type: "X", status: "Maybe" }] } };
  assertEquals(
    err(decodeDanmObject("DanmNet", badStatus, "lenient")).problems.map((p) => p.path).sort(),
    [
      "status.conditions[0].lastTransitionTime",
      "status.conditions[0].message",
      "status.conditions[0].reason",
      "status.conditions[0].status",
    ],
  );
});

Deno.test("decodeAnyDanmObject dispatches on kind and refuses others", () => {
  const tn = ok(decodeAnyDanmObject({ ...danmWritten, kind: "TenantNetwork" }, "strict"));
  assertEquals(tn.kind, "TenantNetwork");
  const e = err(decodeAnyDanmObject({ apiVersion: "v1", kind: "Pod", metadata: { name: "p" } }, "strict"));
  assertEquals(e.kind, "Pod");
  assertMatch(e.message, /Pod "p" \(strict\): kind: not a danm kind/);
  // kind must agree with the decoder asked for.
  assertEquals(
    err(decodeDanmObject("DanmNet", { ...danmWritten, kind: "ClusterNetwork" }, "strict")).problems[0]?.path,
    "kind",
  );
});

Deno.test("ResourceTypes: group danm.io v1, DANM's plurals and scopes, and the legacy group", () => {
  const all = [DanmNetResource, TenantNetworkResource, ClusterNetworkResource, TenantConfigResource, DanmEpResource];
  assertEquals(
    all.map((r) => `${r.group}/${r.version} ${r.kind} ${r.plural} ${r.namespaced ? "ns" : "cluster"}`),
    [
      "danm.io/v1 DanmNet danmnets ns",
      "danm.io/v1 TenantNetwork tenantnetworks ns",
      "danm.io/v1 ClusterNetwork clusternetworks cluster",
      "danm.io/v1 TenantConfig tenantconfigs cluster",
      "danm.io/v1 DanmEp danmeps ns",
    ],
  );
  assertEquals(LegacyDanmNetResource.group, "danm.k8s.io");
  assertEquals(LegacyClusterNetworkResource.namespaced, false);
  assertEquals(LegacyDanmNetResource.schema, DanmNetResource.schema);
});
