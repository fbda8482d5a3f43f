// TenantNetwork automation and VNI claims through the in-memory apiserver with the webhook registered: DANM's
// 4_0 examples, reuse after delete, no VNI spent on refused or dry-run requests, uniqueness across replicas.
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { Effect } from "effect";
import { layerMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import {
  type DanmKind,
  decodeDanmObject,
  TenantConfigResource,
  type TenantNetwork,
  TenantNetworkResource,
} from "../../../core/api/danm.ts";
import { LeaseResource } from "../../../core/api/k8s.ts";
import { Kube, type KubeError } from "../../../core/ports/kube.ts";
import { claimName, holds, parseHolder } from "../../../core/webhook/claims.ts";
import { VniClaimAnnotation } from "../../../core/webhook/networks.ts";
import { assert, assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { repoRoot } from "../../harness/proc.ts";
import { eventuallyHolds } from "../../harness/eventually.ts";
import { ClaimNamespace, type Env, type Json, makeEnv, patched, registerWebhook, review, withEnv } from "./harness.ts";

const example = (file: string): Json =>
  yaml.load(Deno.readTextFileSync(`${repoRoot}/tests/fixtures/danm-compat/example/4_0_examples/${file}`)) as Json;

const tnet = (name: string, spec: Json, namespace = "default"): Json => ({
  apiVersion: "danm.io/v1",
  kind: "TenantNetwork",
  metadata: { name, namespace },
  spec,
});

const tconf = (name: string, body: Json): Json => ({
  apiVersion: "danm.io/v1",
  kind: "TenantConfig",
  metadata: { name },
  ...body,
});

/** Creates through the Kube port (so the registered webhook admits it); the error message on refusal. */
const create = (env: Env, obj: Json) =>
  Effect.gen(function* () {
    const kind = obj.kind as DanmKind;
    const decoded = yield* Effect.orDie(decodeDanmObject(kind, obj));
    const rt = kind === "TenantConfig" ? TenantConfigResource : TenantNetworkResource;
    return yield* (env.kube.create(rt as typeof TenantNetworkResource, decoded as TenantNetwork) as Effect.Effect<
      TenantNetwork,
      KubeError
    >).pipe(
      Effect.map((o) => ({ ok: true as const, object: o })),
      Effect.catch((e: KubeError) => Effect.succeed({ ok: false as const, message: e.message })),
    );
  });

const mustCreate = (env: Env, obj: Json) =>
  Effect.flatMap(create(env, obj), (r) => r.ok ? Effect.succeed(r.object) : Effect.sync(() => fail(r.message)));

const refused = (env: Env, obj: Json, re: RegExp) =>
  Effect.flatMap(create(env, obj), (r) =>
    Effect.sync(() => {
      if (r.ok) fail(`${(obj.metadata as Json).name} was admitted, expected ${re}`);
      else assertMatch(r.message, re);
    }));

/** Waits until the webhook's caches saw a network (usage is derived from them). */
const cached = (env: Env, name: string, present = true) =>
  eventuallyHolds(
    `${name} ${present ? "in" : "out of"} the cache`,
    Effect.map(env.view.networks, (all) => all.some((n) => n.object.metadata.name === name) === present),
  );

const leases = (env: Env) =>
  Effect.map(Effect.orDie(env.kube.list(LeaseResource, { namespace: ClaimNamespace })), (l) => l.items);

const vlanOf = (n: TenantNetwork) => n.spec.Options?.vlan;

const withWebhook = <A>(body: (env: Env) => Effect.Effect<A, unknown, Kube>, graceSeconds = 120) =>
  withEnv(
    (env) =>
      Effect.acquireUseRelease(Effect.sync(() => registerWebhook(env)), () => body(env), (off) => Effect.sync(off)),
    {
      graceSeconds,
    },
  );

Deno.test("DANM's 4_0 examples: wrong TenantConfig and device refused, the others get the documented assignments", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* refused(
        env,
        example("0_wrong_tconf.yaml"),
        /hostDevices\[0\]\.vniRange: vniType and vniRange must be given together/,
      );
      yield* mustCreate(env, example("1_good_tconf.yaml"));
      // V16: a tenant cannot choose its VLAN (documented decision: refused, as DANM does).
      yield* refused(
        env,
        example("2_tnet_with_vlan.yaml"),
        /TenantNetwork default\/internal: spec\.Options\.vlan: cannot be set on a TenantNetwork: the webhook assigns it/,
      );
      const chosen = yield* mustCreate(env, example("3_chosen_device.yaml"));
      assertEquals(chosen.spec.Options?.host_device, "ens4");
      assertEquals(vlanOf(chosen), 1000, "lowest VLAN of ens4's 1000-2000");
      assertEquals(chosen.spec.NetworkID, "internal");
      yield* cached(env, "internal");
      const random = yield* mustCreate(env, example("4_random_device.yaml"));
      // Deterministic: ens5 carries no TenantNetwork yet, ens4 one.
      assertEquals(random.spec.Options?.host_device, "ens5");
      assertEquals(vlanOf(random), 2000, "lowest VLAN of ens5's 2000-3000");
      yield* refused(
        env,
        example("5_wrong_device.yaml"),
        /spec\.Options\.host_device: "ens6" is not allowed to be used by tenants \(not a profile of TenantConfig tconf\)/,
      );
      const flannel = yield* mustCreate(env, example("6_static_tnet.yaml"));
      assertEquals(flannel.spec.NetworkID, "flannel", "networkIds override of NetworkType flannel");
      assertEquals(flannel.spec.Options?.host_device, undefined, "static delegates get no device");
      // One claim per assigned VLAN, held by the network's nonce.
      const held = yield* leases(env);
      assertEquals(
        held.map((l) => l.metadata.name).sort(),
        [
          claimName({ device: "ens4", type: "vlan", id: 1000 }),
          claimName({ device: "ens5", type: "vlan", id: 2000 }),
        ].sort(),
      );
      const holder = parseHolder(held.find((l) => l.metadata.labels?.["danm.io/vni"] === "1000")?.spec?.holderIdentity);
      assertEquals(holder?.nonce, chosen.metadata.annotations?.[VniClaimAnnotation]);
      assertEquals(holder?.name, "internal");
    })
  ));

