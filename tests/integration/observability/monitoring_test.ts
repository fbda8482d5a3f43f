// k8s/monitoring against Prometheus' own code (tests/tools/prom): every component's exposition parses and passes
// promlint; the alert rules load as Prometheus loads them and fire on the series they are about (and only there); the
// rules and the Grafana dashboard read only metrics danm exports.
import { cniMetrics } from "../../../core/cni/metrics.ts";
import { netwatcherMetrics } from "../../../core/netwatcher/metrics.ts";
import { netpolMetrics } from "../../../core/netpol/controller_metrics.ts";
import type { Registry } from "../../../core/observability/metrics.ts";
import { SvcwatcherMetrics } from "../../../core/svcwatcher/metrics.ts";
import { WebhookMetrics } from "../../../core/webhook/metrics.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { checkRules, evalAlerts, exprMetrics, histogramQuantile, parseExposition } from "../../harness/prom.ts";
import { repoRoot } from "../../harness/proc.ts";

const rulesFile = `${repoRoot}/k8s/monitoring/rules.yaml`;
const dashboardFile = `${repoRoot}/k8s/monitoring/grafana-dashboard.json`;

/** Every component's registry with a series in each family (a family without series is not exposed). */
function populated(): Registry[] {
  const cni = cniMetrics("node-1");
  const net = { network_kind: "DanmNet", network_namespace: "default", network: "n1" };
  cni.delegates.observe(0.01, { command: "ADD", plugin: "macvlan", result: "success" });
  cni.attachments.observe(0.02, { ...net, backend: "macvlan", result: "success" });
  cni.ticketWait.observe(0.001, { result: "success" });
  cni.gcFreed.inc({ kind: "sandbox" });
  cni.rejected.inc({ command: "ADD" });
  cni.events.inc({ reason: "NetworkSetupFailed" });
  cni.ipam.allocationDuration.observe(0.005, { result: "success" });
  cni.ipam.allocations.inc({ family: "4" });
  cni.ipam.releases.inc({ family: "4" });
  cni.ipam.blockWrites.inc();
  cni.ipam.conflicts.inc({ kind: "conflict" });
  cni.ipam.poolCapacity.set(254, { ...net, family: "4" });
  cni.ipam.poolAllocated.set(3, { ...net, family: "4" });
  cni.ipam.reclaimRuns.inc({ result: "success" });
  cni.ipam.reclaimed.inc({ kind: "reservation" });
  const nw = netwatcherMetrics("node-1");
  nw.reconcileSeconds.observe(0.01);
  nw.changes.inc({ action: "create" });
  nw.statusWrites.inc({ result: "updated" });
  nw.events.inc({ reason: "HostInterfaceFailed" });
  const np = netpolMetrics("node-1");
  np.applies.inc({ result: "applied" });
  np.convergeSeconds.observe(0.05);
  const sw = new SvcwatcherMetrics();
  sw.syncs.inc({ result: "success" });
  sw.syncErrors.inc({ error: "KubeConflict" });
  sw.syncDuration.observe(0.01);
  sw.writes.inc({ resource: "endpointslices", verb: "create" });
  sw.endpoints.set(2, { namespace: "default", service: "s" });
  sw.labelSyncs.inc({ result: "success" });
  sw.events.inc({ reason: "FailedToSyncEndpoints" });
  sw.leader.set(1, { identity: "a" });
  sw.leaderTransitions.inc({ event: "acquired" });
  sw.viewLoaded.set(1);
  sw.queuePending.set(0, { queue: "services" });
  const wh = new WebhookMetrics();
  wh.observeAdmission("validate", "Pod", "CREATE", "denied", 0.001, ["network-exists"]);
  wh.observeHttp("/validate", 0.002);
  wh.claims.inc({ outcome: "claimed" });
  wh.certReloads.inc();
  wh.ready.set(1);
  return [cni.registry, nw.registry, np.registry, sw.registry, wh.registry];
}

/** Every exported metric name, histograms with their _bucket/_count/_sum series. */
function exportedNames(): Set<string> {
  const names = new Set<string>();
  for (const r of populated()) {
    for (const f of r.families()) {
      names.add(f.name);
      if (f.type === "histogram") { for (const s of ["_bucket", "_count", "_sum"]) names.add(f.name + s); }
    }
  }
  return names;
}

