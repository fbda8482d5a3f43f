// UPDATE and DELETE of networks through the in-memory apiserver with the webhook registered: immutability while
// pods are attached, reservations that a new addressing would strand, delete protection.
import { Effect } from "effect";
import {
  ClusterNetworkResource,
  type DanmEp,
  DanmEpResource,
  type DanmNet,
  DanmNetResource,
  decodeDanmObject,
} from "../../../core/api/danm.ts";
import { type IPBlock, ipBlockResource, labels } from "../../../core/api/ipam.ts";
import type { KubeError } from "../../../core/ports/kube.ts";
import { blockName } from "../../../core/ipam/allocator.ts";
import { assertEquals, assertMatch, fail } from "../../harness/assert.ts";
import { eventuallyHolds } from "../../harness/eventually.ts";
import { type Env, type Json, registerWebhook, withEnv } from "./harness.ts";

const withWebhook = <A>(body: (env: Env) => Effect.Effect<A, unknown, never>) =>
  withEnv((env) =>
    Effect.acquireUseRelease(Effect.sync(() => registerWebhook(env)), () => body(env), (off) => Effect.sync(off))
  );

const danmNet = (env: Env, name: string, spec: Json) =>
  Effect.gen(function* () {
    const obj = yield* Effect.orDie(
      decodeDanmObject("DanmNet", { metadata: { name, namespace: "default" }, spec }),
    );
    return yield* Effect.orDie(env.kube.create(DanmNetResource, obj));
  });

const ep = (name: string, network: string, pod: string, apiType?: "DanmNet" | "ClusterNetwork" | "", ns = "default") =>
  ({
    metadata: { name, namespace: ns },
    spec: {
      NetworkName: network,
      EndpointID: name,
      Interface: { Name: "eth1", Address: "10.7.0.5/24" },
      Pod: pod,
      ...(apiType === undefined ? {} : { apiType }),
    },
  }) satisfies DanmEp;

const attached = (env: Env, kind: "DanmNet" | "ClusterNetwork", name: string, n: number) =>
  eventuallyHolds(
    `${n} pods attached to ${name}`,
    Effect.map(env.view.attachedPods(kind, kind === "DanmNet" ? "default" : undefined, name), (p) => p.length === n),
  );

const update = (env: Env, net: DanmNet, spec: DanmNet["spec"]) =>
  env.kube.update(DanmNetResource, { ...net, spec }).pipe(
    Effect.map((o) => ({ ok: true as const, o })),
    Effect.catch((e: KubeError) => Effect.succeed({ ok: false as const, message: e.message })),
  );

const mustRefuse = (r: { ok: true } | { ok: false; message: string }, re: RegExp) => {
  if (r.ok) return fail(`admitted, expected ${re}`);
  assertMatch(r.message, re);
};

Deno.test("VLAN, VXLAN, host_device, device_pool, NetworkType and NetworkID are fixed while a pod is attached", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      const net = yield* danmNet(env, "ext", { NetworkID: "ext", Options: { host_device: "ens4", vlan: 500 } });
      yield* Effect.orDie(env.kube.create(DanmEpResource, ep("ep1", "ext", "p1", "")));
      yield* attached(env, "DanmNet", "ext", 1);
      mustRefuse(
        yield* update(env, net, { ...net.spec, Options: { ...net.spec.Options, vlan: 501 } }),
        /DanmNet default\/ext: spec\.Options\.vlan: must not change while pods are attached \(pod default\/p1\)/,
      );
      mustRefuse(
        yield* update(env, net, { ...net.spec, Options: { ...net.spec.Options, host_device: "ens5" } }),
        /spec\.Options\.host_device: must not change while pods are attached \(pod default\/p1\)/,
      );
      mustRefuse(
        yield* update(env, net, { ...net.spec, Options: { host_device: "ens4", vxlan: 9 } }),
        /spec\.Options\.vlan: must not change while pods are attached.*; spec\.Options\.vxlan: must not change/,
      );
      mustRefuse(
        yield* update(env, net, { ...net.spec, NetworkID: "ext2" }),
        /spec\.NetworkID: must not change while pods are attached/,
      );
      // Other fields may change.
      const mtu = yield* update(env, net, { ...net.spec, Options: { ...net.spec.Options, mtu: 9000 } });
      if (!mtu.ok) return fail(mtu.message);
      yield* Effect.orDie(env.kube.delete(DanmEpResource, "ep1", { namespace: "default" }));
      yield* attached(env, "DanmNet", "ext", 0);
      const moved = yield* update(env, mtu.o, { ...mtu.o.spec, Options: { ...mtu.o.spec.Options, vlan: 501 } });
      if (!moved.ok) return fail(`without pods the VLAN may change: ${moved.message}`);
      assertEquals(moved.o.spec.Options?.vlan, 501);
    })
  ));