Deno.test("a VNI is freed when its TenantNetwork is deleted and the next TenantNetwork reuses it", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* mustCreate(env, tconf("tc", { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "1000-2000" }] }));
      const a = yield* mustCreate(env, tnet("a", { NetworkID: "a", Options: { host_device: "ens4" } }));
      yield* cached(env, "a");
      const b = yield* mustCreate(env, tnet("b", { NetworkID: "b", Options: { host_device: "ens4" } }));
      yield* cached(env, "b");
      assertEquals([vlanOf(a), vlanOf(b)], [1000, 1001]);
      yield* Effect.orDie(env.kube.delete(TenantNetworkResource, "a", { namespace: "default" }));
      // No waiting for caches: the DELETE admission marked the claim, the next claim takes it over.
      const c = yield* mustCreate(env, tnet("c", { NetworkID: "c", Options: { host_device: "ens4" } }));
      assertEquals(vlanOf(c), 1000);
      // The reconciler frees the claims of deleted networks by itself (watch event).
      yield* Effect.orDie(env.kube.delete(TenantNetworkResource, "b", { namespace: "default" }));
      yield* eventuallyHolds(
        "the claim of b released",
        Effect.map(leases(env), (ls) => ls.every((l) => l.metadata.labels?.["danm.io/vni"] !== "1001")),
      );
    })
  ));

