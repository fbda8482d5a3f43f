// The generated CRDs on a real apiserver: DANM's own objects apply unchanged (strict field validation) and read back
// as they went in, DANM's serialization quirks are stored, out-of-range values are refused, status is a subresource.
import { type DanmKind, DanmKinds, decodeDanmObject } from "../../../core/api/danm.ts";
import { assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { type TestCluster, uniqueName, useCluster } from "../../harness/cluster.ts";
import { isObject, type JsonObject, manifest, manifestsUnder, ok, withoutNulls } from "../../unit/api/compat.ts";
import { danmCrds, installDanmCrds } from "./danm_crds.ts";
import { pick, type Rest, restClient } from "./rest.ts";

const plurals: Record<DanmKind, { plural: string; namespaced: boolean }> = {
  DanmNet: { plural: "danmnets", namespaced: true },
  TenantNetwork: { plural: "tenantnetworks", namespaced: true },
  ClusterNetwork: { plural: "clusternetworks", namespaced: false },
  TenantConfig: { plural: "tenantconfigs", namespaced: false },
  DanmEp: { plural: "danmeps", namespaced: true },
};

const namespace = "default";

function collection(kind: DanmKind): string {
  const { plural, namespaced } = plurals[kind];
  return namespaced ? `/apis/danm.io/v1/namespaces/${namespace}/${plural}` : `/apis/danm.io/v1/${plural}`;
}

/** Creates objects and deletes them again at the end of the test. */
class Objects {
  private readonly created: string[] = [];
  constructor(readonly rest: Rest) {}

  /** POSTs with strict field validation: an unknown field is an error, not silently pruned. */
  async create(kind: DanmKind, body: JsonObject) {
    const r = await this.rest.call("POST", `${collection(kind)}?fieldValidation=Strict`, body);
    const name = pick(body, "metadata", "name");
    if (r.status === 201) this.created.push(`${collection(kind)}/${name}`);
    return r;
  }

  async mustCreate(kind: DanmKind, body: JsonObject): Promise<JsonObject> {
    const r = await this.create(kind, body);
    if (r.status !== 201) fail(`creating ${kind} ${pick(body, "metadata", "name")}: ${JSON.stringify(r.body)}`);
    return r.body as JsonObject;
  }

  async get(kind: DanmKind, name: string): Promise<JsonObject> {
    const r = await this.rest.call("GET", `${collection(kind)}/${name}`);
    if (r.status !== 200) fail(`reading ${kind} ${name}: ${JSON.stringify(r.body)}`);
    return r.body as JsonObject;
  }

  async cleanup(): Promise<void> {
    for (const path of this.created.reverse()) await this.rest.call("DELETE", path);
  }
}

async function withCluster(fn: (objects: Objects, cluster: TestCluster) => Promise<void>): Promise<void> {
  const cluster = await useCluster();
  const rest = restClient(cluster.kubeConfig);
  const objects = new Objects(rest);
  try {
    await installDanmCrds(cluster.kubeConfig);
    // Established can precede the first successful request by a moment.
    for (const kind of DanmKinds) {
      const deadline = Date.now() + 10_000;
      while ((await rest.call("GET", collection(kind))).status !== 200) {
        if (Date.now() > deadline) fail(`${kind} not served`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await fn(objects, cluster);
  } finally {
    await objects.cleanup();
    rest.close();
    await cluster.release();
  }
}

/** `doc` under a unique name in the test namespace; everything else unchanged. */
function renamed(doc: JsonObject, kind: DanmKind): JsonObject {
  const meta = isObject(doc.metadata) ? doc.metadata : {};
  const name = uniqueName(String(meta.name ?? kind.toLowerCase()));
  const { namespace: _ns, ...rest } = meta;
  return { ...doc, metadata: { ...rest, name, ...(plurals[kind].namespaced ? { namespace } : {}) } };
}

/** The object without what the apiserver adds (metadata it owns, the empty status). */
function payload(doc: JsonObject): JsonObject {
  const { metadata: _m, status: _s, ...rest } = doc;
  return rest;
}

Deno.test("generated CRDs install idempotently and become Established", async () => {
  await withCluster(async (objects, cluster) => {
    // A second install (as another test file would do) replaces instead of failing.
    await installDanmCrds(cluster.kubeConfig);
    for (const crd of danmCrds) {
      const r = await objects.rest.call(
        "GET",
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`,
      );
      // Stored as generated: nothing pruned, defaulted or rewritten by the apiserver.
      assertEquals(pick(r.body, "spec", "names", "shortNames"), crd.spec.names.shortNames, crd.metadata.name);
      assertEquals(pick(r.body, "spec", "versions", 0, "schema"), crd.spec.versions[0].schema, crd.metadata.name);
      assertEquals(
        pick(r.body, "spec", "versions", 0, "additionalPrinterColumns"),
        crd.spec.versions[0].additionalPrinterColumns,
        crd.metadata.name,
      );
    }
  });
});

Deno.test("DANM's example objects apply unchanged and read back as they went in", async () => {
  await withCluster(async (objects) => {
    let count = 0;
    for (const { source, doc } of manifestsUnder("example")) {
      if (doc.apiVersion !== "danm.io/v1") continue;
      const kind = doc.kind as DanmKind;
      const body = renamed(doc, kind);
      await objects.mustCreate(kind, body);
      const back = await objects.get(kind, String(pick(body, "metadata", "name")));
      assertEquals(payload(back), payload(body), source);
      // What the controllers will read decodes, leniently and strictly.
      ok(decodeDanmObject(kind, back, "lenient"));
      ok(decodeDanmObject(kind, back, "strict"));
      count++;
    }
    assertEquals(count, 10);
  });
});

Deno.test("every field of DANM's schema descriptions is known to the CRDs (strict field validation)", async () => {
  await withCluster(async (objects) => {
    for (const kind of ["DanmNet", "TenantNetwork", "ClusterNetwork", "TenantConfig"] as const) {
      const doc = withoutNulls(manifest(`schema/${kind}.yaml`)) as JsonObject;
      // The templates leave every value empty; name the one that is required.
      const filled = kind === "TenantConfig" ? { ...doc, hostDevices: [{ name: "ens4" }] } : doc;
      const body = renamed({ ...filled, metadata: { name: kind.toLowerCase() } }, kind);
      await objects.mustCreate(kind, body);
      // The check itself can fail: an unknown field is refused, not pruned.
      const unknown = await objects.create(kind, renamed({ ...body, Bogus: 1 }, kind));
      assertEquals(unknown.status, 400, `${kind}: unknown field refused`);
      assertMatch(JSON.stringify(unknown.body), /unknown field \\"Bogus\\"/);
    }
  });
});

Deno.test("objects as DANM's Go code writes them (empty strings, zeros, nulls) are stored as written", async () => {
  await withCluster(async (objects) => {
    const net = renamed({
      apiVersion: "danm.io/v1",
      kind: "ClusterNetwork",
      metadata: {},
      spec: {
        NetworkID: "ext",
        NetworkType: "macvlan",
        AllowedTenants: ["default"],
        Options: {
          host_device: "",
          container_prefix: "",
          cidr: "10.20.0.0/16",
          allocation_pool: { start: "", end: "", lastIp: "" },
          allocation_pool_v6: { cidr: "", start: "", end: "", lastIp: "" },
          routes: { "10.30.0.0/16": "10.20.0.1" },
          rt_tables: 0,
          vxlan: 16777215,
          mtu: 9000,
        },
      },
    }, "ClusterNetwork");
    await objects.mustCreate("ClusterNetwork", net);
    const back = await objects.get("ClusterNetwork", String(pick(net, "metadata", "name")));
    assertEquals(back.spec, net.spec);

    const ep = renamed({
      apiVersion: "danm.io/v1",
      kind: "DanmEp",
      metadata: { labels: { app: "x" } },
      spec: {
        NetworkName: "management",
        NetworkType: "ipvlan",
        EndpointID: "6f1c2a8e-0d6b-4b64-9b8e-1f0c9b0f6a11",
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
        PodUID: "b0e4",
        CID: "abc",
        netns: "/var/run/netns/x",
        apiType: "",
      },
    }, "DanmEp");
    await objects.mustCreate("DanmEp", ep);
    const epBack = await objects.get("DanmEp", String(pick(ep, "metadata", "name")));
    assertEquals(epBack.spec, ep.spec);
    assertEquals(pick(epBack, "spec", "Interface", "proutes"), null);
    ok(decodeDanmObject("DanmEp", epBack, "strict"));
  });
});

Deno.test("CRD validation refuses out-of-range IDs and malformed addresses, naming the field", async () => {
  await withCluster(async (objects) => {
    const withOptions = (options: JsonObject) =>
      renamed({
        apiVersion: "danm.io/v1",
        kind: "DanmNet",
        metadata: { name: "r" },
        spec: { NetworkID: "r", Options: options },
      }, "DanmNet");
    const goods: JsonObject[] = [{ vlan: 1 }, { vlan: 4094 }, { vxlan: 16777215 }, { rt_tables: 255 }, { cidr: "" }];
    for (const good of goods) {
      await objects.mustCreate("DanmNet", withOptions(good));
    }
    const bad: Array<[JsonObject, RegExp]> = [
      [
        { vlan: 0 },
        /spec\.Options\.vlan: Invalid value: 0: spec\.Options\.vlan in body should be greater than or equal to 1/,
      ],
      [{ vlan: 4095 }, /spec\.Options\.vlan in body should be less than or equal to 4094/],
      [{ vxlan: 16777216 }, /spec\.Options\.vxlan in body should be less than or equal to 16777215/],
      [{ rt_tables: 256 }, /spec\.Options\.rt_tables in body should be less than or equal to 255/],
      [{ mtu: 60 }, /spec\.Options\.mtu in body should be greater than or equal to 68/],
      [{ cidr: "2001:db8::/64" }, /spec\.Options\.cidr in body should match/],
      [
        { allocation_pool: { start: "10.0.0.300" } },
        /spec\.Options\.allocation_pool\.start in body must be of type ipv4/,
      ],
    ];
    for (const [options, message] of bad) {
      const r = await objects.create("DanmNet", withOptions(options));
      assertEquals(r.status, 422, JSON.stringify(options));
      assertMatch(String(pick(r.body, "message")), message, JSON.stringify(options));
    }
    // DANM v3's fields are unknown to the v1 schema.
    const v3 = await objects.create(
      "DanmNet",
      renamed({
        apiVersion: "danm.io/v1",
        kind: "DanmNet",
        metadata: { name: "v3" },
        spec: { NetworkID: "v3", Validation: true, Options: { dpdk: true } },
      }, "DanmNet"),
    );
    assertEquals(v3.status, 400);
    assertMatch(
      JSON.stringify(v3.body),
      /unknown field \\"spec\.Options\.dpdk\\".*unknown field \\"spec\.Validation\\"|unknown field \\"spec\.Validation\\".*unknown field \\"spec\.Options\.dpdk\\"/,
    );
  });
});

Deno.test("a network's status is a subresource: ignored on the main endpoint, written through /status", async () => {
  await withCluster(async (objects) => {
    const condition = {
      type: "HostInterfacesReady",
      status: "True",
      observedGeneration: 1,
      lastTransitionTime: "2026-01-02T03:04:05Z",
      reason: "AllNodesReady",
      message: "3/3 nodes",
    };
    const net = renamed({
      apiVersion: "danm.io/v1",
      kind: "TenantNetwork",
      metadata: { name: "st" },
      spec: { NetworkID: "st", NetworkType: "ipvlan" },
      status: { observedGeneration: 1, conditions: [condition] },
    }, "TenantNetwork");
    const created = await objects.mustCreate("TenantNetwork", net);
    assertEquals(created.status, undefined, "status on create is dropped");
    const name = String(pick(net, "metadata", "name"));
    const put = await objects.rest.call("PUT", `${collection("TenantNetwork")}/${name}/status`, {
      ...created,
      status: { observedGeneration: 1, conditions: [condition] },
    });
    assertEquals(put.status, 200, JSON.stringify(put.body));
    const back = await objects.get("TenantNetwork", name);
    const decoded = ok(decodeDanmObject("TenantNetwork", back, "strict"));
    assertEquals(decoded.status?.conditions?.[0]?.message, "3/3 nodes");
    assertEquals(pick(back, "metadata", "generation"), 1);

    const badStatus = await objects.rest.call("PUT", `${collection("TenantNetwork")}/${name}/status`, {
      ...back,
      status: { conditions: [{ ...condition, status: "Maybe" }] },
    });
    assertEquals(badStatus.status, 422);
    assertMatch(String(pick(badStatus.body, "message")), /status\.conditions\[0\]\.status: Unsupported value: "Maybe"/);
  });
});
