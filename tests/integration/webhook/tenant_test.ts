// TenantNetwork automation through the real apiserver: DANM's 4_0 examples with the documented assignments, a
// VNI freed and reused after delete, no VNI kept by a refused request, dry-run, concurrent creates, TenantConfig
// updates that would strand VNIs in use.
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { Effect } from "effect";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { uniqueName } from "../../harness/cluster.ts";
import { repoRoot } from "../../harness/proc.ts";
import { pick } from "../api/rest.ts";
import { eventually } from "../../harness/eventually.ts";
import { collection, type Json, messageOf, startTestWebhook, type TestWebhook } from "./support.ts";

const tcName = uniqueName("tconf");
let shared: Promise<TestWebhook> | undefined;
const webhook = () => (shared ??= startTestWebhook({ tenantConfigName: tcName, claimGraceSeconds: 1 }));
const opts = { sanitizeOps: false, sanitizeResources: false };

const example = (file: string): Json =>
  yaml.load(Deno.readTextFileSync(`${repoRoot}/tests/fixtures/danm-compat/example/4_0_examples/${file}`)) as Json;

const renamed = (o: Json, name: string): Json => ({ ...o, metadata: { ...(o.metadata as Json), name } });
const options = (o: Json) => ((o.spec as Json).Options ?? {}) as Json;

const tnet = (name: string, spec: Json) => ({ metadata: { name }, spec });

/** Waits until the webhook's caches hold a network (profile load and VNI usage are derived from them). */
const cached = (w: TestWebhook, name: string, present = true) =>
  eventually(
    `${name} ${present ? "in" : "out of"} the webhook's cache`,
    async () => (await w.run(w.running.view.networks)).some((n) => n.object.metadata.name === name) === present,
  );

const claims = async (w: TestWebhook) => {
  const r = await w.rest.call("GET", collection("Lease", w.claimNamespace));
  return ((pick(r.body, "items") ?? []) as Json[]).map((l) =>
    `${pick(l, "metadata", "labels", "danm.io/vni-type")} ${pick(l, "metadata", "labels", "danm.io/vni")} ${
      pick(l, "metadata", "annotations", "danm.io/vni-device")
    }`
  ).sort();
};

/** Deletes a test's TenantNetworks and waits until their claims are released (the reconciler does it on the watch
 * event, asynchronously): the next test starts from no claims. */
const deleteAll = async (w: TestWebhook, names: string[]) => {
  for (const n of names) await w.remove("TenantNetwork", n);
  for (const n of names) await cached(w, n, false);
  await eventually("claims released after the deletes", async () => (await claims(w)).length === 0);
};

Deno.test({
  name:
    "tenant: DANM's 4_0 examples — 0 and 5 refused, 2 refused (V16), the others admitted with the documented assignments",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const wrong = uniqueName("wrong-tconf");
    const r0 = await w.create("TenantConfig", renamed(example("0_wrong_tconf.yaml"), wrong));
    assertEquals(r0.status, 403);
    assertMatch(
      messageOf(r0),
      new RegExp(`TenantConfig ${wrong}: hostDevices\\[0\\]\\.vniRange: vniType and vniRange must be given together`),
    );
    await w.mustCreate("TenantConfig", renamed(example("1_good_tconf.yaml"), tcName));

    const [n2, n3, n4, n5, n6] = ["internal", "internal", "internal2", "internal3", "management"].map((n) =>
      uniqueName(n)
    );
    const r2 = await w.create("TenantNetwork", renamed(example("2_tnet_with_vlan.yaml"), n2));
    assertEquals(r2.status, 403);
    assertMatch(
      messageOf(r2),
      new RegExp(
        `TenantNetwork default/${n2}: spec\\.Options\\.vlan: cannot be set on a TenantNetwork: the webhook assigns it from the TenantConfig`,
      ),
    );
    const chosen = await w.mustCreate("TenantNetwork", renamed(example("3_chosen_device.yaml"), n3));
    assertEquals(
      [options(chosen).host_device, options(chosen).vlan],
      ["ens4", 1000],
      "lowest VLAN of ens4's 1000-2000",
    );
    await cached(w, n3);
    const random = await w.mustCreate("TenantNetwork", renamed(example("4_random_device.yaml"), n4));
    assertEquals([options(random).host_device, options(random).vlan], ["ens5", 2000], "least-used profile: ens5");
    const r5 = await w.create("TenantNetwork", renamed(example("5_wrong_device.yaml"), n5));
    assertEquals(r5.status, 403);
    assertMatch(
      messageOf(r5),
      new RegExp(
        `TenantNetwork default/${n5}: spec\\.Options\\.host_device: "ens6" is not allowed to be used by tenants \\(not a profile of TenantConfig ${tcName}\\)`,
      ),
    );
    const flannel = await w.mustCreate("TenantNetwork", renamed(example("6_static_tnet.yaml"), n6));
    assertEquals((flannel.spec as Json).NetworkID, "flannel", "NetworkID override from networkIds");
    assertEquals(options(flannel).host_device, undefined);
    assertEquals(await claims(w), ["vlan 1000 ens4", "vlan 2000 ens5"]);
    await deleteAll(w, [n3, n4, n6]);
    await eventually("claims released after the deletes", async () => (await claims(w)).length === 0);
  },
});

