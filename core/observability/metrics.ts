// Prometheus metrics for every danm program: effect's Metric module keeps the series (counters, gauges and
// histograms), effect's PrometheusMetrics renders them in the text exposition format 0.0.4, and serveMetrics serves
// /metrics, /healthz (liveness) and /readyz (readiness) over the Http port.
//
// A Registry is one component instance's metric registry (effect's MetricRegistry in a context of its own), so
// several instances can live in one process (tests run one node agent per node) without sharing series. Families are
// declared once with their help text; names and label names are checked when declared and first used, so a typo
// fails at once instead of producing a series nobody queries.
import { Context, Effect, Metric, type Scope } from "effect";
import { PrometheusMetrics } from "effect/observability";
import { Http, type HttpError, type HttpServer } from "../ports/http.ts";

export type Labels = Readonly<Record<string, string>>;

/** The Content-Type of the text exposition format. */
export const ExpositionContentType = "text/plain; version=0.0.4; charset=utf-8";

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** effect's formatter drops these attribute names (its own unit annotations), so they cannot be labels. */
const reservedLabels = new Set(["unit", "time_unit"]);

/** Series key of a label set: the label names sorted, so {a,b} and {b,a} are one series. */
const labelKey = (l: Labels): string => {
  const keys = Object.keys(l);
  if (keys.length === 0) return "";
  if (keys.length > 1) keys.sort();
  let out = "";
  for (const k of keys) out += `${k}\u0000${l[k]}\u0001`;
  return out;
};

abstract class Family<M extends Metric.Metric<number, unknown>> {
  private readonly series = new Map<string, M>();
  constructor(
    readonly name: string,
    readonly help: string,
    protected readonly context: Context.Context<never>,
    private readonly constLabels: Labels,
    private readonly reserved: ReadonlyArray<string> = [],
  ) {}

  protected abstract make(attributes: Labels): M;

  /** The series of `labels`, created on first use (its label names are checked then). */
  protected at(labels: Labels): M {
    const key = labelKey(labels);
    let m = this.series.get(key);
    if (m === undefined) {
      const all: Record<string, string> = {};
      for (const k of Object.keys({ ...this.constLabels, ...labels }).sort()) {
        if (!labelName.test(k) || k.startsWith("__") || reservedLabels.has(k) || this.reserved.includes(k)) {
          throw new Error(`metric ${this.name}: invalid label name "${k}"`);
        }
        all[k] = labels[k] ?? this.constLabels[k];
      }
      m = this.make(all);
      this.series.set(key, m);
    }
    return m;
  }

  protected peek(labels: Labels): M | undefined {
    return this.series.get(labelKey(labels));
  }

  /** Exposes the series at its zero value before anything happens (rate() over a known label set starts at 0). */
  init(labels: Labels = {}): void {
    this.at(labels).valueUnsafe(this.context);
  }

  /** Drops the series (e.g. of a deleted object) from the exposition. */
  remove(labels: Labels = {}): void {
    const key = labelKey(labels), m = this.series.get(key);
    if (m === undefined) return;
    Metric.removeUnsafe(m, this.context);
    this.series.delete(key);
  }

  /** Label sets of the series that exist. */
  labelSets(): Labels[] {
    return [...this.series.values()].map((m) => {
      const out: Record<string, string> = { ...m.attributes };
      for (const k of Object.keys(this.constLabels)) delete out[k];
      return out;
    });
  }
}

export class Counter extends Family<Metric.Counter<number>> {
  protected make(attributes: Labels) {
    return Metric.counter(this.name, { description: this.help, attributes, incremental: true });
  }
  inc(labels: Labels = {}, by = 1): void {
    if (!(by >= 0)) throw new Error(`counter ${this.name}: cannot add ${by}`);
    this.at(labels).updateUnsafe(by, this.context);
  }
  /** 0 for a series never incremented. */
  get(labels: Labels = {}): number {
    return this.peek(labels)?.valueUnsafe(this.context).count ?? 0;
  }
}

