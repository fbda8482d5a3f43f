// svcwatcher against a real kube-apiserver: exact Endpoints and EndpointSlices (dual-stack, not-ready, NAD
// network-status, named target ports), each kind of change reflected, repair after a restart, leader handover,
// the RBAC manifest sufficing, and the binary's flags, metrics and graceful stop.
import * as k8s from "@kubernetes/client-node";
// @ts-types="npm:@types/js-yaml@4.0.9"
import yaml from "js-yaml";
import { Effect, Layer } from "effect";
import { layerLiveKube } from "../../../adapters/kube/live.ts";
import { DanmEpResource } from "../../../core/api/danm.ts";
import {
  EndpointSliceResource,
  EndpointsResource,
  EventResource,
  LeaseResource,
  type Pod,
  PodResource,
  ServiceResource,
} from "../../../core/api/k8s.ts";
import { Kube, type KubeService } from "../../../core/ports/kube.ts";
import { assert, assertEquals, fail } from "../../harness/assert.ts";
import { repoRoot } from "../../harness/proc.ts";
import { eventuallySucceeds } from "../../harness/eventually.ts";
import { createPod, danmEpFor, danmService, podSpec, type Replica, setReady, type SvcEnv, withSvcEnv } from "./env.ts";

interface Fixture {
  readonly pods: Record<string, Pod>;
  readonly svcUid: string;
}

/**
 * Service lb selects app=lb on DanmNet "internal". a: ready, dual-stack, hostname; b: not ready; c: ready,
 * attached through a NAD (network-status only); d: wrong labels; e: on another network.
 */
const setup = (env: SvcEnv) =>
  env.run(Effect.gen(function* () {
    const kube = yield* Kube;
    const { ns } = env;
    const svc = yield* kube.create(
      ServiceResource,
      danmService(ns, "lb", { "danm.io/selector": '{"app":"lb"}', "danm.io/network": "internal" }),
    );
    const pods: Record<string, Pod> = {};
    pods.a = yield* createPod(kube, podSpec(ns, "a", { hostname: "a" }), true);
    pods.b = yield* createPod(kube, podSpec(ns, "b", { node: "node-b" }), false);
    pods.c = yield* createPod(
      kube,
      podSpec(ns, "c", {
        annotations: {
          "k8s.v1.cni.cncf.io/network-status": JSON.stringify([
            { name: "k8s-pod-network", ips: ["10.244.0.3"], default: true },
            { name: `${ns}/internal`, interface: "net1", ips: ["192.168.7.3", "fd01::3"] },
          ]),
        },
      }),
      true,
    );
    pods.d = yield* createPod(kube, podSpec(ns, "d", { labels: { app: "other" } }), true);
    pods.e = yield* createPod(kube, podSpec(ns, "e"), true);
    yield* kube.create(DanmEpResource, danmEpFor(pods.a, "ep-a", { v4: "10.10.0.1/24", v6: "fd10::1/64" }));
    yield* kube.create(DanmEpResource, danmEpFor(pods.b, "ep-b", { v4: "10.10.0.2/24", v6: "none" }));
    yield* kube.create(DanmEpResource, danmEpFor(pods.d, "ep-d", { v4: "10.10.0.4/24" }));
    yield* kube.create(DanmEpResource, danmEpFor(pods.e, "ep-e", { network: "external", v4: "10.20.0.5/24" }));
    return { pods, svcUid: svc.metadata.uid! } satisfies Fixture;
  }));

const ref = (p: Pod) => ({
  kind: "Pod",
  namespace: p.metadata.namespace!,
  name: p.metadata.name!,
  uid: p.metadata.uid!,
});