Deno.test("a request refused before the claim, by our validation or by a later webhook spends no VNI", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* mustCreate(env, tconf("tc", { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "1000-2000" }] }));
      // 1. Refused by the mutating webhook: every rule is checked before anything is claimed.
      yield* refused(
        env,
        tnet("bad", { NetworkID: "bad", Options: { host_device: "ens4", routes: { "10.0.0.0/8": "10.1.0.1" } } }),
        /spec\.Options\.routes: IP routes cannot be defined for an L2 network/,
      );
      assertEquals((yield* leases(env)).length, 0, "no claim for a refused request");
      // 2. Refused by our validating webhook after the mutation claimed (another mutator broke the object):
      //    the claim is released in the same call.
      const m = yield* env.mutate(
        review("CREATE", tnet("late", { NetworkID: "late", Options: { host_device: "ens4" } })),
      );
      const broken = patched(tnet("late", { NetworkID: "late", Options: { host_device: "ens4" } }), m);
      assertEquals(((broken.spec as Json).Options as Json).vlan, 1000);
      assertEquals((yield* leases(env)).length, 1);
      (broken.spec as Json).AllowedTenants = ["x"];
      const v = yield* env.validate(review("CREATE", broken));
      assert(!v.response.allowed, "validation refuses the broken object");
      assertEquals((yield* leases(env)).length, 0, "the claim of the refused object is released at once");
      const next = yield* mustCreate(env, tnet("next", { NetworkID: "next", Options: { host_device: "ens4" } }));
      assertEquals(vlanOf(next), 1000);
    })
  ));

Deno.test("a claim left by a request refused after our webhooks is reclaimed after the grace period", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* mustCreate(env, tconf("tc", { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "1000-2000" }] }));
      // Another validating webhook, called after ours, refuses the object: nothing carries the claim.
      const off = env.server.addAdmissionHook({
        name: "other.example.com",
        phase: "validating",
        admit: (r) =>
          Effect.succeed(
            r.name === "doomed" ? { allowed: false, message: "not today" } : { allowed: true },
          ),
      });
      yield* refused(env, tnet("doomed", { NetworkID: "d", Options: { host_device: "ens4" } }), /not today/);
      off();
      assertEquals((yield* leases(env)).length, 1, "the claim outlives the refused request, for now");
      assertEquals(yield* env.sweep, [], "too young to reclaim: it could belong to a request in flight");
      const early = yield* mustCreate(env, tnet("early", { NetworkID: "e", Options: { host_device: "ens4" } }));
      assertEquals(vlanOf(early), 1001, "a young unclaimed VNI is not taken over");
      yield* Effect.sleep(1100);
      assertEquals(yield* env.sweep, [claimName({ device: "ens4", type: "vlan", id: 1000 })]);
      yield* cached(env, "early");
      const late = yield* mustCreate(env, tnet("late", { NetworkID: "l", Options: { host_device: "ens4" } }));
      assertEquals(vlanOf(late), 1000, "reused once reclaimed");
    }), 1));

Deno.test("an expired unclaimed VNI is taken over by the next claim without waiting for a sweep", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* mustCreate(env, tconf("tc", { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "7-8" }] }));
      const m = yield* env.mutate(review("CREATE", tnet("lost", { NetworkID: "x", Options: { host_device: "ens4" } })));
      assert(m.response.allowed, "claimed");
      yield* Effect.sleep(1100);
      const taker = yield* mustCreate(env, tnet("taker", { NetworkID: "t", Options: { host_device: "ens4" } }));
      assertEquals(vlanOf(taker), 7);
      const [lease] = yield* leases(env);
      assertEquals(parseHolder(lease.spec?.holderIdentity)?.name, "taker");
      assertEquals(lease.spec?.leaseTransitions, 1);
    }), 1));

