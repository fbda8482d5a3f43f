// ReservedIP admission and TenantConfig.allowedClusterNetworks (danm-spec Appendix A) through the in-memory apiserver
// with the webhook registered: one test per rule, each with the refusal's message and an admitted case.
import { Effect } from "effect";
import {
  ClusterNetworkResource,
  DanmNetResource,
  decodeDanmObject,
  TenantConfigResource,
  TenantNetworkResource,
} from "../../../core/api/danm.ts";
import { type IPBlock, ipBlockResource, labels } from "../../../core/api/ipam.ts";
import { type ReservedIP, reservedIpResource } from "../../../core/api/reservedip.ts";
import type { KubeError } from "../../../core/ports/kube.ts";
import { blockName } from "../../../core/ipam/allocator.ts";
import { assertMatch, fail } from "../../harness/assert.ts";
import { type Env, type Json, registerWebhook, withEnv } from "./harness.ts";

const rip = (name: string, network: Json, ips: Json[], ns = "default"): ReservedIP =>
  ({ metadata: { name, namespace: ns }, spec: { network, ips } }) as unknown as ReservedIP;

const create = (env: Env, r: ReservedIP) =>
  env.kube.create(reservedIpResource, r).pipe(
    Effect.map(() => undefined),
    Effect.catch((e: KubeError) => Effect.succeed(e.message)),
  );
const admitted = (env: Env, r: ReservedIP) =>
  Effect.flatMap(create(env, r), (m) => Effect.sync(() => m === undefined || fail(`${r.metadata.name}: ${m}`)));
const refused = (env: Env, r: ReservedIP, re: RegExp) =>
  Effect.flatMap(create(env, r), (m) =>
    Effect.sync(() => {
      if (m === undefined) return fail(`${r.metadata.name} admitted, expected ${re}`);
      assertMatch(m, new RegExp(`ReservedIP ${r.metadata.namespace}/${r.metadata.name}: `));
      assertMatch(m, re);
    }));

const setup = (env: Env) =>
  Effect.gen(function* () {
    const make = (kind: "DanmNet" | "TenantNetwork" | "ClusterNetwork", name: string, spec: Json) =>
      Effect.gen(function* () {
        const metadata = kind === "ClusterNetwork" ? { name } : { name, namespace: "default" };
        if (kind === "DanmNet") {
          yield* env.kube.create(DanmNetResource, yield* decodeDanmObject("DanmNet", { metadata, spec }));
        } else if (kind === "TenantNetwork") {
          yield* env.kube.create(TenantNetworkResource, yield* decodeDanmObject("TenantNetwork", { metadata, spec }));
        } else {
          yield* env.kube.create(ClusterNetworkResource, yield* decodeDanmObject("ClusterNetwork", { metadata, spec }));
        }
      }).pipe(Effect.orDie);
    yield* Effect.orDie(env.kube.create(TenantConfigResource, {
      metadata: { name: "tc" },
      hostDevices: [{ name: "ens4", vniType: "vlan", vniRange: "100-200" }],
      allowedClusterNetworks: [{ name: "shared", privileges: ["reservedIp"] }, { name: "admin" }],
    }));
    yield* make("TenantNetwork", "tn", {
      NetworkID: "tn",
      NetworkType: "macvlan",
      Options: {
        host_device: "ens4",
        cidr: "10.70.0.0/24",
        net6: "2001:db8:70::/64",
        routes: { "10.9.0.0/16": "10.70.0.1" },
      },
    });
    yield* make("DanmNet", "l2", { NetworkID: "l2", Options: { host_device: "ens4" } });
    yield* make("ClusterNetwork", "shared", {
      NetworkID: "shared",
      Options: { host_device: "ens4", cidr: "10.71.0.0/24" },
    });
    yield* make("ClusterNetwork", "admin", {
      NetworkID: "admin",
      Options: { host_device: "ens4", cidr: "10.72.0.0/24" },
    });
  });

const withReservedIps = <A>(body: (env: Env) => Effect.Effect<A, unknown, never>) =>
  withEnv((env) =>
    Effect.acquireUseRelease(
      Effect.sync(() => registerWebhook(env)),
      () => Effect.andThen(setup(env), body(env)),
      (off) => Effect.sync(off),
    )
  );

const tn = { name: "tn" }; // type defaults to TenantNetwork

Deno.test("reservedip: addresses inside the network's cidr/net6 are admitted, one per family", () =>
  withReservedIps((env) =>
    Effect.gen(function* () {
      yield* admitted(env, rip("both", tn, [{ address: "10.70.0.50" }, { address: "2001:db8:70::50" }]));
      yield* admitted(env, rip("cn", { name: "shared", type: "ClusterNetwork" }, [{ address: "10.71.0.9" }], "other"));
      yield* refused(
        env,
        rip("two4", tn, [{ address: "10.70.0.51" }, { address: "10.70.0.52" }]),
        /spec\.ips\[1\]\.address: a second IPv4 address \(spec\.ips\[0\] has one\): at most one IPv4 and one IPv6/,
      );
    })
  ));

Deno.test("reservedip: the network must exist, in the ReservedIP's namespace for namespaced kinds", () =>
  withReservedIps((env) =>
    Effect.gen(function* () {
      yield* refused(
        env,
        rip("nonet", { name: "nope" }, [{ address: "10.70.0.5" }]),
        /spec\.network\.name: TenantNetwork default\/nope does not exist/,
      );
      yield* refused(
        env,
        rip("elsewhere", tn, [{ address: "10.70.0.5" }], "other"),
        /TenantNetwork other\/tn does not exist/,
      );
    })
  ));

