// The shared Prometheus registry (text exposition 0.0.4), the metric sets of webhook, netwatcher and svcwatcher
// built on it, and the /metrics endpoint over the memory Http twin.
import { Effect } from "effect";
import { layerMemoryHttp, MemoryHttpNetwork } from "../../../adapters/http/memory.ts";
import { netwatcherMetrics } from "../../../core/netwatcher/metrics.ts";
import { ExpositionContentType, Registry, serveMetrics } from "../../../core/observability/metrics.ts";
import { SvcwatcherMetrics } from "../../../core/svcwatcher/metrics.ts";
import { WebhookMetrics } from "../../../core/webhook/metrics.ts";
import { assertEquals, assertThrows } from "../../harness/assert.ts";

Deno.test("registry: the exact exposition of counters, gauges and histograms with constant and series labels", () => {
  const r = new Registry({ node: "n1" });
  const c = r.counter("t_requests_total", "Requests, by code.\nSecond line with a \\ backslash.");
  const g = r.gauge("t_queue", "Queue length.");
  const h = r.histogram("t_seconds", "Latency.", [0.005, 0.5, 2.5]);
  r.counter("t_unused_total", "Never incremented.");
  c.inc({ code: "200" });
  c.inc({ code: "200" }, 2);
  c.inc({ code: '5"0\\0\n' });
  g.set(3, { queue: "a" });
  g.set(1.5, { queue: "b" });
  g.add(-0.5, { queue: "b" });
  g.set(9, { queue: "gone" });
  g.remove({ queue: "gone" });
  h.observe(0.001, { path: "/x" });
  h.observe(0.3, { path: "/x" });
  h.observe(7, { path: "/x" });
  h.init({ path: "/y" });
  assertEquals(
    r.render(),
    [
      "# HELP t_requests_total Requests, by code.\\nSecond line with a \\\\ backslash.",
      "# TYPE t_requests_total counter",
      't_requests_total{code="200",node="n1"} 3',
      't_requests_total{code="5\\"0\\\\0\\n",node="n1"} 1',
      "# HELP t_queue Queue length.",
      "# TYPE t_queue gauge",
      't_queue{node="n1",queue="a"} 3',
      't_queue{node="n1",queue="b"} 1',
      "# HELP t_seconds Latency.",
      "# TYPE t_seconds histogram",
      't_seconds_bucket{node="n1",path="/x",le="0.005"} 1',
      't_seconds_bucket{node="n1",path="/x",le="0.5"} 2',
      't_seconds_bucket{node="n1",path="/x",le="2.5"} 2',
      't_seconds_bucket{node="n1",path="/x",le="+Inf"} 3',
      't_seconds_sum{node="n1",path="/x"} 7.301',
      't_seconds_count{node="n1",path="/x"} 3',
      't_seconds_bucket{node="n1",path="/y",le="0.005"} 0',
      't_seconds_bucket{node="n1",path="/y",le="0.5"} 0',
      't_seconds_bucket{node="n1",path="/y",le="2.5"} 0',
      't_seconds_bucket{node="n1",path="/y",le="+Inf"} 0',
      't_seconds_sum{node="n1",path="/y"} 0',
      't_seconds_count{node="n1",path="/y"} 0',
      "",
    ].join("\n"),
  );
  assertEquals([c.get({ code: "200" }), c.get({ code: "404" })], [3, 0]);
  assertEquals([g.get({ queue: "a" }), g.get({ queue: "gone" })], [3, undefined]);
  assertEquals([h.count({ path: "/x" }), h.count({ path: "/y" })], [3, 0]);
  // Label order does not make another series.
  c.inc({ code: "200", x: "1" });
  c.inc({ x: "1", code: "200" });
  assertEquals(c.get({ x: "1", code: "200" }), 2);
  assertEquals(c.labelSets().length, 3);
});

Deno.test("registry: two registries keep their series apart (one node agent per node in one process)", () => {
  const a = new Registry({ node: "a" }), b = new Registry({ node: "b" });
  a.counter("x_total", "x").inc();
  const bx = b.counter("x_total", "x");
  bx.inc({}, 5);
  assertEquals(a.render().includes('x_total{node="a"} 1'), true);
  assertEquals(b.render().includes('x_total{node="b"} 5'), true);
  assertEquals(a.render().includes('node="b"'), false);
});

Deno.test("registry: refuses bad names, a second family of one name, reserved labels, decreasing counters", () => {
  const r = new Registry();
  assertThrows(() => r.counter("1bad", "x"), 'invalid metric name "1bad"');
  r.counter("dup_total", "x");
  assertThrows(() => r.gauge("dup_total", "x"), "metric dup_total registered twice");
  const c = r.counter("ok_total", "x");
  assertThrows(() => c.inc({ "bad-label": "v" }), 'invalid label name "bad-label"');
  assertThrows(() => c.inc({ unit: "v" }), 'invalid label name "unit"');
  assertThrows(() => c.inc({ __reserved: "v" }), 'invalid label name "__reserved"');
  assertThrows(() => c.inc({}, -1), "counter ok_total: cannot add -1");
  const h = r.histogram("h_seconds", "x", [1, 2]);
  assertThrows(() => h.observe(1, { le: "5" }), 'invalid label name "le"');
  assertThrows(() => r.histogram("h2_seconds", "x", [2, 1]), "buckets must be finite and increasing");
});