Deno.test("dry-run shows the assignment but claims and marks nothing", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* mustCreate(env, tconf("tc", { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "1000-2000" }] }));
      const obj = yield* Effect.orDie(decodeDanmObject("TenantNetwork", tnet("dry", { NetworkID: "d" })));
      const shown = yield* Effect.orDie(env.kube.create(TenantNetworkResource, obj, { dryRun: true }));
      assertEquals([shown.spec.Options?.host_device, vlanOf(shown)], ["ens4", 1000]);
      assertEquals(shown.metadata.annotations?.[VniClaimAnnotation], undefined);
      assertEquals((yield* leases(env)).length, 0, "no claim on dry-run");
      const real = yield* mustCreate(env, tnet("real", { NetworkID: "r" }));
      assertEquals(vlanOf(real), 1000);
      // A dry-run DELETE leaves the claim unmarked: the VNI stays taken.
      yield* Effect.orDie(env.kube.delete(TenantNetworkResource, "real", { namespace: "default", dryRun: true }));
      const [lease] = yield* leases(env);
      assertEquals(lease.metadata.annotations?.["danm.io/vni-released"], undefined);
      yield* cached(env, "real");
      const other = yield* mustCreate(env, tnet("other", { NetworkID: "o" }));
      assertEquals(vlanOf(other), 1001);
    })
  ));

Deno.test("concurrent creates through two webhook replicas get distinct, gap-free VNIs", () => {
  const server = new MemoryApiServer();
  return Effect.runPromise(
    Effect.scoped(Effect.gen(function* () {
      const a = yield* makeEnv(server), b = yield* makeEnv(server);
      yield* mustCreate(a, tconf("tc", { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "1000-1100" }] }));
      yield* eventuallyHolds(
        "TenantConfig cached",
        Effect.map(Effect.orDie(b.view.tenantConfig), (t) => t !== undefined),
      );
      yield* eventuallyHolds(
        "TenantConfig cached",
        Effect.map(Effect.orDie(a.view.tenantConfig), (t) => t !== undefined),
      );
      const n = 40;
      const objects = Array.from(
        { length: n },
        (_, i) => tnet(`c${i}`, { NetworkID: `c${i}`, Options: { host_device: "ens4" } }),
      );
      const results = yield* Effect.forEach(
        objects,
        (o, i) => (i % 2 === 0 ? a : b).mutate(review("CREATE", o)),
        { concurrency: "unbounded" },
      );
      const vlans = results.map((r, i) => {
        if (!r.response.allowed) fail(`c${i} refused: ${r.response.status?.message}`);
        return ((patched(objects[i], r).spec as Json).Options as Json).vlan as number;
      });
      assertEquals([...vlans].sort((x, y) => x - y), Array.from({ length: n }, (_, i) => 1000 + i));
      const held = yield* leases(a);
      assertEquals(held.length, n);
    })).pipe(Effect.provide(layerMemoryKube(server))),
  );
});

Deno.test("an exhausted range is refused naming the profile", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* mustCreate(env, tconf("tc", { hostDevices: [{ name: "ens4", vniType: "vxlan", vniRange: "10-11" }] }));
      assertEquals(vxlanOf(yield* mustCreate(env, tnet("a", { NetworkID: "a" }))), 10);
      assertEquals(vxlanOf(yield* mustCreate(env, tnet("b", { NetworkID: "b" }))), 11);
      yield* refused(
        env,
        tnet("c", { NetworkID: "c" }),
        /spec\.Options\.vxlan: no free vxlan left in ens4 \(vxlan 10-11\) of TenantConfig tc/,
      );
    })
  ));

const vxlanOf = (n: TenantNetwork) => n.spec.Options?.vxlan;

Deno.test("profiles are chosen least used first, ties by order; device pools only when asked for", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* mustCreate(
        env,
        tconf("tc", {
          hostDevices: [
            { name: "nokia.k8s.io/sriov_ens1f0", vniType: "vlan", vniRange: "100-200" },
            { name: "ens4" },
            { name: "ens5" },
          ],
          networkIds: { Flannel: "fl" },
        }),
      );
      const devices: Array<string | undefined> = [];
      for (const name of ["p", "q", "r"]) {
        const n = yield* mustCreate(env, tnet(name, { NetworkID: name }));
        devices.push(n.spec.Options?.host_device);
        yield* cached(env, name);
      }
      assertEquals(devices, ["ens4", "ens5", "ens4"]);
      const sriov = yield* mustCreate(
        env,
        tnet("vf", { NetworkID: "vf", NetworkType: "sriov", Options: { device_pool: "nokia.k8s.io/sriov_ens1f0" } }),
      );
      assertEquals([sriov.spec.Options?.device_pool, sriov.spec.Options?.host_device, vlanOf(sriov)], [
        "nokia.k8s.io/sriov_ens1f0",
        undefined,
        100,
      ]);
      const fl = yield* mustCreate(env, tnet("fl", { NetworkID: "mine", NetworkType: "flannel" }));
      assertEquals(fl.spec.NetworkID, "fl", "networkIds keys match NetworkType case-insensitively");
    })
  ));