Deno.test("UPDATE is validated like CREATE; metadata-only updates and unchanged legacy fields pass", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      const net = yield* danmNet(env, "u", { NetworkID: "u", Options: { host_device: "ens4", vlan: 5 } });
      mustRefuse(
        yield* update(env, net, { ...net.spec, Options: { ...net.spec.Options, vxlan: 6 } }),
        /DanmNet default\/u: spec\.Options\.vxlan: vlan and vxlan are mutually exclusive/,
      );
      mustRefuse(
        yield* update(env, net, { ...net.spec, Options: { ...net.spec.Options, alloc: "gAA=" } }),
        /spec\.Options\.alloc: allocation state cannot be set/,
      );
      // A metadata-only update is not re-validated.
      const labelled = yield* Effect.orDie(
        env.kube.update(DanmNetResource, { ...net, metadata: { ...net.metadata, labels: { team: "a" } } }),
      );
      assertEquals(labelled.metadata.labels, { team: "a" });
    })
  ));

Deno.test("cidr, net6 and pool changes that would strand reservations are refused", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      const net = yield* danmNet(env, "r", { NetworkID: "r", Options: { cidr: "10.7.0.0/24" } });
      const uid = net.metadata.uid ?? fail("no uid");
      const ref = { kind: "DanmNet" as const, namespace: "default", name: "r", uid };
      const reservation = (pod: string, isStatic: boolean) => ({
        pod,
        podUid: `${pod}-uid`,
        sandbox: "sb",
        iface: "eth1",
        node: "n1",
        since: new Date().toISOString(),
        ...(isStatic ? { static: true } : {}),
      });
      const block: IPBlock = {
        metadata: { name: blockName(ref, 4, 0n), labels: { [labels.networkUid]: uid } },
        spec: {
          network: ref,
          family: "IPv4",
          cidr: "10.7.0.0/26",
          reservations: { "5": reservation("default/p1", false), "40": reservation("default/p2", true) },
        },
      };
      yield* Effect.orDie(env.kube.create(ipBlockResource, block));
      const withOptions = (o: Json) => ({ ...net.spec, Options: o as DanmNet["spec"]["Options"] });
      mustRefuse(
        yield* update(env, net, withOptions({ cidr: "10.8.0.0/24" })),
        /DanmNet default\/r: spec\.Options\.cidr: 10\.8\.0\.0\/24 would strand the reservation of 10\.7\.0\.5 \(pod default\/p1, interface eth1\)/,
      );
      mustRefuse(
        yield* update(env, net, withOptions({ cidr: "10.6.0.0/15" })),
        /spec\.Options\.cidr: 10\.6\.0\.0\/15 would move the reservation of 10\.7\.0\.5 .* out of its block 10\.7\.0\.0\/26/,
      );
      mustRefuse(
        yield* update(
          env,
          net,
          withOptions({ cidr: "10.7.0.0/24", allocation_pool: { start: "10.7.0.10", end: "10.7.0.200" } }),
        ),
        /spec\.Options\.allocation_pool: the new pool would leave the dynamically allocated 10\.7\.0\.5 outside it/,
      );
      mustRefuse(
        yield* update(env, net, withOptions({ cidr: "10.7.0.0/24", routes: { "10.9.0.0/16": "10.7.0.40" } })),
        /10\.7\.0\.40 would become the network, broadcast or a gateway address but is reserved \(pod default\/p2/,
      );
      // Static reservations may sit outside the pool; a larger CIDR on the same base keeps every block.
      const pool = yield* update(
        env,
        net,
        withOptions({ cidr: "10.7.0.0/24", allocation_pool: { start: "10.7.0.2", end: "10.7.0.30" } }),
      );
      if (!pool.ok) return fail(pool.message);
      const grown = yield* update(
        env,
        pool.o,
        withOptions({ cidr: "10.7.0.0/23", allocation_pool: { start: "10.7.0.2", end: "10.7.1.200" } }),
      );
      if (!grown.ok) return fail(grown.message);
      assertEquals(grown.o.spec.Options?.cidr, "10.7.0.0/23");
    })
  ));

