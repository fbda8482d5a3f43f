// svcwatcher's controller on the memory apiserver twin: the objects it writes, level-triggered repairs, cleanup,
// DanmEp label propagation, ownership rules, and no writes for an unchanged state.
import { Effect } from "effect";
import { type DanmEp, DanmEpResource } from "../../../core/api/danm.ts";
import {
  type Endpoints,
  EndpointSliceResource,
  EndpointsResource,
  EventResource,
  type Pod,
  PodResource,
  ServiceResource,
} from "../../../core/api/k8s.ts";
import type { KubeService } from "../../../core/ports/kube.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { danmEp, ns, pod, service } from "./fixtures.ts";
import { eventuallyEffect } from "../../harness/eventually.ts";
import { makeEnv, runScoped, settled } from "./harness.ts";

/** Creates a pod and sets its status through the status subresource, as a kubelet would. */
const putPod = (kube: KubeService, p: Pod) =>
  Effect.gen(function* () {
    const { status, ...rest } = p;
    yield* kube.create(PodResource, rest);
    if (status) {
      yield* kube.patch(PodResource, p.metadata.name!, { type: "merge", patch: { status } }, {
        namespace: ns,
        subresource: "status",
      });
    }
  });

/** Creates a DanmEp naming its pod's UID, as the CNI does (the twin assigns UIDs of its own). */
const putEp = (kube: KubeService, ep: DanmEp) =>
  Effect.gen(function* () {
    const owner = yield* kube.get(PodResource, ep.spec.Pod, { namespace: ns });
    yield* kube.create(DanmEpResource, { ...ep, spec: { ...ep.spec, PodUID: owner.metadata.uid! } });
  });

const setReady = (kube: KubeService, name: string, ready: boolean) =>
  kube.patch(PodResource, name, {
    type: "merge",
    patch: { status: { conditions: [{ type: "Ready", status: ready ? "True" : "False" }] } },
  }, { namespace: ns, subresource: "status" });

/** The published state of Service `name`, compactly: Endpoints addresses and slice endpoints with conditions. */
const published = (kube: KubeService, name: string) =>
  Effect.gen(function* () {
    const ep = yield* Effect.result(kube.get(EndpointsResource, name, { namespace: ns }));
    const slices = yield* kube.list(EndpointSliceResource, {
      namespace: ns,
      labelSelector: `kubernetes.io/service-name=${name}`,
    });
    const subsets = ep._tag === "Success" ? ep.success.subsets ?? [] : undefined;
    return {
      ready: subsets?.flatMap((s) => (s.addresses ?? []).map((a) => a.ip)).sort(),
      notReady: subsets?.flatMap((s) => (s.notReadyAddresses ?? []).map((a) => a.ip)).sort(),
      slices: slices.items.flatMap((s) =>
        s.endpoints.map((e) =>
          `${s.addressType} ${e.addresses[0]} ${e.conditions?.ready ? "R" : "-"}${e.conditions?.serving ? "S" : "-"}${
            e.conditions?.terminating ? "T" : "-"
          }`
        )
      ).sort(),
    };
  });

const expectPublished = (
  kube: KubeService,
  name: string,
  want: Awaited<ReturnType<typeof published>> extends never ? never : {
    ready?: string[];
    notReady?: string[];
    slices: string[];
  },
) =>
  eventuallyEffect(Effect.gen(function* () {
    const got = yield* published(kube, name);
    assertEquals(got, want);
  }));

const baseSetup = (kube: KubeService) =>
  Effect.gen(function* () {
    yield* kube.create(ServiceResource, service("lb"));
    yield* putPod(kube, pod("a", { hostname: "a" }));
    yield* putPod(kube, pod("b", { ready: false, node: "node-b" }));
    yield* putPod(kube, pod("c", { labels: { app: "other" } }));
    yield* putEp(kube, danmEp("ep-a", "a", { v4: "10.0.0.1/24", v6: "fd00::1/64" }));
    yield* putEp(kube, danmEp("ep-b", "b", { v4: "10.0.0.2/24" }));
    // The CNI's bookkeeping label must survive label propagation.
    yield* putEp(
      kube,
      danmEp("ep-c", "c", { v4: "10.0.0.3/24", labels: { app: "other", "cni.danm.io/sandbox": "abc" } }),
    );
  });