Deno.test({
  name: "tenant: a VNI is freed on delete and reused by the next TenantNetwork",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const [a, b, c] = ["a", "b", "c"].map((n) => uniqueName(`reuse-${n}`));
    const va =
      options(await w.mustCreate("TenantNetwork", tnet(a, { NetworkID: "a", Options: { host_device: "ens4" } }))).vlan;
    await cached(w, a);
    const vb =
      options(await w.mustCreate("TenantNetwork", tnet(b, { NetworkID: "b", Options: { host_device: "ens4" } }))).vlan;
    assertEquals([va, vb], [1000, 1001]);
    const del = await w.remove("TenantNetwork", a);
    assertEquals(del.status, 200, messageOf(del));
    // Straight away: the DELETE admission marked the claim, so the next claim may take it over.
    const vc =
      options(await w.mustCreate("TenantNetwork", tnet(c, { NetworkID: "c", Options: { host_device: "ens4" } }))).vlan;
    assertEquals(vc, 1000);
    await deleteAll(w, [b, c]);
  },
});

Deno.test({
  name: "tenant: device_pool profiles — an SR-IOV TenantNetwork gets its pool's VLAN, a pool the TenantConfig lacks " +
    "is refused, random choice never picks a pool",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const pool = "nokia.k8s.io/sriov_ens1f0";
    const withPool = async (add: boolean) => {
      const tc = await w.get("TenantConfig", tcName);
      const devices = (tc.hostDevices as Json[]).filter((d) => d.name !== pool);
      const r = await w.rest.call("PUT", `/apis/danm.io/v1/tenantconfigs/${tcName}`, {
        ...tc,
        hostDevices: add ? [...devices, { name: pool, vniType: "vlan", vniRange: "3000-3001" }] : devices,
      });
      assertEquals(r.status, 200, messageOf(r));
      await eventually(
        "the TenantConfig cached",
        async () =>
          ((await w.run(Effect.orDie(w.running.view.tenantConfig)))?.hostDevices ?? []).some((d) => d.name === pool) ===
            add,
      );
    };
    await withPool(true);
    const [sr, other, rnd] = ["sr", "other", "rnd"].map((n) => uniqueName(`pool-${n}`));
    const vf = await w.mustCreate(
      "TenantNetwork",
      tnet(sr, { NetworkID: "sr", NetworkType: "sriov", Options: { device_pool: pool } }),
    );
    assertEquals([options(vf).device_pool, options(vf).vlan, options(vf).host_device], [pool, 3000, undefined]);
    await cached(w, sr);
    const refused = await w.create(
      "TenantNetwork",
      tnet(other, { NetworkID: "o", NetworkType: "sriov", Options: { device_pool: "nokia.k8s.io/sriov_ens9f9" } }),
    );
    assertEquals(refused.status, 403, messageOf(refused));
    assertMatch(messageOf(refused), /spec\.Options\.device_pool: "nokia\.k8s\.io\/sriov_ens9f9" is not allowed/);
    const picked = await w.mustCreate("TenantNetwork", tnet(rnd, { NetworkID: "rnd", NetworkType: "ipvlan" }));
    assert(["ens4", "ens5"].includes(String(options(picked).host_device)), `chose ${options(picked).host_device}`);
    assertEquals(options(picked).device_pool, undefined, "a device pool is never chosen for the tenant");
    await deleteAll(w, [sr, rnd]);
    await withPool(false);
  },
});

