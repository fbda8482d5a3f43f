// netwatcher's metrics (names and labels are what dashboards and tests rely on), in a registry per agent
// (core/observability/metrics.ts): several agents (tests: one per node netns) can live in one process.
import { Registry } from "../observability/metrics.ts";

/** The metrics one netwatcher keeps; every series carries its node label. */
export function netwatcherMetrics(node: string) {
  const r = new Registry({ node });
  const m = {
    registry: r,
    reconciles: r.counter("danm_netwatcher_reconciles_total", "Reconcile passes, by result (ok, error)."),
    reconcileSeconds: r.histogram(
      "danm_netwatcher_reconcile_duration_seconds",
      "Duration of reconcile passes.",
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ),
    interfaces: r.gauge(
      "danm_netwatcher_host_interfaces",
      "Host interfaces created and managed by netwatcher on this node, by kind (vlan, vxlan).",
    ),
    changes: r.counter(
      "danm_netwatcher_interface_changes_total",
      "Changes made to host interfaces, by action (create, recreate, delete, set-mtu, set-up, fdb-add …).",
    ),
    conflicts: r.gauge(
      "danm_netwatcher_conflicting_networks",
      "Networks refused because their host interface clashes with an older network's.",
    ),
    notReady: r.gauge(
      "danm_netwatcher_networks_not_ready",
      "Networks whose host interfaces are not in place on this node.",
    ),
    statusWrites: r.counter("danm_netwatcher_status_writes_total", "Network status writes, by result."),
    events: r.counter("danm_netwatcher_events_total", "Kubernetes Events emitted, by reason."),
  };
  // Series an alert or a dashboard reads exist from the start (at zero), not only after the first change.
  for (const result of ["ok", "error"]) m.reconciles.init({ result });
  for (const kind of ["vlan", "vxlan"]) m.interfaces.set(0, { kind });
  m.conflicts.set(0);
  m.notReady.set(0);
  return m;
}
export type NetwatcherMetrics = ReturnType<typeof netwatcherMetrics>;