Deno.test("controller: writes Endpoints and per-family slices; an unchanged state writes nothing, even after a restart", () =>
  runScoped(Effect.gen(function* () {
    const env = yield* makeEnv;
    const { kube } = env;
    yield* baseSetup(kube);
    const c1 = yield* env.start();
    yield* expectPublished(kube, "lb", {
      ready: ["10.0.0.1", "fd00::1"],
      notReady: ["10.0.0.2"],
      slices: ["IPv4 10.0.0.1 RS-", "IPv4 10.0.0.2 ---", "IPv6 fd00::1 RS-"],
    });
    const ep = yield* kube.get(EndpointsResource, "lb", { namespace: ns });
    const a = yield* kube.get(PodResource, "a", { namespace: ns });
    assertEquals(ep.subsets?.[0].addresses?.[0], {
      ip: "10.0.0.1",
      hostname: "a",
      nodeName: "node-a",
      targetRef: { kind: "Pod", namespace: ns, name: "a", uid: a.metadata.uid },
    });
    assertEquals(ep.metadata.labels?.["endpointslice.kubernetes.io/skip-mirror"], "true");
    yield* settled(c1.metrics);
    const afterFirst = [...env.writes.log];
    assertEquals(afterFirst.filter((w) => w.startsWith("CREATE endpointslices")).length, 2);
    assertEquals(afterFirst.filter((w) => w.includes("endpoints/")).length, 1);
    assertEquals(c1.metrics.endpoints.get({ namespace: ns, service: "lb" }), 3);

    // Events that change nothing svcwatcher publishes: annotations on pods, a pod status heartbeat.
    yield* kube.patch(PodResource, "a", { type: "merge", patch: { metadata: { annotations: { x: "1" } } } }, {
      namespace: ns,
    });
    yield* kube.patch(PodResource, "b", { type: "merge", patch: { status: { hostIP: "192.0.2.1" } } }, {
      namespace: ns,
      subresource: "status",
    });
    const syncsBefore = c1.metrics.syncs.get({ result: "success" });
    yield* settled(c1.metrics, syncsBefore + 1);
    yield* c1.stop;
    const c2 = yield* env.start();
    yield* settled(c2.metrics);
    assertEquals(env.writes.log, afterFirst, "writes after the first convergence");
    yield* c2.stop;
  })));

Deno.test("controller: readiness, pod label change (through the DanmEp), pod deletion and annotation change", () =>
  runScoped(Effect.gen(function* () {
    const env = yield* makeEnv;
    const { kube } = env;
    yield* baseSetup(kube);
    const c = yield* env.start();
    yield* expectPublished(kube, "lb", {
      ready: ["10.0.0.1", "fd00::1"],
      notReady: ["10.0.0.2"],
      slices: ["IPv4 10.0.0.1 RS-", "IPv4 10.0.0.2 ---", "IPv6 fd00::1 RS-"],
    });
    // b becomes ready.
    yield* setReady(kube, "b", true);
    yield* expectPublished(kube, "lb", {
      ready: ["10.0.0.1", "10.0.0.2", "fd00::1"],
      notReady: [],
      slices: ["IPv4 10.0.0.1 RS-", "IPv4 10.0.0.2 RS-", "IPv6 fd00::1 RS-"],
    });
    // c's pod gets the label: its DanmEp follows (spec §6.4) and c joins.
    yield* kube.patch(PodResource, "c", { type: "merge", patch: { metadata: { labels: { app: "lb", v: "2" } } } }, {
      namespace: ns,
    });
    yield* eventuallyEffect(Effect.gen(function* () {
      const e = yield* kube.get(DanmEpResource, "ep-c", { namespace: ns });
      assertEquals(e.metadata.labels, { app: "lb", v: "2", "cni.danm.io/sandbox": "abc" });
    }));
    yield* expectPublished(kube, "lb", {
      ready: ["10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1"],
      notReady: [],
      slices: ["IPv4 10.0.0.1 RS-", "IPv4 10.0.0.2 RS-", "IPv4 10.0.0.3 RS-", "IPv6 fd00::1 RS-"],
    });
    // a loses the label: removed labels are removed from the DanmEp too.
    yield* kube.patch(PodResource, "a", { type: "merge", patch: { metadata: { labels: { app: null } } } }, {
      namespace: ns,
    });
    yield* eventuallyEffect(Effect.gen(function* () {
      const e = yield* kube.get(DanmEpResource, "ep-a", { namespace: ns });
      assertEquals(e.metadata.labels ?? {}, {});
    }));
    yield* expectPublished(kube, "lb", {
      ready: ["10.0.0.2", "10.0.0.3"],
      notReady: [],
      slices: ["IPv4 10.0.0.2 RS-", "IPv4 10.0.0.3 RS-"],
    });
    // b is deleted: terminating first (grace period) — out of the Endpoints, "terminating" in its slice…
    yield* kube.delete(PodResource, "b", { namespace: ns });
    yield* expectPublished(kube, "lb", {
      ready: ["10.0.0.3"],
      notReady: [],
      slices: ["IPv4 10.0.0.2 -ST", "IPv4 10.0.0.3 RS-"],
    });
    // …then gone (its DanmEp stays: no CNI DEL in this test), so is its address.
    yield* kube.delete(PodResource, "b", { namespace: ns, gracePeriodSeconds: 0 });
    yield* expectPublished(kube, "lb", { ready: ["10.0.0.3"], notReady: [], slices: ["IPv4 10.0.0.3 RS-"] });
    // The Service now selects app=other: nothing carries that label any more.
    yield* kube.patch(ServiceResource, "lb", {
      type: "merge",
      patch: { metadata: { annotations: { "danm.io/selector": '{"v":"2"}' } } },
    }, { namespace: ns });
    yield* eventuallyEffect(Effect.gen(function* () {
      const ep = yield* kube.get(EndpointsResource, "lb", { namespace: ns });
      assertEquals(ep.metadata.annotations?.["danm.io/selector"], '{"v":"2"}');
    }));
    yield* expectPublished(kube, "lb", { ready: ["10.0.0.3"], notReady: [], slices: ["IPv4 10.0.0.3 RS-"] });
    // The DANM annotations go: everything svcwatcher wrote for the Service goes.
    yield* kube.patch(ServiceResource, "lb", {
      type: "merge",
      patch: { metadata: { annotations: { "danm.io/selector": null, "danm.io/network": null } } },
    }, { namespace: ns });
    yield* expectPublished(kube, "lb", { slices: [] });
    yield* c.stop;
  })));