/** The Endpoints subsets and the managed content of the slices of `svc`, as stored. */
const observed = (kube: KubeService, ns: string, svc = "lb") =>
  Effect.gen(function* () {
    const ep = yield* Effect.result(kube.get(EndpointsResource, svc, { namespace: ns }));
    const slices = yield* kube.list(EndpointSliceResource, {
      namespace: ns,
      labelSelector: `kubernetes.io/service-name=${svc},endpointslice.kubernetes.io/managed-by=svcwatcher.danm.io`,
    });
    return {
      endpoints: ep._tag === "Success"
        ? { labels: ep.success.metadata.labels, subsets: ep.success.subsets ?? [] }
        : undefined,
      slices: slices.items
        .map((s) => ({
          addressType: s.addressType,
          labels: s.metadata.labels,
          ownerReferences: s.metadata.ownerReferences,
          endpoints: s.endpoints,
          ports: s.ports,
        }))
        .sort((x, y) => x.addressType.localeCompare(y.addressType)),
    };
  });

const http = [{ name: "http", port: 8080, protocol: "TCP" as const }];
const cond = (ready: boolean, serving: boolean, terminating: boolean) => ({ ready, serving, terminating });

function expectedBase(f: Fixture) {
  const { a, b, c } = f.pods;
  const addr = (ip: string, p: Pod, hostname?: string) => ({
    ip,
    ...(hostname ? { hostname } : {}),
    nodeName: p.spec.nodeName!,
    targetRef: ref(p),
  });
  const ep = (ip: string, p: Pod, conditions: ReturnType<typeof cond>, hostname?: string) => ({
    addresses: [ip],
    conditions,
    ...(hostname ? { hostname } : {}),
    nodeName: p.spec.nodeName!,
    targetRef: ref(p),
  });
  const sliceMeta = {
    labels: {
      "kubernetes.io/service-name": "lb",
      "endpointslice.kubernetes.io/managed-by": "svcwatcher.danm.io",
      "service.kubernetes.io/headless": "",
    },
    ownerReferences: [{ apiVersion: "v1", kind: "Service", name: "lb", uid: f.svcUid, controller: true }],
  };
  return {
    endpoints: {
      labels: {
        "endpoints.danm.io/managed-by": "svcwatcher.danm.io",
        "endpointslice.kubernetes.io/skip-mirror": "true",
        "service.kubernetes.io/headless": "",
      },
      subsets: [{
        addresses: [
          addr("10.10.0.1", a, "a"),
          addr("192.168.7.3", c),
          addr("fd01::3", c),
          addr("fd10::1", a, "a"),
        ],
        notReadyAddresses: [addr("10.10.0.2", b)],
        ports: http,
      }],
    },
    slices: [
      {
        addressType: "IPv4" as const,
        ...sliceMeta,
        endpoints: [
          ep("10.10.0.1", a, cond(true, true, false), "a"),
          ep("10.10.0.2", b, cond(false, false, false)),
          ep("192.168.7.3", c, cond(true, true, false)),
        ],
        ports: http,
      },
      {
        addressType: "IPv6" as const,
        ...sliceMeta,
        endpoints: [ep("fd01::3", c, cond(true, true, false)), ep("fd10::1", a, cond(true, true, false), "a")],
        ports: http,
      },
    ],
  };
}

const converge = (env: SvcEnv, want: unknown, svc = "lb", ms = 15_000) =>
  eventuallySucceeds(() =>
    env.run(Effect.gen(function* () {
      assertEquals(yield* observed(yield* Kube, env.ns, svc), want);
    })), ms);

/** The compact published state: Endpoints ready/not-ready IPs and slice endpoints with R(eady)S(erving)T(erm). */
const compact = (kube: KubeService, ns: string) =>
  Effect.map(observed(kube, ns), (o) => ({
    ready: o.endpoints?.subsets.flatMap((s) => (s.addresses ?? []).map((a) => a.ip)).sort(),
    notReady: o.endpoints?.subsets.flatMap((s) => (s.notReadyAddresses ?? []).map((a) => a.ip)).sort(),
    slices: o.slices.flatMap((s) =>
      s.endpoints.map((e) =>
        `${e.addresses[0]} ${e.conditions?.ready ? "R" : "-"}${e.conditions?.serving ? "S" : "-"}${
          e.conditions?.terminating ? "T" : "-"
        }`
      )
    ).sort(),
  }));

