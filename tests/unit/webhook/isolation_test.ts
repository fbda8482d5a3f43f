// Tenant isolation at admission: a network whose host interface (vx_<NetworkID>, <NetworkID>.<vlan>) would be another
// network's with another VNI, VLAN or host_device is refused — DANM let it in and netwatcher kept the older network's
// interface, so the new network's pods landed on the other segment (danm-spec §5.6). Through the in-memory apiserver
// with the webhook registered, so the caches and the claims are the real ones.
import { Effect } from "effect";
import {
  ClusterNetworkResource,
  type DanmKind,
  DanmNetResource,
  decodeDanmObject,
  TenantConfigResource,
  type TenantNetwork,
  TenantNetworkResource,
} from "../../../core/api/danm.ts";
import type { Kube, KubeError } from "../../../core/ports/kube.ts";
import { assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { eventuallyHolds } from "../../harness/eventually.ts";
import { type Env, type Json, registerWebhook, withEnv } from "./harness.ts";
import { hostInterfaceConflicts } from "../../../core/webhook/networks.ts";

const resources = {
  DanmNet: DanmNetResource,
  TenantNetwork: TenantNetworkResource,
  ClusterNetwork: ClusterNetworkResource,
  TenantConfig: TenantConfigResource,
} as const;

const obj = (kind: keyof typeof resources, name: string, body: Json, namespace?: string): Json => ({
  apiVersion: "danm.io/v1",
  kind,
  metadata: { name, ...(namespace ? { namespace } : {}) },
  ...body,
});

/** Creates through the Kube port (the registered webhook admits it); the stored object or the refusal. */
const create = (env: Env, o: Json) =>
  Effect.gen(function* () {
    const kind = o.kind as keyof typeof resources;
    const decoded = yield* Effect.orDie(decodeDanmObject(kind as DanmKind, o));
    const created = yield* (env.kube.create(resources[kind] as typeof TenantNetworkResource, decoded as TenantNetwork)
      .pipe(Effect.map((x) => ({ ok: true as const, object: x }))) as Effect.Effect<
        { ok: true; object: TenantNetwork },
        KubeError
      >).pipe(Effect.catch((e: KubeError) => Effect.succeed({ ok: false as const, message: e.message })));
    if (created.ok) {
      // Later requests see it only once the webhook's cache has it.
      yield* eventuallyHolds(
        `${kind} ${created.object.metadata.name} in the cache`,
        Effect.map(env.view.networks, (all) =>
          kind === "TenantConfig" || all.some((n) => n.object.metadata.uid === created.object.metadata.uid)),
      );
    }
    return created;
  });

const admitted = (env: Env, o: Json) =>
  Effect.flatMap(create(env, o), (r) => r.ok ? Effect.succeed(r.object) : Effect.sync(() => fail(r.message)));

const refused = (env: Env, o: Json, re: RegExp) =>
  Effect.flatMap(create(env, o), (r) =>
    Effect.sync(() => {
      if (r.ok) fail(`${(o.metadata as Json).name} was admitted, expected ${re}`);
      else assertMatch(r.message, re);
    }));

const withWebhook = <A>(body: (env: Env) => Effect.Effect<A, unknown, Kube>) =>
  withEnv((env) =>
    Effect.acquireUseRelease(Effect.sync(() => registerWebhook(env)), () => body(env), (off) => Effect.sync(off))
  );

Deno.test("isolation: two tenants choosing one NetworkID for VXLAN TenantNetworks — the second is refused, its VNI freed", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* admitted(
        env,
        obj("TenantConfig", "tc", { hostDevices: [{ name: "ens4", vniType: "vxlan", vniRange: "1000-1010" }] }),
      );
      const a = yield* admitted(env, obj("TenantNetwork", "net", { spec: { NetworkID: "shared" } }, "tenant-a"));
      assertEquals(a.spec.Options?.vxlan, 1000);
      yield* refused(
        env,
        obj("TenantNetwork", "net", { spec: { NetworkID: "shared" } }, "tenant-b"),
        /spec\.NetworkID: host interface vx_shared is already claimed by the older TenantNetwork tenant-a\/net \(VNI 1000 on ens4 \(multicast\)\); this network asks for VNI 1001 on ens4/,
      );
      // The refused request's claim was given back: the next tenant gets 1001.
      const c = yield* admitted(env, obj("TenantNetwork", "net", { spec: { NetworkID: "other" } }, "tenant-c"));
      assertEquals(c.spec.Options?.vxlan, 1001);
    })
  ));