Deno.test("controller: hand edits of owned objects are repaired while running and after a restart", () =>
  runScoped(Effect.gen(function* () {
    const env = yield* makeEnv;
    const { kube } = env;
    yield* baseSetup(kube);
    const c1 = yield* env.start();
    const want = {
      ready: ["10.0.0.1", "fd00::1"],
      notReady: ["10.0.0.2"],
      slices: ["IPv4 10.0.0.1 RS-", "IPv4 10.0.0.2 ---", "IPv6 fd00::1 RS-"],
    };
    yield* expectPublished(kube, "lb", want);
    const ep = yield* kube.get(EndpointsResource, "lb", { namespace: ns });
    yield* kube.update(EndpointsResource, { ...ep, subsets: [{ addresses: [{ ip: "10.9.9.9" }] }] });
    yield* expectPublished(kube, "lb", want);
    yield* settled(c1.metrics);
    yield* c1.stop;

    // While no controller runs: edit the Endpoints, delete one slice, add a stale owned slice.
    const ep2 = yield* kube.get(EndpointsResource, "lb", { namespace: ns });
    yield* kube.update(EndpointsResource, { ...ep2, subsets: [] });
    const slices = yield* kube.list(EndpointSliceResource, { namespace: ns });
    const v6 = slices.items.find((s) => s.addressType === "IPv6")!;
    yield* kube.delete(EndpointSliceResource, v6.metadata.name!, { namespace: ns });
    yield* kube.create(EndpointSliceResource, {
      metadata: {
        name: "lb-stale",
        namespace: ns,
        labels: { "kubernetes.io/service-name": "lb", "endpointslice.kubernetes.io/managed-by": "svcwatcher.danm.io" },
      },
      addressType: "IPv4",
      endpoints: [{ addresses: ["10.8.8.8"] }],
    });
    const c2 = yield* env.start();
    yield* expectPublished(kube, "lb", want);
    yield* c2.stop;
  })));