const expectCompact = (env: SvcEnv, want: { ready?: string[]; notReady?: string[]; slices: string[] }) =>
  eventuallySucceeds(() =>
    env.run(Effect.gen(function* () {
      assertEquals(yield* compact(yield* Kube, env.ns), want);
    }))
  );

const leaderOf = (r: Replica) => r.metrics.leader.get({ identity: r.identity }) === 1;

Deno.test("svcwatcher: Endpoints and EndpointSlices match exactly (dual-stack, not-ready, NAD, named port); a restart writes nothing", () =>
  withSvcEnv(async (env) => {
    const f = await setup(env);
    const first = env.start("first");
    await converge(env, expectedBase(f));
    await first.stop();
    // What the apiserver stored (defaults included) compares equal to what svcwatcher wants: no write at all.
    const second = env.start("second");
    await eventuallySucceeds(() =>
      Promise.resolve(assert(second.metrics.syncs.get({ result: "success" }) >= 1, "no sync yet"))
    );
    await new Promise((r) => setTimeout(r, 1_000));
    const writes = second.metrics.render().split("\n").filter((l) => l.startsWith("danm_svcwatcher_writes_total"));
    assertEquals(writes, []);
    await converge(env, expectedBase(f));
  }));

Deno.test("svcwatcher: readiness, label, pod deletion and Service annotation changes are each reflected", () =>
  withSvcEnv(async (env) => {
    const f = await setup(env);
    env.start("only");
    await converge(env, expectedBase(f));
    const kube = await env.kube();
    const { ns } = env;
    // Readiness: b becomes ready.
    await env.run(setReady(kube, f.pods.b, true));
    await expectCompact(env, {
      ready: ["10.10.0.1", "10.10.0.2", "192.168.7.3", "fd01::3", "fd10::1"],
      notReady: [],
      slices: ["10.10.0.1 RS-", "10.10.0.2 RS-", "192.168.7.3 RS-", "fd01::3 RS-", "fd10::1 RS-"],
    });
    // Labels: a loses app=lb; its DanmEp's labels follow and its addresses go.
    await env.run(
      kube.patch(PodResource, "a", { type: "merge", patch: { metadata: { labels: { app: null, tier: "x" } } } }, {
        namespace: ns,
      }),
    );
    await eventuallySucceeds(() =>
      env.run(Effect.gen(function* () {
        const ep = yield* kube.get(DanmEpResource, "ep-a", { namespace: ns });
        assertEquals(ep.metadata.labels, { tier: "x" });
      }))
    );
    await expectCompact(env, {
      ready: ["10.10.0.2", "192.168.7.3", "fd01::3"],
      notReady: [],
      slices: ["10.10.0.2 RS-", "192.168.7.3 RS-", "fd01::3 RS-"],
    });
    // Deletion: c terminates (no kubelet finishes it) — out of the Endpoints, terminating in the slices…
    await env.run(kube.delete(PodResource, "c", { namespace: ns }));
    await expectCompact(env, {
      ready: ["10.10.0.2"],
      notReady: [],
      slices: ["10.10.0.2 RS-", "192.168.7.3 -ST", "fd01::3 -ST"],
    });
    // …and once it is gone, gone from the slices too.
    await env.run(kube.delete(PodResource, "c", { namespace: ns, gracePeriodSeconds: 0 }));
    await expectCompact(env, { ready: ["10.10.0.2"], notReady: [], slices: ["10.10.0.2 RS-"] });
    // The Service switches to network "external": only e is there.
    await env.run(kube.patch(ServiceResource, "lb", {
      type: "merge",
      patch: { metadata: { annotations: { "danm.io/network": "external" } } },
    }, { namespace: ns }));
    await expectCompact(env, { ready: ["10.20.0.5"], notReady: [], slices: ["10.20.0.5 RS-"] });
    // A broken annotation: a Warning Event, and what was published stays.
    await env.run(kube.patch(ServiceResource, "lb", {
      type: "merge",
      patch: { metadata: { annotations: { "danm.io/selector": "app=lb" } } },
    }, { namespace: ns }));
    await eventuallySucceeds(() =>
      env.run(Effect.gen(function* () {
        const events = yield* kube.list(EventResource, { namespace: ns });
        const e = events.items.find((e) => e.reason === "InvalidDanmAnnotations");
        assert(e !== undefined, `no InvalidDanmAnnotations Event among ${events.items.map((e) => e.reason)}`);
        assertEquals([e.type, e.involvedObject.kind, e.involvedObject.name, e.source?.component], [
          "Warning",
          "Service",
          "lb",
          "svcwatcher.danm.io",
        ]);
      }))
    );
    await expectCompact(env, { ready: ["10.20.0.5"], notReady: [], slices: ["10.20.0.5 RS-"] });
    // No DANM annotations any more: svcwatcher's objects go.
    await env.run(kube.patch(ServiceResource, "lb", {
      type: "merge",
      patch: { metadata: { annotations: { "danm.io/selector": null, "danm.io/network": null } } },
    }, { namespace: ns }));
    await expectCompact(env, { slices: [] });
  }));