Deno.test({
  name: "tenant: a refused request keeps no VNI — at once when the webhook refuses, after the grace period otherwise",
  ...opts,
  fn: async () => {
    const w = await webhook();
    // Refused by the webhook itself: every rule is checked before a VNI is claimed.
    const bad = await w.create(
      "TenantNetwork",
      tnet(uniqueName("bad"), {
        NetworkID: "x",
        Options: { host_device: "ens4", routes: { "10.0.0.0/8": "10.1.0.1" } },
      }),
    );
    assertEquals(bad.status, 403);
    assertEquals(await claims(w), [], "no claim for a refused request");
    // Refused by the apiserver after admission (the name exists): the claim is reclaimed after the grace period.
    const a = uniqueName("dup");
    assertEquals(
      options(await w.mustCreate("TenantNetwork", tnet(a, { NetworkID: "a", Options: { host_device: "ens4" } }))).vlan,
      1000,
    );
    const dup = await w.create("TenantNetwork", tnet(a, { NetworkID: "a", Options: { host_device: "ens4" } }));
    assertEquals(dup.status, 409, messageOf(dup));
    assertEquals(await claims(w), ["vlan 1000 ens4", "vlan 1001 ens4"]);
    await new Promise((r) => setTimeout(r, 1200));
    const swept = await w.run(w.running.sweep);
    assertEquals(swept.length, 1, `one orphaned claim reclaimed: ${swept}`);
    assertEquals(await claims(w), ["vlan 1000 ens4"]);
    await cached(w, a);
    const b = uniqueName("after");
    assertEquals(
      options(await w.mustCreate("TenantNetwork", tnet(b, { NetworkID: "b", Options: { host_device: "ens4" } }))).vlan,
      1001,
    );
    await deleteAll(w, [a, b]);
  },
});

Deno.test({
  name: "tenant: dry-run shows the VNI it would assign, claims nothing and stores nothing",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const name = uniqueName("dry");
    const dry = await w.create("TenantNetwork", tnet(name, { NetworkID: "d" }), "?dryRun=All");
    assertEquals(dry.status, 201, messageOf(dry));
    assertEquals([options(dry.body as Json).host_device, options(dry.body as Json).vlan], ["ens4", 1000]);
    assertEquals(await claims(w), []);
    assertEquals((await w.rest.call("GET", `${collection("TenantNetwork")}/${name}`)).status, 404);
    const real = await w.mustCreate("TenantNetwork", tnet(name, { NetworkID: "d" }));
    assertEquals(options(real).vlan, 1000);
    await deleteAll(w, [name]);
  },
});

Deno.test({
  name: "tenant: 30 concurrent TenantNetwork creates get 30 distinct, gap-free VLANs",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const names = Array.from({ length: 30 }, (_, i) => uniqueName(`par${i}`));
    const results = await Promise.all(
      names.map((n) => w.create("TenantNetwork", tnet(n, { NetworkID: "p", Options: { host_device: "ens5" } }))),
    );
    const vlans = results.map((r) => {
      if (r.status !== 201) fail(messageOf(r));
      return options(r.body as Json).vlan as number;
    });
    assertEquals([...vlans].sort((x, y) => x - y), Array.from({ length: 30 }, (_, i) => 2000 + i));
    assertEquals((await claims(w)).length, 30);
    await deleteAll(w, names);
    await eventually("all claims released", async () => (await claims(w)).length === 0);
  },
});