Deno.test("controller: slices and Endpoints of other controllers are never touched", () =>
  runScoped(Effect.gen(function* () {
    const env = yield* makeEnv;
    const { kube } = env;
    yield* baseSetup(kube);
    const foreignSlice = (name: string, manager: string) =>
      kube.create(EndpointSliceResource, {
        metadata: {
          name,
          namespace: ns,
          labels: { "kubernetes.io/service-name": "lb", "endpointslice.kubernetes.io/managed-by": manager },
        },
        addressType: "IPv4",
        endpoints: [{ addresses: ["10.7.7.7"] }],
      });
    yield* foreignSlice("lb-intree", "endpointslice-controller.k8s.io");
    yield* foreignSlice("lb-mirror", "endpointslicemirroring-controller.k8s.io");
    // A second DANM Service whose Endpoints someone else wrote (no labels, no DANM annotations).
    yield* kube.create(ServiceResource, service("taken"));
    const foreignEp: Endpoints = {
      metadata: { name: "taken", namespace: ns },
      subsets: [{ addresses: [{ ip: "10.6.6.6" }], ports: [{ port: 1, protocol: "TCP" }] }],
    };
    yield* kube.create(EndpointsResource, foreignEp);
    // A Service whose Endpoints DANM's svcwatcher wrote (it copied the Service annotations): adopted.
    yield* kube.create(ServiceResource, service("migrated"));
    yield* kube.create(EndpointsResource, {
      metadata: { name: "migrated", namespace: ns, annotations: service("migrated").metadata.annotations },
      subsets: [{ addresses: [{ ip: "10.5.5.5" }] }],
    });
    const before = [...env.server.objects(EndpointSliceResource), ...env.server.objects(EndpointsResource)]
      .filter((o) => ["lb-intree", "lb-mirror", "taken"].includes(String((o.metadata as { name: string }).name)));
    const setupWrites = env.writes.log.length;
    const c = yield* env.start();
    yield* eventuallyEffect(Effect.gen(function* () {
      const got = yield* published(kube, "taken");
      assertEquals(got.ready, ["10.6.6.6"]); // untouched
      assertEquals(got.slices, ["IPv4 10.0.0.1 RS-", "IPv4 10.0.0.2 ---", "IPv6 fd00::1 RS-"]); // ours still written
      const events = yield* kube.list(EventResource, { namespace: ns });
      assert(events.items.some((e) => e.reason === "EndpointsNotOwned" && e.involvedObject.name === "taken"));
    }));
    yield* expectPublished(kube, "migrated", {
      ready: ["10.0.0.1", "fd00::1"],
      notReady: ["10.0.0.2"],
      slices: ["IPv4 10.0.0.1 RS-", "IPv4 10.0.0.2 ---", "IPv6 fd00::1 RS-"],
    });
    const lb = yield* published(kube, "lb");
    assertEquals(lb.slices.filter((s) => s.includes("10.7.7.7")).length, 2);
    yield* settled(c.metrics);
    const after = [...env.server.objects(EndpointSliceResource), ...env.server.objects(EndpointsResource)]
      .filter((o) => ["lb-intree", "lb-mirror", "taken"].includes(String((o.metadata as { name: string }).name)));
    assertEquals(after, before);
    // Only a create attempt (refused: it exists) ever reached the foreign Endpoints.
    const touching = env.writes.log.slice(setupWrites).filter((w) => /lb-intree|lb-mirror|endpoints\/taken/.test(w));
    assertEquals(touching, ["CREATE endpoints/taken"]);
    yield* c.stop;
  })));

Deno.test("controller: invalid annotations keep what exists and warn; spec.selector hands the Service to the in-tree controllers", () =>
  runScoped(Effect.gen(function* () {
    const env = yield* makeEnv;
    const { kube } = env;
    yield* baseSetup(kube);
    const c = yield* env.start();
    const want = {
      ready: ["10.0.0.1", "fd00::1"],
      notReady: ["10.0.0.2"],
      slices: ["IPv4 10.0.0.1 RS-", "IPv4 10.0.0.2 ---", "IPv6 fd00::1 RS-"],
    };
    yield* expectPublished(kube, "lb", want);
    yield* kube.patch(ServiceResource, "lb", {
      type: "merge",
      patch: { metadata: { annotations: { "danm.io/selector": "{not json" } } },
    }, { namespace: ns });
    yield* eventuallyEffect(Effect.gen(function* () {
      const events = yield* kube.list(EventResource, { namespace: ns });
      const e = events.items.find((e) => e.reason === "InvalidDanmAnnotations");
      assert(e !== undefined && /danm.io\/selector/.test(e.message ?? ""), JSON.stringify(events.items));
      assertEquals(e.type, "Warning");
    }));
    yield* settled(c.metrics);
    assertEquals(yield* published(kube, "lb"), want);
    // Valid again, but with spec.selector: the in-tree controllers' Service now; ours goes.
    yield* kube.patch(ServiceResource, "lb", {
      type: "merge",
      patch: { metadata: { annotations: { "danm.io/selector": '{"app":"lb"}' } }, spec: { selector: { app: "lb" } } },
    }, { namespace: ns });
    yield* expectPublished(kube, "lb", { slices: [] });
    const events = yield* kube.list(EventResource, { namespace: ns });
    assert(events.items.some((e) => e.reason === "SelectorConflict"));
    yield* c.stop;
  })));

Deno.test("controller: a deleted Service's objects are removed, also when it went while the controller was down", () =>
  runScoped(Effect.gen(function* () {
    const env = yield* makeEnv;
    const { kube } = env;
    yield* baseSetup(kube);
    yield* kube.create(ServiceResource, service("second"));
    const c1 = yield* env.start();
    yield* eventuallyEffect(Effect.gen(function* () {
      assertEquals((yield* published(kube, "lb")).slices.length, 3);
      assertEquals((yield* published(kube, "second")).slices.length, 3);
    }));
    yield* kube.delete(ServiceResource, "lb", { namespace: ns });
    yield* expectPublished(kube, "lb", { slices: [] });
    yield* settled(c1.metrics);
    yield* c1.stop;
    yield* kube.delete(ServiceResource, "second", { namespace: ns });
    const c2 = yield* env.start();
    yield* expectPublished(kube, "second", { slices: [] });
    yield* c2.stop;
  })));
