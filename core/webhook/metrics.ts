// A small Prometheus registry for the webhook's /metrics (text exposition format 0.0.4): counters, gauges and
// histograms with labels. No client library: the set is fixed and tiny.

type Labels = Readonly<Record<string, string>>;

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const labelText = (l: Labels) => {
  const keys = Object.keys(l).sort();
  return keys.length === 0 ? "" : `{${keys.map((k) => `${k}="${escapeLabel(l[k])}"`).join(",")}}`;
};
const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toPrecision(6).replace(/\.?0+$/, ""));

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  render(): string[];
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
  render(): string[] {
    return [...this.values].map(([l, v]) => `${this.name}${l} ${fmt(v)}`);
  }
}

export class Gauge implements Family {
  readonly type = "gauge" as const;
  private readonly values = new Map<string, () => number>();
  constructor(readonly name: string, readonly help: string) {}
  /** The value is read at scrape time. */
  track(read: () => number, labels: Labels = {}): void {
    this.values.set(labelText(labels), read);
  }
  render(): string[] {
    return [...this.values].map(([l, read]) => `${this.name}${l} ${fmt(read())}`);
  }
}

export class Histogram implements Family {
  readonly type = "histogram" as const;
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string, readonly buckets: ReadonlyArray<number>) {}
  observe(value: number, labels: Labels = {}): void {
    const k = labelText(labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 });
    this.buckets.forEach((b, i) => {
      if (value <= b) s.counts[i]++;
    });
    s.sum += value;
    s.count++;
  }
  render(): string[] {
    const out: string[] = [];
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) =>
        out.push(`${this.name}_bucket${labelText({ ...s.labels, le: fmt(b) })} ${s.counts[i]}`)
      );
      out.push(`${this.name}_bucket${labelText({ ...s.labels, le: "+Inf" })} ${s.count}`);
      out.push(`${this.name}_sum${labelText(s.labels)} ${fmt(s.sum)}`);
      out.push(`${this.name}_count${labelText(s.labels)} ${s.count}`);
    }
    return out;
  }
}

/** The webhook's metrics. `handlerSeconds` optionally keeps raw samples (the benchmark reads percentiles). */
export class WebhookMetrics {
  readonly requests = new Counter(
    "danm_webhook_admission_requests_total",
    "Admission reviews answered, by endpoint, kind, operation and result (allowed, denied, error).",
  );
  readonly duration = new Histogram(
    "danm_webhook_admission_duration_seconds",
    "Time spent inside the webhook per admission review, from the decoded request to the encoded response.",
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  );
  readonly http = new Histogram(
    "danm_webhook_http_duration_seconds",
    "Time per admission HTTP request, from its arrival to the response written (body, JSON, queueing included).",
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  );
  readonly claims = new Counter(
    "danm_webhook_vni_claims_total",
    "VNI claim outcomes: claimed, exhausted, released (refused request or deleted network), reclaimed (sweep).",
  );
  readonly certReloads = new Counter(
    "danm_webhook_certificate_reloads_total",
    "Serving certificate (re)loads from the certificate files.",
  );
  readonly ready = new Gauge("danm_webhook_ready", "1 when the caches are synced and the webhook serves reviews.");
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
  ): void {
    this.requests.inc({ endpoint, kind, operation, result });
    this.duration.observe(seconds, { endpoint });
    if (this.keepSamples > 0) {
      if (this.samples.length >= this.keepSamples) this.samples.shift();
      this.samples.push({ endpoint, kind, seconds });
    }
  }

  render(): string {
    const families: Family[] = [this.requests, this.duration, this.http, this.claims, this.certReloads, this.ready];
    const lines: string[] = [];
    for (const f of families) {
      lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...f.render());
    }
    return lines.join("\n") + "\n";
  }
}
