// svcwatcher's Prometheus metrics (text exposition format 0.0.4) and the HTTP endpoint serving them. The set is
// fixed and small, so no client library: counters, gauges and one histogram with labels.
import { Effect, Schema, type Scope } from "effect";

type Labels = Readonly<Record<string, string>>;

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const labelText = (l: Labels) => {
  const keys = Object.keys(l).sort();
  return keys.length === 0 ? "" : `{${keys.map((k) => `${k}="${escapeLabel(l[k])}"`).join(",")}}`;
};
const num = (n: number) => Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(9)));

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  lines(): string[];
}

export class Counter implements Family {
  readonly type = "counter" as const;
  private readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = labelText(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels)) ?? 0;
  }
  lines(): string[] {
    return [...this.values].map(([l, v]) => `${this.name}${l} ${num(v)}`);
  }
}

export class Gauge implements Family {
  readonly type = "gauge" as const;
  private readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}
  set(value: number, labels: Labels = {}): void {
    this.values.set(labelText(labels), value);
  }
  remove(labels: Labels): void {
    this.values.delete(labelText(labels));
  }
  get(labels: Labels = {}): number | undefined {
    return this.values.get(labelText(labels));
  }
  lines(): string[] {
    return [...this.values].map(([l, v]) => `${this.name}${l} ${num(v)}`);
  }
}

export class Histogram implements Family {
  readonly type = "histogram" as const;
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(readonly name: string, readonly help: string, readonly buckets: ReadonlyArray<number>) {
    this.counts = buckets.map(() => 0);
  }
  observe(value: number): void {
    this.buckets.forEach((b, i) => {
      if (value <= b) this.counts[i]++;
    });
    this.sum += value;
    this.count++;
  }
  lines(): string[] {
    return [
      ...this.buckets.map((b, i) => `${this.name}_bucket{le="${num(b)}"} ${this.counts[i]}`),
      `${this.name}_bucket{le="+Inf"} ${this.count}`,
      `${this.name}_sum ${num(this.sum)}`,
      `${this.name}_count ${this.count}`,
    ];
  }
}

/** Every metric svcwatcher exports. One instance per process (replicas are separate processes). */
export class SvcwatcherMetrics {
  readonly syncs = new Counter("danm_svcwatcher_syncs_total", "Service reconciles, by result (success, error).");
  readonly syncErrors = new Counter(
    "danm_svcwatcher_sync_errors_total",
    "Failed Service reconciles, by error tag (KubeConflict … for lost races, others for real failures).",
  );
  readonly syncDuration = new Histogram(
    "danm_svcwatcher_sync_duration_seconds",
    "Duration of one Service reconcile.",
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  );
  readonly writes = new Counter(
    "danm_svcwatcher_writes_total",
    "Writes to the apiserver, by resource and verb.",
  );
  readonly endpoints = new Gauge(
    "danm_svcwatcher_service_endpoints",
    "Endpoints (addresses in EndpointSlices) of each managed Service.",
  );
  readonly labelSyncs = new Counter(
    "danm_svcwatcher_danmep_label_syncs_total",
    "DanmEps whose labels were rewritten to follow their pod, by result.",
  );
  readonly events = new Counter("danm_svcwatcher_events_total", "Events recorded, by reason.");
  readonly leader = new Gauge("danm_svcwatcher_leader", "1 while this replica holds the leader lease, else 0.");
  readonly leaderTransitions = new Counter(
    "danm_svcwatcher_leader_transitions_total",
    "Times this replica acquired (acquired) or lost (lost) the leader lease.",
  );
  readonly queuePending = new Gauge("danm_svcwatcher_queue_pending", "Keys waiting in the work queues, by queue.");

  private readonly families: ReadonlyArray<Family> = [
    this.syncs,
    this.syncErrors,
    this.syncDuration,
    this.writes,
    this.endpoints,
    this.labelSyncs,
    this.events,
    this.leader,
    this.leaderTransitions,
    this.queuePending,
  ];

  render(): string {
    return this.families.flatMap((f) => [`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...f.lines()])
      .join("\n") + "\n";
  }
}

export class MetricsServerError extends Schema.TaggedError<MetricsServerError>()("MetricsServerError", {
  address: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `serving svcwatcher metrics on ${this.address}: ${this.reason}`;
  }
}

/**
 * Serves `/metrics` (and `/healthz`) over HTTP until the scope closes. Port 0 picks a free port; the port
 * actually bound is returned.
 */
export const serveMetrics = (
  metrics: SvcwatcherMetrics,
  options: { readonly port: number; readonly hostname?: string },
): Effect.Effect<number, MetricsServerError, Scope.Scope> => {
  const hostname = options.hostname ?? "0.0.0.0";
  return Effect.acquireRelease(
    Effect.try({
      try: () =>
        Deno.serve({ port: options.port, hostname, onListen: () => {} }, (req) => {
          const path = new URL(req.url).pathname;
          if (path === "/metrics") {
            return new Response(metrics.render(), {
              headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
            });
          }
          if (path === "/healthz") return new Response("ok\n");
          return new Response("not found\n", { status: 404 });
        }),
      catch: (e) =>
        new MetricsServerError({
          address: `${hostname}:${options.port}`,
          reason: e instanceof Error ? e.message : String(e),
        }),
    }),
    (server) => Effect.promise(() => server.shutdown()),
  ).pipe(Effect.map((server) => server.addr.port));
};