Deno.test("without a TenantConfig a TenantNetwork is refused", () =>
  withWebhook((env) =>
    refused(env, tnet("a", { NetworkID: "a" }), /TenantNetwork default\/a: no TenantConfig exists/)
  ));

Deno.test("tenants cannot change what the webhook assigned; omitting it keeps it", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* mustCreate(env, tconf("tc", { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "1000-2000" }] }));
      const n = yield* mustCreate(env, tnet("t", { NetworkID: "t", Options: { cidr: "10.5.0.0/24" } }));
      const update = (spec: TenantNetwork["spec"]) =>
        env.kube.update(TenantNetworkResource, { ...n, spec }).pipe(
          Effect.map((o) => ({ ok: true as const, o })),
          Effect.catch((e: KubeError) => Effect.succeed({ ok: false as const, message: e.message })),
        );
      const changed = yield* update({ ...n.spec, Options: { ...n.spec.Options, vlan: 1500 } });
      if (changed.ok) return fail("changing the assigned VLAN was admitted");
      assertMatch(
        changed.message,
        /TenantNetwork default\/t: spec\.Options\.vlan: must not change \(1000 → 1500\): a TenantNetwork's physical parameters are assigned/,
      );
      const moved = yield* update({ ...n.spec, Options: { ...n.spec.Options, host_device: "ens5" } });
      assert(!moved.ok, "changing host_device is refused");
      // A replace with the tenant's original manifest (no host_device, no vlan) keeps the assignment.
      const replaced = yield* update({ NetworkID: "t", Options: { cidr: "10.6.0.0/24" } });
      if (!replaced.ok) return fail(replaced.message);
      assertEquals([replaced.o.spec.Options?.host_device, vlanOf(replaced.o), replaced.o.spec.Options?.cidr], [
        "ens4",
        1000,
        "10.6.0.0/24",
      ]);
      assertEquals(replaced.o.spec.Options?.allocation_pool, { start: "10.6.0.1", end: "10.6.0.254" });
    })
  ));

Deno.test("a TenantConfig range cannot shrink below VNIs in use", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* mustCreate(env, tconf("tc", { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "1000-2000" }] }));
      yield* mustCreate(env, tnet("user", { NetworkID: "u" }));
      yield* cached(env, "user");
      const stored = yield* Effect.orDie(env.kube.get(TenantConfigResource, "tc"));
      const withRange = (r: string) => ({ ...stored, hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: r }] });
      const shrink = yield* Effect.flip(env.kube.update(TenantConfigResource, withRange("1500-2000")));
      assertMatch(
        shrink.message,
        /TenantConfig tc: hostDevices\[0\]\.vniRange: would drop vlan 1000 of ens4, in use by TenantNetwork default\/user/,
      );
      const drop = yield* Effect.flip(
        env.kube.update(TenantConfigResource, { ...stored, hostDevices: [{ name: "ens5" }] }),
      );
      assertMatch(drop.message, /hostDevices: would drop vlan 1000 of ens4/);
      const kept = yield* Effect.orDie(env.kube.update(TenantConfigResource, withRange("900-1000,1900-2000")));
      assertEquals(kept.hostDevices?.[0].vniRange, "900-1000,1900-2000");
    })
  ));