export class Gauge extends Family<Metric.Gauge<number>> {
  protected make(attributes: Labels) {
    return Metric.gauge(this.name, { description: this.help, attributes });
  }
  set(value: number, labels: Labels = {}): void {
    this.at(labels).updateUnsafe(value, this.context);
  }
  /** Adds `by` (negative: subtracts). */
  add(by: number, labels: Labels = {}): void {
    this.at(labels).modifyUnsafe(by, this.context);
  }
  /** undefined for a series never set (or removed). */
  get(labels: Labels = {}): number | undefined {
    return this.peek(labels)?.valueUnsafe(this.context).value;
  }
}

export class Histogram extends Family<Metric.Histogram<number>> {
  constructor(
    name: string,
    help: string,
    context: Context.Context<never>,
    constLabels: Labels,
    readonly buckets: ReadonlyArray<number>,
  ) {
    super(name, help, context, constLabels, ["le"]);
    if (buckets.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= buckets[i - 1]))) {
      throw new Error(`histogram ${name}: buckets must be finite and increasing`);
    }
  }
  protected make(attributes: Labels) {
    return Metric.histogram(this.name, { description: this.help, attributes, boundaries: this.buckets });
  }
  observe(value: number, labels: Labels = {}): void {
    this.at(labels).updateUnsafe(value, this.context);
  }
  /** Observations of the series. */
  count(labels: Labels = {}): number {
    return this.peek(labels)?.valueUnsafe(this.context).count ?? 0;
  }
}

/** The metrics of one component; `constLabels` (e.g. the node) go on every series. */
export class Registry {
  /** effect's metric registry of this component, in a context of its own. */
  readonly context: Context.Context<never> = Context.make(Metric.MetricRegistry, new Map());
  private readonly declared: Array<{ readonly name: string; readonly type: string; readonly help: string }> = [];
  constructor(private readonly constLabels: Labels = {}) {}

  private declare(name: string, type: "counter" | "gauge" | "histogram", help: string): void {
    if (!metricName.test(name)) throw new Error(`invalid metric name "${name}"`);
    if (this.declared.some((f) => f.name === name)) throw new Error(`metric ${name} registered twice`);
    this.declared.push({ name, type, help });
  }

  counter(name: string, help: string): Counter {
    this.declare(name, "counter", help);
    return new Counter(name, help, this.context, this.constLabels);
  }

  gauge(name: string, help: string): Gauge {
    this.declare(name, "gauge", help);
    return new Gauge(name, help, this.context, this.constLabels);
  }

  histogram(name: string, help: string, buckets: ReadonlyArray<number>): Histogram {
    this.declare(name, "histogram", help);
    return new Histogram(name, help, this.context, this.constLabels, buckets);
  }

  /** Every family declared, in declaration order (also those without a series yet). */
  families(): ReadonlyArray<{ readonly name: string; readonly type: string; readonly help: string }> {
    return this.declared;
  }

  /** The text exposition of every series, each family with HELP and TYPE. */
  render(): string {
    return PrometheusMetrics.formatUnsafe(this.context);
  }
}

/** A readiness check: undefined when ready, else why not. */
export type ReadinessCheck = Effect.Effect<string | undefined>;

/**
 * Serves `render` at /metrics until the scope closes; /healthz answers "ok" while the process serves at all
 * (liveness), /readyz runs `ready` (default: always ready) and answers 200 or 503 with the reasons. Port 0 picks a
 * free port (see `address.port`); the hostname defaults to all interfaces, as a DaemonSet scraped over the node IP
 * needs.
 */
export const serveMetrics = (
  options: { readonly port: number; readonly hostname?: string; readonly ready?: ReadinessCheck },
  render: Effect.Effect<string>,
): Effect.Effect<HttpServer, HttpError, Http | Scope.Scope> =>
  Effect.gen(function* () {
    const http = yield* Http;
    const ready = options.ready ?? Effect.succeed(undefined);
    return yield* http.serve({ hostname: options.hostname ?? "0.0.0.0", port: options.port }, (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/healthz" || path === "/livez") return Effect.succeed(new Response("ok\n"));
      if (path === "/readyz") {
        return Effect.map(
          ready,
          (problem) =>
            problem === undefined ? new Response("ok\n") : new Response(`not ready: ${problem}\n`, { status: 503 }),
        );
      }
      if (path !== "/metrics") return Effect.succeed(new Response("not found\n", { status: 404 }));
      return Effect.map(render, (body) => new Response(body, { headers: { "content-type": ExpositionContentType } }));
    });
  });
