// The Event recorder (repeats bump count) and the Prometheus text exposition and its HTTP endpoint.
import { Effect } from "effect";
import { layerLiveHttp } from "../../../adapters/http/live.ts";
import { makeMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import { EventResource } from "../../../core/api/k8s.ts";
import { makeEventRecorder } from "../../../core/svcwatcher/events.ts";
import { serveMetrics } from "../../../core/observability/metrics.ts";
import { SvcwatcherMetrics } from "../../../core/svcwatcher/metrics.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { service } from "./fixtures.ts";
import { runScoped } from "./harness.ts";

Deno.test("events: a repeated warning bumps the count of one Event; another message makes another Event", () =>
  runScoped(Effect.gen(function* () {
    const kube = yield* makeMemoryKube(new MemoryApiServer());
    const metrics = new SvcwatcherMetrics();
    const rec = makeEventRecorder(kube, "replica-1", metrics);
    const svc = service("lb");
    yield* rec.warn(svc, "FailedToSyncEndpoints", "boom");
    yield* rec.warn(svc, "FailedToSyncEndpoints", "boom");
    yield* rec.warn(svc, "FailedToSyncEndpoints", "boom");
    yield* rec.warn(svc, "FailedToSyncEndpoints", "other");
    const events = (yield* kube.list(EventResource, { namespace: "apps" })).items
      .map((e) => [e.message, e.count, e.type, e.involvedObject.name, e.involvedObject.uid, e.reportingInstance])
      .sort();
    assertEquals(events, [
      ["boom", 3, "Warning", "lb", "uid-svc-lb", "replica-1"],
      ["other", 1, "Warning", "lb", "uid-svc-lb", "replica-1"],
    ]);
    assertEquals(metrics.events.get({ reason: "FailedToSyncEndpoints" }), 4);
  })));

Deno.test("metrics: text exposition with HELP/TYPE, escaped labels and histogram buckets, served over HTTP", () =>
  runScoped(Effect.gen(function* () {
    const m = new SvcwatcherMetrics();
    m.syncs.inc({ result: "success" }, 3);
    m.endpoints.set(7, { namespace: "a", service: 'we"ird\\name' });
    m.syncDuration.observe(0.02);
    m.syncDuration.observe(3);
    const { address: { port } } = yield* serveMetrics(
      { port: 0, hostname: "127.0.0.1" },
      Effect.sync(() => m.render()),
    ).pipe(Effect.provide(layerLiveHttp));
    const res = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/metrics`));
    assertEquals(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const text = yield* Effect.promise(() => res.text());
    const lines = text.split("\n");
    for (
      const want of [
        "# TYPE danm_svcwatcher_syncs_total counter",
        'danm_svcwatcher_syncs_total{result="success"} 3',
        'danm_svcwatcher_service_endpoints{namespace="a",service="we\\"ird\\\\name"} 7',
        'danm_svcwatcher_sync_duration_seconds_bucket{le="0.01"} 0',
        'danm_svcwatcher_sync_duration_seconds_bucket{le="0.025"} 1',
        'danm_svcwatcher_sync_duration_seconds_bucket{le="5"} 2',
        'danm_svcwatcher_sync_duration_seconds_bucket{le="+Inf"} 2',
        "danm_svcwatcher_sync_duration_seconds_count 2",
      ]
    ) assert(lines.includes(want), `missing line ${want} in\n${text}`);
    const health = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.text()));
    assertEquals(health, "ok\n");
  })));