Deno.test("every component's exposition parses with Prometheus' parser, passes promlint, exposes every family", async () => {
  for (const r of populated()) {
    const parsed = await parseExposition(r.render());
    assertEquals(parsed.lint, [], `promlint on ${r.families()[0].name}…`);
    assertEquals(
      parsed.families.map((f) => `${f.name} ${f.type}`).sort(),
      r.families().map((f) => `${f.name} ${f.type}`).sort(),
    );
    for (const f of parsed.families) assert(f.help.length > 0, `${f.name} has help`);
  }
});

Deno.test("alert rules: load as Prometheus loads them, read only exported metrics, cover what an operator needs", async () => {
  const rules = await checkRules(rulesFile);
  const exported = exportedNames();
  for (const r of rules) {
    assert(r.metrics.length > 0, `${r.alert} reads a metric`);
    for (const m of r.metrics) assert(exported.has(m), `${r.alert} reads ${m}, which danm does not export`);
    assert(["info", "warning", "critical"].includes(r.labels?.severity ?? ""), `${r.alert} has a severity`);
  }
  const alerts = rules.map((r) => r.alert);
  for (
    const a of ["DanmCniAddErrorRate", "DanmIpamPoolNearlyFull", "DanmTeardownBacklog", "DanmHostInterfacesNotReady"]
  ) assert(alerts.includes(a), `${a} is defined`);
});

Deno.test("alert rules: each fires on the series it is about and stays quiet on healthy ones", async () => {
  // 30 minutes of scrapes every minute (promqltest notation: start+increment x count).
  const series = `
load 1m
  danm_cni_request_duration_seconds_count{node="bad",command="ADD",result="success"} 0+10x30
  danm_cni_request_duration_seconds_count{node="bad",command="ADD",result="error"} 0+2x30
  danm_cni_request_duration_seconds_count{node="good",command="ADD",result="success"} 0+10x30
  danm_cni_request_duration_seconds_count{node="good",command="ADD",result="error"} 0+0x30
  danm_cni_request_duration_seconds_bucket{node="good",command="ADD",result="success",le="0.1"} 0+10x30
  danm_cni_request_duration_seconds_bucket{node="good",command="ADD",result="success",le="+Inf"} 0+10x30
  danm_cni_request_duration_seconds_bucket{node="bad",command="ADD",result="success",le="0.1"} 0+1x30
  danm_cni_request_duration_seconds_bucket{node="bad",command="ADD",result="success",le="2.5"} 0+1x30
  danm_cni_request_duration_seconds_bucket{node="bad",command="ADD",result="success",le="+Inf"} 0+10x30
  danm_cni_pending_teardowns{node="bad"} 3x30
  danm_cni_pending_teardowns{node="good"} 0x30
  danm_ipam_pool_capacity_addresses{node="a",network_kind="DanmNet",network_namespace="ns",network="full",family="4"} 100x30
  danm_ipam_pool_capacity_addresses{node="b",network_kind="DanmNet",network_namespace="ns",network="full",family="4"} 100x30
  danm_ipam_pool_allocated_addresses{node="a",network_kind="DanmNet",network_namespace="ns",network="full",family="4"} 50x30
  danm_ipam_pool_allocated_addresses{node="b",network_kind="DanmNet",network_namespace="ns",network="full",family="4"} 45x30
  danm_ipam_pool_capacity_addresses{node="a",network_kind="DanmNet",network_namespace="ns",network="roomy",family="4"} 100x30
  danm_ipam_pool_capacity_addresses{node="b",network_kind="DanmNet",network_namespace="ns",network="roomy",family="4"} 100x30
  danm_ipam_pool_allocated_addresses{node="a",network_kind="DanmNet",network_namespace="ns",network="roomy",family="4"} 50x30
  danm_ipam_pool_allocated_addresses{node="b",network_kind="DanmNet",network_namespace="ns",network="roomy",family="4"} 30x30
  danm_ipam_allocation_duration_seconds_count{node="bad",result="PoolExhausted"} 0+1x30
  danm_ipam_allocation_duration_seconds_count{node="good",result="PoolExhausted"} 0x30
  danm_ipam_reclaim_runs_total{node="bad",result="error"} 0+1x30
  danm_ipam_reclaim_runs_total{node="good",result="error"} 0x30
  danm_ipam_reclaimed_total{node="bad",kind="reservation"} 0+1x30
  danm_ipam_reclaimed_total{node="good",kind="reservation"} 0x30
  danm_netwatcher_networks_not_ready{node="bad"} 1x30
  danm_netwatcher_networks_not_ready{node="good"} 0x30
  danm_netwatcher_reconciles_total{node="bad",result="error"} 0+1x30
  danm_netwatcher_reconciles_total{node="good",result="error"} 0x30
  danm_netpol_failing_pods{node="bad"} 1x30
  danm_netpol_failing_pods{node="good"} 0x30
`;
  const firing = await evalAlerts(rulesFile, "30m", series);
  const where = Object.fromEntries(
    Object.entries(firing).map(([alert, rs]) => [alert, rs.map((r) => r.labels.node ?? r.labels.network).sort()]),
  );
  const rules = await checkRules(rulesFile);
  const expected: Record<string, string[]> = {
    DanmCniAddErrorRate: ["bad"],
    DanmCniAddSlow: ["bad"],
    DanmTeardownBacklog: ["bad"],
    DanmIpamPoolNearlyFull: ["full"],
    DanmIpamPoolExhausted: ["bad"],
    DanmIpamReclaimFailing: ["bad"],
    DanmIpamReservationsReclaimed: ["bad"],
    DanmHostInterfacesNotReady: ["bad"],
    DanmNetwatcherReconcileFailing: ["bad"],
    DanmNetworkPolicyNotEnforced: ["bad"],
  };
  assertEquals(Object.keys(expected).sort(), rules.map((r) => r.alert!).sort(), "every alert is exercised here");
  assertEquals(where, expected);
});