Deno.test("isolation: DanmNets and ClusterNetworks share a host interface only with the same VLAN/VNI on the same device", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      const spec = (Options: Json, NetworkID = "ext") => ({ spec: { NetworkID, NetworkType: "ipvlan", Options } });
      yield* admitted(env, obj("DanmNet", "a", spec({ host_device: "ens4", vlan: 100, cidr: "10.1.0.0/24" }), "ns-a"));
      // The same interface, the same parameters: shared, as in DANM.
      yield* admitted(env, obj("DanmNet", "b", spec({ host_device: "ens4", vlan: 100, cidr: "10.2.0.0/24" }), "ns-b"));
      // ext.100 on another parent: refused.
      yield* refused(
        env,
        obj("DanmNet", "c", spec({ host_device: "ens5", vlan: 100 }), "ns-c"),
        /spec\.NetworkID: host interface ext\.100 is already claimed by the older DanmNet ns-a\/a \(VLAN 100 on ens4\); this network asks for VLAN 100 on ens5/,
      );
      // VLAN 100 on ens4 under another name: the kernel has it once per parent.
      yield* refused(
        env,
        obj("ClusterNetwork", "d", spec({ host_device: "ens4", vlan: 100 }, "other")),
        /spec\.Options\.vlan: VLAN 100 on ens4 is already used by host interface ext\.100 of the older DanmNet ns-a\/a/,
      );
      // VXLAN: vx_ext with another VNI is refused, the same VNI on another device too.
      yield* admitted(env, obj("ClusterNetwork", "v1", spec({ host_device: "ens4", vxlan: 600 }, "vx")));
      yield* refused(env, obj("ClusterNetwork", "v2", spec({ host_device: "ens4", vxlan: 700 }, "vx")), /vx_vx/);
      yield* refused(env, obj("ClusterNetwork", "v3", spec({ host_device: "ens5", vxlan: 600 }, "vx")), /vx_vx/);
      // Changing an admitted network onto another's interface is refused as well.
      const b = yield* Effect.orDie(env.kube.get(DanmNetResource, "b", { namespace: "ns-b" }));
      const { vlan: _vlan, ...options } = b.spec.Options ?? {};
      const moved = yield* Effect.flip(env.kube.update(DanmNetResource, {
        ...b,
        spec: { ...b.spec, NetworkID: "vx", Options: { ...options, vxlan: 900 } },
      }));
      assertMatch(moved.message, /host interface vx_vx is already claimed/);
    })
  ));

Deno.test("isolation: an update moving an OLDER network onto a younger one's host interface is refused; an update that keeps its interfaces keeps its age", () => {
  const net = (name: string, created: string, Options: Json) =>
    Effect.runSync(Effect.orDie(decodeDanmObject("DanmNet", {
      apiVersion: "danm.io/v1",
      kind: "DanmNet",
      metadata: { name, namespace: "ns", creationTimestamp: created },
      spec: { NetworkID: "vx", NetworkType: "ipvlan", Options },
    })));
  const older = net("older", "2026-01-01T00:00:00Z", { host_device: "ens4", vxlan: 900 });
  const younger = net("younger", "2026-06-01T00:00:00Z", { host_device: "ens4", vxlan: 600 });
  const others = [{ kind: "DanmNet" as const, object: younger }];
  // `older` asks for vx_vx only now, by this update (it had a VLAN before): the interface is younger's.
  const before = net("older", "2026-01-01T00:00:00Z", { host_device: "ens4", vlan: 7 });
  const moved = hostInterfaceConflicts(older, "DanmNet", others, before);
  assertEquals(moved.length, 1);
  assertMatch(moved[0].message, /host interface vx_vx is already claimed by the older DanmNet ns\/younger/);
  // The same interface as before the update (e.g. a label change): its age stands, nothing to refuse for it.
  assertEquals(hostInterfaceConflicts(older, "DanmNet", others, older), []);
  // Created now: the youngest whatever its timestamp says.
  assertEquals(hostInterfaceConflicts(older, "DanmNet", others).length, 1);
});