/** Every family declared, as `name type`. */
const families = (r: Registry) => r.families().map((f) => `${f.name} ${f.type}`);

Deno.test("the metric sets of webhook, netwatcher and svcwatcher keep their names and types", () => {
  assertEquals(families(new WebhookMetrics().registry), [
    "danm_webhook_admission_requests_total counter",
    "danm_webhook_admission_duration_seconds histogram",
    "danm_webhook_refusals_total counter",
    "danm_webhook_http_duration_seconds histogram",
    "danm_webhook_vni_claims_total counter",
    "danm_webhook_certificate_reloads_total counter",
    "danm_webhook_ready gauge",
  ]);
  assertEquals(families(netwatcherMetrics("n").registry), [
    "danm_netwatcher_reconciles_total counter",
    "danm_netwatcher_reconcile_duration_seconds histogram",
    "danm_netwatcher_host_interfaces gauge",
    "danm_netwatcher_interface_changes_total counter",
    "danm_netwatcher_conflicting_networks gauge",
    "danm_netwatcher_networks_not_ready gauge",
    "danm_netwatcher_status_writes_total counter",
    "danm_netwatcher_events_total counter",
  ]);
  assertEquals(families(new SvcwatcherMetrics().registry), [
    "danm_svcwatcher_syncs_total counter",
    "danm_svcwatcher_sync_errors_total counter",
    "danm_svcwatcher_sync_duration_seconds histogram",
    "danm_svcwatcher_writes_total counter",
    "danm_svcwatcher_service_endpoints gauge",
    "danm_svcwatcher_danmep_label_syncs_total counter",
    "danm_svcwatcher_events_total counter",
    "danm_svcwatcher_leader gauge",
    "danm_svcwatcher_leader_transitions_total counter",
    "danm_svcwatcher_view_loaded gauge",
    "danm_svcwatcher_queue_pending gauge",
  ]);
  // The webhook's histograms are labelled per series; svcwatcher's has none.
  const w = new WebhookMetrics();
  w.observeAdmission("validate", "Pod", "CREATE", "denied", 0.002, ["network-exists", "network-exists"]);
  w.observeHttp("/validate", 0.003);
  const text = w.render();
  for (
    const line of [
      'danm_webhook_admission_requests_total{endpoint="validate",kind="Pod",operation="CREATE",result="denied"} 1',
      'danm_webhook_admission_duration_seconds_bucket{endpoint="validate",kind="Pod",operation="CREATE",result="denied",le="0.0025"} 1',
      'danm_webhook_refusals_total{kind="Pod",rule="network-exists"} 1',
      'danm_webhook_http_duration_seconds_count{path="/validate"} 1',
    ]
  ) assertEquals(text.split("\n").includes(line), true, line);
});

Deno.test("serveMetrics: /metrics on every scrape with the exposition content type; /healthz; /readyz; 404", () =>
  Effect.runPromise(Effect.scoped(Effect.gen(function* () {
    const network = new MemoryHttpNetwork();
    const r = new Registry();
    const scrapes = r.counter("scrapes_total", "Scrapes.");
    let problem: string | undefined = "caches: waiting for the first list of Pods";
    const server = yield* serveMetrics(
      { port: 9100, ready: Effect.sync(() => problem) },
      Effect.sync(() => {
        scrapes.inc();
        return r.render();
      }),
    ).pipe(Effect.provide(layerMemoryHttp(network)));
    assertEquals(network.bound(), [{ hostname: "0.0.0.0", port: 9100, tls: false }]);
    const get = (path: string) =>
      Effect.promise(async () => {
        const res = await network.fetch(`http://10.0.0.7:${server.address.port}${path}`);
        return [res.status, res.headers.get("content-type"), await res.text()];
      });
    yield* get("/metrics");
    assertEquals(yield* get("/metrics"), [
      200,
      ExpositionContentType,
      "# HELP scrapes_total Scrapes.\n# TYPE scrapes_total counter\nscrapes_total 2\n",
    ]);
    assertEquals((yield* get("/healthz")).slice(0, 1), [200]);
    assertEquals(yield* get("/readyz"), [
      503,
      "text/plain;charset=UTF-8",
      "not ready: caches: waiting for the first list of Pods\n",
    ]);
    problem = undefined;
    assertEquals(yield* get("/readyz"), [200, "text/plain;charset=UTF-8", "ok\n"]);
    assertEquals((yield* get("/healthz")).slice(0, 1), [200]);
    assertEquals((yield* get("/other")).slice(0, 1), [404]);
  }))));