Deno.test("svcwatcher: a restarted controller repairs hand-edited Endpoints and slices, and leaves foreign slices alone", () =>
  withSvcEnv(async (env) => {
    const f = await setup(env);
    const kube = await env.kube();
    const { ns } = env;
    // The in-tree EndpointSlice controller's slice for the same Service (as if it had run once).
    const foreign = await env.run(kube.create(EndpointSliceResource, {
      metadata: {
        name: "lb-intree",
        namespace: ns,
        labels: {
          "kubernetes.io/service-name": "lb",
          "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        },
      },
      addressType: "IPv4",
      endpoints: [{ addresses: ["10.244.1.1"], conditions: { ready: true } }],
    }));
    const first = env.start("first");
    await converge(env, expectedBase(f));
    await first.stop();
    // Hand edits while no controller runs.
    const ep = await env.run(kube.get(EndpointsResource, "lb", { namespace: ns }));
    await env.run(kube.update(EndpointsResource, {
      ...ep,
      subsets: [{ addresses: [{ ip: "10.99.0.1" }], ports: [{ port: 1, protocol: "TCP" }] }],
    }));
    const slices = await env.run(kube.list(EndpointSliceResource, {
      namespace: ns,
      labelSelector: "endpointslice.kubernetes.io/managed-by=svcwatcher.danm.io",
    }));
    const v4 = slices.items.find((s) => s.addressType === "IPv4") ?? fail("no IPv4 slice");
    const v6 = slices.items.find((s) => s.addressType === "IPv6") ?? fail("no IPv6 slice");
    await env.run(kube.update(EndpointSliceResource, { ...v4, endpoints: [{ addresses: ["10.99.0.2"] }] }));
    await env.run(kube.delete(EndpointSliceResource, v6.metadata.name!, { namespace: ns }));
    await env.run(kube.create(EndpointSliceResource, {
      metadata: {
        name: "lb-left-over",
        namespace: ns,
        labels: { "kubernetes.io/service-name": "lb", "endpointslice.kubernetes.io/managed-by": "svcwatcher.danm.io" },
      },
      addressType: "IPv4",
      endpoints: [{ addresses: ["10.99.0.3"] }],
    }));
    env.start("second");
    await converge(env, expectedBase(f));
    const after = await env.run(kube.get(EndpointSliceResource, "lb-intree", { namespace: ns }));
    assertEquals(after.metadata.resourceVersion, foreign.metadata.resourceVersion);
  }));

Deno.test("svcwatcher: two replicas → one leader; after the leader dies the other takes over within the lease time", () =>
  withSvcEnv(async (env) => {
    const f = await setup(env);
    const a = env.start("replica-a", { lease: leaseTiming(env, false) });
    const b = env.start("replica-b", { lease: leaseTiming(env, false) });
    await converge(env, expectedBase(f));
    await eventuallySucceeds(() => Promise.resolve(assert(leaderOf(a) || leaderOf(b), "no leader")));
    await new Promise((r) => setTimeout(r, 1_000));
    assertEquals([leaderOf(a), leaderOf(b)].filter(Boolean).length, 1);
    const [leader, other] = leaderOf(a) ? [a, b] : [b, a];
    const kube = await env.kube();
    const lease = await env.run(kube.get(LeaseResource, "danm-svcwatcher", { namespace: env.ns }));
    assertEquals(lease.spec?.holderIdentity, leader.identity);
    // The leader dies without releasing the lease (releaseOnCancel: false).
    const died = Date.now();
    await leader.stop();
    await eventuallySucceeds(() => Promise.resolve(assert(leaderOf(other), "no takeover yet")), 10_000);
    const took = Date.now() - died;
    assert(took <= 4_000 + 2 * 500 + 1_000, `takeover after ${took} ms (lease 4 s)`);
    const now = await env.run(kube.get(LeaseResource, "danm-svcwatcher", { namespace: env.ns }));
    assertEquals(now.spec?.holderIdentity, other.identity);
    // The new leader serves changes.
    await env.run(setReady(kube, f.pods.b, true));
    await expectCompact(env, {
      ready: ["10.10.0.1", "10.10.0.2", "192.168.7.3", "fd01::3", "fd10::1"],
      notReady: [],
      slices: ["10.10.0.1 RS-", "10.10.0.2 RS-", "192.168.7.3 RS-", "fd01::3 RS-", "fd10::1 RS-"],
    });
  }));

const leaseTiming = (env: SvcEnv, releaseOnCancel: boolean) => ({
  namespace: env.ns,
  name: "danm-svcwatcher",
  leaseDurationMs: 4_000,
  renewDeadlineMs: 2_500,
  retryPeriodMs: 500,
  releaseOnCancel,
});

interface RbacDoc {
  readonly kind: string;
  readonly metadata: { readonly name: string };
  readonly rules?: ReadonlyArray<k8s.V1PolicyRule>;
}

Deno.test("svcwatcher: the RBAC of k8s/svcwatcher is enough to run it", () =>
  withSvcEnv(async (env) => {
    const f = await setup(env);
    const docs = yaml.loadAll(await Deno.readTextFile(`${repoRoot}/k8s/svcwatcher/rbac.yaml`)) as RbacDoc[];
    const clusterRole = docs.find((d) => d.kind === "ClusterRole") ?? fail("no ClusterRole in rbac.yaml");
    const leaseRole = docs.find((d) => d.kind === "Role") ?? fail("no Role in rbac.yaml");
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(env.kubeconfigPath);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const rbac = kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    const sa = "danm-svcwatcher", crName = `${env.ns}-svcwatcher`;
    const dir = await Deno.makeTempDir({ prefix: "danm-svcw-sa-" });
    try {
      await core.createNamespacedServiceAccount({ namespace: env.ns, body: { metadata: { name: sa } } });
      await rbac.createClusterRole({ body: { metadata: { name: crName }, rules: [...clusterRole.rules!] } });
      await rbac.createClusterRoleBinding({
        body: {
          metadata: { name: crName },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: crName },
          subjects: [{ kind: "ServiceAccount", name: sa, namespace: env.ns }],
        },
      });
      await rbac.createNamespacedRole({
        namespace: env.ns,
        body: { metadata: { name: leaseRole.metadata.name }, rules: [...leaseRole.rules!] },
      });
      await rbac.createNamespacedRoleBinding({
        namespace: env.ns,
        body: {
          metadata: { name: leaseRole.metadata.name },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: leaseRole.metadata.name },
          subjects: [{ kind: "ServiceAccount", name: sa, namespace: env.ns }],
        },
      });
      const token = await core.createNamespacedServiceAccountToken({
        name: sa,
        namespace: env.ns,
        body: { spec: { audiences: [], expirationSeconds: 3600 } },
      });
      await Deno.writeTextFile(`${dir}/token`, token.status?.token ?? fail("no token"));
      const asServiceAccount = layerLiveKube({
        config: {
          _tag: "InCluster",
          host: "127.0.0.1",
          port: new URL(env.url).port,
          tokenFile: `${dir}/token`,
          caFile: env.caFile,
        },
      }).pipe(Layer.orDie);
      // The manifest's Lease rules name the Lease danm-svcwatcher; so does the replica.
      const r = env.start("rbac", {}, asServiceAccount);
      await converge(env, expectedBase(f));
      // Label propagation (DanmEp patch) and a Warning Event (create) work under the same rights.
      const kube = await env.kube();
      await env.run(kube.patch(PodResource, "b", { type: "merge", patch: { metadata: { labels: { extra: "1" } } } }, {
        namespace: env.ns,
      }));
      await env.run(kube.patch(ServiceResource, "lb", {
        type: "merge",
        patch: { metadata: { annotations: { "danm.io/network": "" } } },
      }, { namespace: env.ns }));
      await eventuallySucceeds(() =>
        env.run(Effect.gen(function* () {
          const ep = yield* kube.get(DanmEpResource, "ep-b", { namespace: env.ns });
          assertEquals(ep.metadata.labels, { app: "lb", extra: "1" });
          const events = yield* kube.list(EventResource, { namespace: env.ns });
          assert(events.items.some((e) => e.reason === "InvalidDanmAnnotations"), "no Event recorded");
        }))
      );
      assertEquals(r.metrics.syncErrors.get({ error: "KubeForbidden" }), 0);
      await r.stop();
    } finally {
      await rbac.deleteClusterRoleBinding({ name: crName }).catch(() => {});
      await rbac.deleteClusterRole({ name: crName }).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  }));

