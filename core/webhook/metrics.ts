// The webhook's metrics (names, labels and help are what dashboards and tests rely on), kept in the shared
// Prometheus registry of core/observability/metrics.ts.
import { Registry } from "../observability/metrics.ts";

const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** The webhook's metrics. `keepSamples` optionally keeps raw durations (the benchmark reads percentiles). */
export class WebhookMetrics {
  readonly registry = new Registry();
  readonly requests = this.registry.counter(
    "danm_webhook_admission_requests_total",
    "Admission reviews answered, by endpoint, kind, operation and result (allowed, denied, error).",
  );
  readonly duration = this.registry.histogram(
    "danm_webhook_admission_duration_seconds",
    "Time spent inside the webhook per admission review, from the decoded request to the encoded response, by " +
      "endpoint, kind, operation and result.",
    latencyBuckets,
  );
  readonly refusals = this.registry.counter(
    "danm_webhook_refusals_total",
    "Rules a refused request broke, by kind and rule (one refusal can break several).",
  );
  readonly http = this.registry.histogram(
    "danm_webhook_http_duration_seconds",
    "Time per admission HTTP request, from its arrival to the response written (body, JSON, queueing included).",
    latencyBuckets,
  );
  readonly claims = this.registry.counter(
    "danm_webhook_vni_claims_total",
    "VNI claim outcomes: claimed, exhausted, released (refused request or deleted network), reclaimed (sweep).",
  );
  readonly certReloads = this.registry.counter(
    "danm_webhook_certificate_reloads_total",
    "Serving certificate (re)loads from the certificate files.",
  );
  readonly ready = this.registry.gauge(
    "danm_webhook_ready",
    "1 when the caches are synced and the webhook serves reviews.",
  );
  /** The last `keepSamples` handler durations, newest last. */
  readonly samples: Array<{ readonly endpoint: string; readonly kind: string; readonly seconds: number }> = [];
  readonly httpSamples: number[] = [];
  constructor(private readonly keepSamples = 0) {}

  observeHttp(path: string, seconds: number): void {
    this.http.observe(seconds, { path });
    if (this.keepSamples > 0) {
      if (this.httpSamples.length >= this.keepSamples) this.httpSamples.shift();
      this.httpSamples.push(seconds);
    }
  }

  observeAdmission(
    endpoint: string,
    kind: string,
    operation: string,
    result: "allowed" | "denied" | "error",
    seconds: number,
    brokenRules: ReadonlyArray<string> = [],
  ): void {
    this.requests.inc({ endpoint, kind, operation, result });
    this.duration.observe(seconds, { endpoint, kind, operation, result });
    for (const rule of new Set(brokenRules)) this.refusals.inc({ kind, rule });
    if (this.keepSamples > 0) {
      if (this.samples.length >= this.keepSamples) this.samples.shift();
      this.samples.push({ endpoint, kind, seconds });
    }
  }

  render(): string {
    return this.registry.render();
  }
}