Deno.test({
  name: "tenant: tenants cannot change the assignment; the TenantConfig cannot drop a VNI in use",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const name = uniqueName("fixed");
    const net = await w.mustCreate("TenantNetwork", tnet(name, { NetworkID: "f", Options: { host_device: "ens4" } }));
    await cached(w, name);
    const path = `${collection("TenantNetwork")}/${name}`;
    const moved = await w.rest.call("PUT", path, {
      ...net,
      spec: { ...(net.spec as Json), Options: { ...options(net), vlan: 1999 } },
    });
    assertEquals(moved.status, 403);
    assertMatch(
      messageOf(moved),
      new RegExp(`TenantNetwork default/${name}: spec\\.Options\\.vlan: must not change \\(1000 → 1999\\)`),
    );
    // A replace with the tenant's own manifest keeps what the webhook assigned.
    const replaced = await w.rest.call("PUT", path, {
      ...net,
      spec: { NetworkID: "f", Options: { cidr: "10.44.0.0/24" } },
    });
    assertEquals(replaced.status, 200, messageOf(replaced));
    assertEquals([options(replaced.body as Json).host_device, options(replaced.body as Json).vlan], ["ens4", 1000]);
    const tc = await w.get("TenantConfig", tcName);
    const devices = tc.hostDevices as Json[];
    const shrink = await w.rest.call("PUT", `/apis/danm.io/v1/tenantconfigs/${tcName}`, {
      ...tc,
      hostDevices: [{ ...devices[0], vniRange: "1500-2000" }, devices[1]],
    });
    assertEquals(shrink.status, 403);
    assertMatch(
      messageOf(shrink),
      new RegExp(
        `TenantConfig ${tcName}: hostDevices\\[0\\]\\.vniRange: would drop vlan 1000 of ens4, in use by TenantNetwork default/${name}`,
      ),
    );
    await deleteAll(w, [name]);
  },
});

Deno.test({
  name: "tenant: an exhausted profile is refused naming it; the last test stops the webhook",
  ...opts,
  fn: async () => {
    const w = await webhook();
    const tc = await w.get("TenantConfig", tcName);
    const grown = await w.rest.call("PUT", `/apis/danm.io/v1/tenantconfigs/${tcName}`, {
      ...tc,
      hostDevices: [...(tc.hostDevices as Json[]), { name: "ens9", vniType: "vxlan", vniRange: "5000,16777215" }],
    });
    assertEquals(grown.status, 200, messageOf(grown));
    await eventually(
      "the new profile cached",
      async () => ((await w.run(Effect.orDie(w.running.view.tenantConfig)))?.hostDevices ?? []).length === 3,
    );
    const names = [uniqueName("x1"), uniqueName("x2")];
    const ids: unknown[] = [];
    for (const [i, n] of names.entries()) {
      // Each its own NetworkID: two VXLAN networks cannot share vx_<NetworkID> (isolation, see networks.ts).
      const spec = { NetworkID: `x${i}`, Options: { host_device: "ens9" } };
      ids.push(options(await w.mustCreate("TenantNetwork", tnet(n, spec))).vxlan);
      await cached(w, n);
    }
    assertEquals(ids, [5000, 16777215]);
    const third = uniqueName("x3");
    const r = await w.create("TenantNetwork", tnet(third, { NetworkID: "x2", Options: { host_device: "ens9" } }));
    assertEquals(r.status, 403);
    assertMatch(
      messageOf(r),
      new RegExp(
        `spec\\.Options\\.vxlan: no free vxlan left in ens9 \\(vxlan 5000,16777215\\) of TenantConfig ${tcName}`,
      ),
    );
    await deleteAll(w, names);
    assert((await claims(w)).length <= 2);
    await w.close();
    shared = undefined;
  },
});