Deno.test("a network cannot be deleted while a pod is attached, naming the pod", () =>
  withWebhook((env) =>
    Effect.gen(function* () {
      yield* danmNet(env, "d", { NetworkID: "d" });
      const cn = yield* Effect.orDie(
        decodeDanmObject("ClusterNetwork", { metadata: { name: "c" }, spec: { NetworkID: "c" } }),
      );
      yield* Effect.orDie(env.kube.create(ClusterNetworkResource, cn));
      yield* Effect.orDie(env.kube.create(DanmEpResource, ep("e1", "d", "web-0", "DanmNet")));
      yield* Effect.orDie(env.kube.create(DanmEpResource, ep("e2", "c", "db-0", "ClusterNetwork", "kube-public")));
      yield* attached(env, "DanmNet", "d", 1);
      yield* attached(env, "ClusterNetwork", "c", 1);
      const del = (rt: typeof DanmNetResource | typeof ClusterNetworkResource, name: string, dryRun = false) =>
        Effect.flip(env.kube.delete(rt as typeof DanmNetResource, name, { namespace: "default", dryRun }));
      assertMatch(
        (yield* del(DanmNetResource, "d")).message,
        /DanmNet default\/d: cannot be deleted while pods are attached \(pod default\/web-0\)/,
      );
      assertMatch(
        (yield* del(DanmNetResource, "d", true)).message,
        /cannot be deleted while pods are attached/,
      );
      assertMatch(
        (yield* Effect.flip(env.kube.delete(ClusterNetworkResource, "c"))).message,
        /ClusterNetwork c: cannot be deleted while pods are attached \(pod kube-public\/db-0\)/,
      );
      // A DanmNet of the same name in another namespace is not attached.
      yield* Effect.orDie(env.kube.delete(DanmEpResource, "e1", { namespace: "default" }));
      yield* attached(env, "DanmNet", "d", 0);
      yield* Effect.orDie(env.kube.delete(DanmNetResource, "d", { namespace: "default" }));
    })
  ));

Deno.test("a DANM-era network carrying alloc stays editable as long as alloc is left alone", () =>
  withEnv((env) =>
    Effect.gen(function* () {
      const legacy = yield* Effect.orDie(decodeDanmObject("DanmNet", {
        metadata: { name: "old", namespace: "default" },
        spec: { NetworkID: "old", NetworkType: "ipvlan", Options: { cidr: "10.9.0.0/24", alloc: "gAAAAAE=" } },
      }));
      const stored = yield* Effect.orDie(env.kube.create(DanmNetResource, legacy));
      const off = registerWebhook(env);
      try {
        const edited = yield* update(env, stored, { ...stored.spec, Options: { ...stored.spec.Options, mtu: 1400 } });
        if (!edited.ok) return fail(edited.message);
        assertEquals(edited.o.spec.Options?.alloc, "gAAAAAE=");
        mustRefuse(
          yield* update(env, edited.o, { ...edited.o.spec, Options: { ...edited.o.spec.Options, alloc: "gAAAAAM=" } }),
          /spec\.Options\.alloc: allocation state cannot be set/,
        );
      } finally {
        off();
      }
    })
  ));
