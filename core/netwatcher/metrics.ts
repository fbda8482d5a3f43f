// netwatcher's metrics (names and labels are what dashboards and tests rely on), in a registry per agent
// (core/observability/metrics.ts): several agents (tests: one per node netns) can live in one process.
import { Registry } from "../observability/metrics.ts";

/** The metrics one netwatcher keeps; every series carries its node label. */
export function netwatcherMetrics(node: string) {
  const r = new Registry({ node });
  return {
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
}
export type NetwatcherMetrics = ReturnType<typeof netwatcherMetrics>;