Deno.test("the Grafana dashboard's queries parse as PromQL and read only exported metrics", async () => {
  const dashboard = JSON.parse(await Deno.readTextFile(dashboardFile)) as {
    panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
  };
  const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  assert(exprs.length >= 20, `${exprs.length} queries`);
  // Grafana's variables, as Prometheus would see them once substituted.
  const substituted = exprs.map((e) => e.replaceAll("$__rate_interval", "1m").replaceAll("$node", ".*"));
  const exported = exportedNames();
  const read = await exprMetrics(substituted);
  read.forEach((names, i) => {
    assert(names.length > 0, exprs[i]);
    for (const n of names) assert(exported.has(n), `the dashboard reads ${n}, which danm does not export: ${exprs[i]}`);
  });
  // Every CNI and IPAM family is on it.
  const onDashboard = new Set(read.flat().map((n) => n.replace(/_(bucket|count|sum)$/, "")));
  for (const f of cniMetrics("n").registry.families()) assert(onDashboard.has(f.name), `${f.name} is on the dashboard`);
});

Deno.test("histogramQuantile (bench:cni's daemon percentiles) gives what PromQL's histogram_quantile gives", async () => {
  const buckets = { "0.05": 10, "0.1": 60, "0.25": 95, "1": 99, "+Inf": 100 };
  const quantiles = [0.05, 0.5, 0.9, 0.97, 0.995];
  const series = `
load 1m
${Object.entries(buckets).map(([le, n]) => `  h_bucket{le="${le}"} 0+${n}x2`).join("\n")}
`;
  const rules = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    await Deno.writeTextFile(
      rules,
      "groups:\n  - name: q\n    rules:\n" +
        quantiles.map((q, i) => `      - alert: Q${i}\n        expr: histogram_quantile(${q}, rate(h_bucket[2m]))\n`)
          .join(""),
    );
    const promql = await evalAlerts(rules, "2m", series);
    for (const [i, q] of quantiles.entries()) {
      const theirs = promql[`Q${i}`][0].value, ours = histogramQuantile(q, buckets);
      assert(Math.abs(theirs - ours) < 1e-9, `q ${q}: PromQL ${theirs}, ours ${ours}`);
    }
  } finally {
    await Deno.remove(rules);
  }
});
