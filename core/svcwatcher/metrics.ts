// svcwatcher's metrics (names and labels are what dashboards and tests rely on), in the shared Prometheus registry
// of core/observability/metrics.ts.
import { Registry } from "../observability/metrics.ts";

/** Every metric svcwatcher exports. One instance per process (replicas are separate processes). */
export class SvcwatcherMetrics {
  readonly registry = new Registry();
  readonly syncs = this.registry.counter(
    "danm_svcwatcher_syncs_total",
    "Service reconciles, by result (success, error).",
  );
  readonly syncErrors = this.registry.counter(
    "danm_svcwatcher_sync_errors_total",
    "Failed Service reconciles, by error tag (KubeConflict … for lost races, others for real failures).",
  );
  readonly syncDuration = this.registry.histogram(
    "danm_svcwatcher_sync_duration_seconds",
    "Duration of one Service reconcile.",
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  );
  readonly writes = this.registry.counter(
    "danm_svcwatcher_writes_total",
    "Writes to the apiserver, by resource and verb.",
  );
  readonly endpoints = this.registry.gauge(
    "danm_svcwatcher_service_endpoints",
    "Endpoints (addresses in EndpointSlices) of each managed Service.",
  );
  readonly labelSyncs = this.registry.counter(
    "danm_svcwatcher_danmep_label_syncs_total",
    "DanmEps whose labels were rewritten to follow their pod, by result.",
  );
  readonly events = this.registry.counter("danm_svcwatcher_events_total", "Events recorded, by reason.");
  readonly leader = this.registry.gauge(
    "danm_svcwatcher_leader",
    "1 while this replica holds the leader lease, else 0.",
  );
  readonly leaderTransitions = this.registry.counter(
    "danm_svcwatcher_leader_transitions_total",
    "Times this replica acquired (acquired) or lost (lost) the leader lease.",
  );
  readonly viewLoaded = this.registry.gauge(
    "danm_svcwatcher_view_loaded",
    "1 while this replica leads and its view holds the first full state of every watched kind, else 0.",
  );
  readonly queuePending = this.registry.gauge(
    "danm_svcwatcher_queue_pending",
    "Keys waiting in the work queues, by queue.",
  );

  render(): string {
    return this.registry.render();
  }

  /** Why this replica is not ready: it leads but has not loaded its view yet. A standby is ready to take over. */
  notLeadingOrLoaded(): string | undefined {
    const leading = this.leader.labelSets().some((l) => this.leader.get(l) === 1);
    return leading && this.viewLoaded.get() !== 1 ? "leading, but the view is not loaded yet" : undefined;
  }
}