Deno.test("reservedip: a ClusterNetwork needs the reservedIp privilege in allowedClusterNetworks", () =>
  withReservedIps((env) =>
    Effect.gen(function* () {
      yield* refused(
        env,
        rip("admin", { name: "admin", type: "ClusterNetwork" }, [{ address: "10.72.0.5" }]),
        /spec\.network\.name: ClusterNetwork admin: TenantConfig tc does not grant the reservedIp privilege on it/,
      );
    })
  ));

Deno.test("reservedip: only addresses of an L3 network, inside it, not its network/broadcast/gateway address", () =>
  withReservedIps((env) =>
    Effect.gen(function* () {
      yield* refused(
        env,
        rip("l2", { name: "l2", type: "DanmNet" }, [{ address: "10.1.1.1" }]),
        /spec\.ips\[0\]\.address: DanmNet default\/l2 has no cidr: it has no IPv4 address to reserve/,
      );
      yield* refused(
        env,
        rip("out", tn, [{ address: "10.99.0.5" }]),
        /10\.99\.0\.5 is not inside cidr 10\.70\.0\.0\/24 of TenantNetwork default\/tn/,
      );
      yield* refused(
        env,
        rip("out6", tn, [{ address: "2001:db8:99::5" }]),
        /2001:db8:99::5 is not inside net6 2001:db8:70::\/64/,
      );
      for (const gw of ["10.70.0.1", "10.70.0.0", "10.70.0.255"]) {
        yield* refused(env, rip("gw", tn, [{ address: gw }]), /is the network, broadcast or a route gateway address/);
      }
      // Not an address at all: the schema (the CRD's format, on a real apiserver) refuses it before the webhook.
      assertMatch((yield* create(env, rip("bad", tn, [{ address: "10.70.0.300" }]))) ?? "", /an IPv4 or IPv6 address/);
    })
  ));

Deno.test("reservedip: an address another ReservedIP of the network keeps is refused; shareable is refused", () =>
  withReservedIps((env) =>
    Effect.gen(function* () {
      yield* admitted(env, rip("first", tn, [{ address: "10.70.0.60" }]));
      yield* refused(
        env,
        rip("second", tn, [{ address: "10.70.0.60" }]),
        /10\.70\.0\.60 is already kept by ReservedIP default\/first/,
      );
      yield* refused(
        env,
        rip("lb", tn, [{ address: "10.70.0.61", shareable: true }]),
        /spec\.ips\[0\]\.shareable: shareable addresses are not supported/,
      );
    })
  ));

Deno.test("reservedip: deleting is refused while a pod holds one of its addresses, naming the pod", () =>
  withReservedIps((env) =>
    Effect.gen(function* () {
      yield* admitted(env, rip("held", tn, [{ address: "10.70.0.7" }]));
      const n = yield* Effect.orDie(env.kube.get(TenantNetworkResource, "tn", { namespace: "default" }));
      const ref = { kind: "TenantNetwork" as const, namespace: "default", name: "tn", uid: n.metadata.uid ?? "" };
      const block: IPBlock = {
        metadata: { name: blockName(ref, 4, 0n), labels: { [labels.networkUid]: ref.uid } },
        spec: {
          network: ref,
          family: "IPv4",
          cidr: "10.70.0.0/26",
          reservations: {
            "7": {
              pod: "default/lb-0",
              podUid: "u",
              sandbox: "s",
              iface: "eth1",
              node: "n",
              since: "2026-01-01T00:00:00Z",
            },
          },
        },
      };
      const stored = yield* Effect.orDie(env.kube.create(ipBlockResource, block));
      const del = yield* env.kube.delete(reservedIpResource, "held", { namespace: "default" }).pipe(
        Effect.map(() => "deleted"),
        Effect.catch((e: KubeError) => Effect.succeed(e.message)),
      );
      assertMatch(del, /10\.70\.0\.7 is in use by pod default\/lb-0 \(interface eth1\): delete the pod first/);
      yield* Effect.orDie(env.kube.delete(ipBlockResource, stored.metadata.name ?? ""));
      yield* Effect.orDie(env.kube.delete(reservedIpResource, "held", { namespace: "default" }));
    })
  ));

Deno.test("tenantconfig: allowedClusterNetworks names each ClusterNetwork once, with known privileges", () =>
  withReservedIps((env) =>
    Effect.gen(function* () {
      const tc = (name: string, allowed: Json[]) =>
        env.kube.create(TenantConfigResource, { metadata: { name }, allowedClusterNetworks: allowed } as never).pipe(
          Effect.map(() => undefined),
          Effect.catch((e: KubeError) => Effect.succeed(e.message)),
        );
      // Only allowedClusterNetworks: a TenantConfig of its own.
      const ok = yield* tc("only-allowed", [{ name: "shared", privileges: ["reservedIp"] }]);
      if (ok !== undefined) fail(ok);
      assertMatch(
        (yield* tc("dup", [{ name: "a" }, { name: "a" }])) ?? "",
        /allowedClusterNetworks\[1\]\.name: a is already listed \(allowedClusterNetworks\[0\]\)/,
      );
      assertMatch(
        (yield* tc("priv", [{ name: "a", privileges: ["reservedIP"] }])) ?? "",
        /allowedClusterNetworks\[0\]\.privileges\[0\]: "reservedIP" is no privilege \(known: reservedIp\)/,
      );
      assertMatch((yield* tc("noname", [{ name: "" }])) ?? "", /allowedClusterNetworks\[0\]\.name: must name/);
    })
  ));