Deno.test("a tenant copying another network's claim annotation and VLAN gets neither; the claim stays", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* mustCreate(env, tconf("tc", { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "1000-2000" }] }));
      const victim = yield* mustCreate(env, tnet("victim", { NetworkID: "v", Options: { host_device: "ens4" } }));
      const nonce = victim.metadata.annotations?.[VniClaimAnnotation] ?? fail("no claim annotation");
      const copy = {
        ...tnet("copycat", { NetworkID: "c", Options: { host_device: "ens4", vlan: 1000 } }),
        metadata: { name: "copycat", namespace: "default", annotations: { [VniClaimAnnotation]: nonce } },
      };
      yield* refused(env, copy, /spec\.Options\.vlan: cannot be set on a TenantNetwork/);
      // Same nonce in another namespace: refused too.
      yield* refused(
        env,
        { ...copy, metadata: { ...copy.metadata, name: "victim", namespace: "other" } },
        /cannot be set/,
      );
      const [lease] = yield* leases(env);
      assertEquals(parseHolder(lease.spec?.holderIdentity), { namespace: "default", name: "victim", nonce });
    })
  ));

Deno.test("a TenantNetwork with a generated name: the claim is confirmed with the name once stored", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* mustCreate(env, tconf("tc", { hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "1000-2000" }] }));
      const made = yield* mustCreate(env, {
        apiVersion: "danm.io/v1",
        kind: "TenantNetwork",
        metadata: { generateName: "gen-", namespace: "default" },
        spec: { NetworkID: "g" },
      });
      const name = made.metadata.name ?? fail("no generated name");
      assertMatch(name, /^gen-/);
      assertEquals(vlanOf(made), 1000);
      yield* eventuallyHolds(
        "the claim confirmed with the generated name",
        Effect.map(leases(env), (ls) => parseHolder(ls[0]?.spec?.holderIdentity)?.name === name),
      );
    })
  ));

Deno.test("claims: a holder matches by nonce, namespace and name; an unconfirmed claim by any name", () => {
  const h = { namespace: "a", name: "n", nonce: "x" };
  assert(holds(h, h), "itself");
  assert(!holds(h, { ...h, namespace: "b" }), "other namespace");
  assert(!holds(h, { ...h, name: "m" }), "other name");
  assert(!holds(h, { ...h, nonce: "y" }), "other nonce");
  assert(holds({ ...h, name: "" }, h), "an unconfirmed claim matches the generated name");
  assert(!holds({ ...h, name: "" }, h, true), "but not for the mutating webhook's own-output check");
});

Deno.test("a DANM-era TenantConfig (VLANs up to 5000, alloc) stays editable for metadata; content changes are checked", () =>
  withEnv((env) =>
    Effect.gen(function* () {
      // Stored before the webhook existed, as DANM wrote it.
      const legacy = yield* Effect.orDie(decodeDanmObject(
        "TenantConfig",
        tconf("old", {
          hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "4000-5000", alloc: "gAA=" }],
        }),
      ));
      const stored = yield* Effect.orDie(env.kube.create(TenantConfigResource, legacy));
      const off = registerWebhook(env);
      try {
        const labelled = yield* Effect.orDie(
          env.kube.update(TenantConfigResource, { ...stored, metadata: { ...stored.metadata, labels: { a: "b" } } }),
        );
        assertEquals(labelled.metadata.labels, { a: "b" });
        const changed = yield* Effect.flip(env.kube.update(TenantConfigResource, {
          ...labelled,
          hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "4000-4999", alloc: "gAA=" }],
        }));
        assertMatch(changed.message, /hostDevices\[0\]\.vniRange: vlan IDs must be between 1 and 4094, got 4999/);
        const fixed = yield* Effect.orDie(env.kube.update(TenantConfigResource, {
          ...labelled,
          hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "4000-4094", alloc: "gAA=" }],
        }));
        assertEquals(fixed.hostDevices?.[0].vniRange, "4000-4094", "an unchanged alloc may stay");
      } finally {
        off();
      }
    })
  ));