Deno.test("svcwatcher binary: flags, /metrics, leadership, and a graceful stop that releases the Lease", () =>
  withSvcEnv(async (env) => {
    const f = await setup(env);
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        "--allow-env",
        "--allow-read",
        "--allow-sys=hostname",
        `${repoRoot}/cmd/svcwatcher.ts`,
        `--kubeconfig=${env.kubeconfigPath}`,
        `--lease-namespace=${env.ns}`,
        "--lease-name=danm-svcwatcher",
        "--identity=binary",
        `--metrics-port=${port}`,
        "--workers=2",
        `--namespace=${env.ns}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
    try {
      await converge(env, expectedBase(f), "lb", 30_000);
      const metrics = await eventuallySucceeds(async () => {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        assert(/danm_svcwatcher_leader\{identity="binary"\} 1/.test(text), text);
        return text;
      });
      assert(/danm_svcwatcher_service_endpoints\{namespace="[^"]+",service="lb"\} 5/.test(metrics), metrics);
      assert(/danm_svcwatcher_syncs_total\{result="success"\} [1-9]/.test(metrics), metrics);
      child.kill("SIGTERM");
      const status = await child.status;
      assertEquals(status.code, 0, (await output).join("\n"));
      const kube = await env.kube();
      const lease = await env.run(kube.get(LeaseResource, "danm-svcwatcher", { namespace: env.ns }));
      assertEquals(lease.spec?.holderIdentity ?? "", "", "the Lease is released on SIGTERM");
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await output;
    }
  }));
