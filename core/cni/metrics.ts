// The CNI daemon's metrics (names and labels are what dashboards, alert rules and tests rely on: k8s/monitoring) and
// the per-request observation the handler fills in: which networks a call touched and how long delegates ran, so
// that danm's own share of a request's time is known (request time minus the time any delegate was running).
//
// Labels are bounded: commands, results, backends, plugin types, and networks (objects an operator creates) — never
// pods or sandboxes, which go into the log line of each call instead.
import { Context } from "effect";
import { Registry } from "../observability/metrics.ts";
import { ipamMetrics } from "../ipam/metrics.ts";

/** Request latencies: fine steps where ADD and DEL live (10–250 ms), coarse out to the runtimes' timeouts. */
const requestBuckets = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.02,
  0.03,
  0.04,
  0.05,
  0.06,
  0.07,
  0.08,
  0.09,
  0.1,
  0.125,
  0.15,
  0.2,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];
/** Per attachment and per delegate (more series: one per network or plugin type). */
const stepBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export const CniCommands = ["ADD", "DEL", "CHECK", "GC", "STATUS"] as const;

/** The metrics one node's CNI daemon keeps; every series carries its node label. */
export function cniMetrics(node: string) {
  const r = new Registry({ node });
  const m = {
    registry: r,
    requests: r.histogram(
      "danm_cni_request_duration_seconds",
      "Time the node daemon took to answer a CNI request of the danm plugin, by command (ADD, DEL, CHECK, GC, " +
        "STATUS) and result (success, error).",
      requestBuckets,
    ),
    ownTime: r.histogram(
      "danm_cni_request_own_duration_seconds",
      "The part of a CNI request's time during which no delegate plugin was running: danm's own work (API " +
        "reads and writes, IPAM, netlink, locks), by command and result.",
      requestBuckets,
    ),
    delegates: r.histogram(
      "danm_cni_delegate_duration_seconds",
      "Duration of one delegate plugin execution, by command, plugin type and result.",
      stepBuckets,
    ),
    attachments: r.histogram(
      "danm_cni_attachment_duration_seconds",
      "Duration of setting up one pod interface during ADD, by network (kind, namespace, name), backend " +
        "(ipvlan, macvlan, sriov, static, nad) and result.",
      stepBuckets,
    ),
    inFlight: r.gauge("danm_cni_requests_in_flight", "CNI requests of the danm plugin being handled, by command."),
    queued: r.gauge(
      "danm_cni_requests_queued",
      "CNI requests waiting for one of the daemon's slots (--cni-max-concurrent) to be handled.",
    ),
    delegatesWaiting: r.gauge(
      "danm_cni_delegates_waiting",
      "Delegate plugin executions waiting for one of the daemon's delegate slots (--cni-max-delegates).",
    ),
    rejected: r.counter(
      "danm_cni_requests_rejected_total",
      "CNI requests answered busy (CNI error 11: the queue was full or the daemon was shutting down), by command.",
    ),
    ticketWait: r.histogram(
      "danm_cni_fakeipam_ticket_wait_seconds",
      "Time fakeipam waited for the addresses of its ticket (a delegate started while danm was still reserving " +
        "its addresses), by result.",
      stepBuckets,
    ),
    pendingTeardowns: r.gauge(
      "danm_cni_pending_teardowns",
      "Sandboxes whose teardown could not finish (apiserver unreachable …) and is retried in the background.",
    ),
    gcFreed: r.counter(
      "danm_cni_gc_freed_total",
      "What CNI GC freed on this node, by kind (sandbox, reservation).",
    ),
    events: r.counter("danm_cni_events_total", "Kubernetes Events recorded on pods, by reason."),
    ipam: ipamMetrics(r),
  };
  // Known label sets start at zero, so rate() and alert ratios have series before the first request or failure.
  for (const command of CniCommands) {
    m.inFlight.set(0, { command });
    for (const result of ["success", "error"]) {
      m.requests.init({ command, result });
      m.ownTime.init({ command, result });
    }
  }
  m.pendingTeardowns.set(0);
  m.queued.set(0);
  m.delegatesWaiting.set(0);
  return m;
}
export type CniMetrics = ReturnType<typeof cniMetrics>;

/** The node daemon's metrics, in its context (background loops included); none in tests that call commands alone. */
export const CurrentCniMetrics = Context.Reference<CniMetrics | undefined>("danm/core/cni/CurrentCniMetrics", {
  defaultValue: () => undefined,
});

/** What one request did, filled in by the command as it goes; the handler logs it and records the metrics. */
export class RequestObservation {
  /** The networks the call set up or tore down, e.g. "DanmNet default/net1 (eth1)". */
  networks: ReadonlyArray<string> = [];
  /** Further facts for the call's log line (GC: what it freed). */
  readonly details: Record<string, string | number> = {};
  private readonly delegateSpans: Array<readonly [number, number]> = [];

  /** A delegate ran from `start` to `end` (performance.now() milliseconds). */
  delegateRan(start: number, end: number): void {
    this.delegateSpans.push([start, end]);
  }

  /** Milliseconds during which at least one delegate was running (attachments run in parallel). */
  delegateMs(): number {
    const spans = [...this.delegateSpans].sort((a, b) => a[0] - b[0]);
    let total = 0, from = 0, to = -Infinity;
    for (const [s, e] of spans) {
      if (s > to) {
        if (to > from) total += to - from;
        [from, to] = [s, e];
      } else if (e > to) to = e;
    }
    if (to > from) total += to - from;
    return total;
  }
}

/** The observation of the request being handled; none outside the daemon's handler. */
export const CurrentRequest = Context.Reference<RequestObservation | undefined>("danm/core/cni/CurrentRequest", {
  defaultValue: () => undefined,
});
