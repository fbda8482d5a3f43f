// Prometheus metrics for every danm program: a registry of counters, gauges and histograms with labels, rendered
// in the text exposition format 0.0.4, and the /metrics + /healthz endpoint serving it over the Http port.
// Hand-rolled: a few dozen series do not justify a client library. A registry per component instance (not a
// global) lets several of them live in one process (tests run one netwatcher per node) without sharing counters.
import { Effect, type Scope } from "effect";
import { Http, type HttpError, type HttpServer } from "../ports/http.ts";

export type Labels = Readonly<Record<string, string>>;

/** The Content-Type of the text exposition format. */
export const ExpositionContentType = "text/plain; version=0.0.4; charset=utf-8";

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

const escapeLabel = (v: string) => v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
const escapeHelp = (v: string) => v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");

/** Go's float syntax as Prometheus parses it; 9 significant digits keep sums readable. */
export const formatValue = (n: number): string =>
  Number.isNaN(n)
    ? "NaN"
    : n === Infinity
    ? "+Inf"
    : n === -Infinity
    ? "-Inf"
    : Number.isInteger(n)
    ? String(n)
    : String(Number(n.toPrecision(9)));

/** `{a="1",b="2"}` with the names sorted, or "" without labels: also the key of a series. */
function labelText(l: Labels): string {
  const keys = Object.keys(l).sort();
  return keys.length === 0 ? "" : `{${keys.map((k) => `${k}="${escapeLabel(l[k])}"`).join(",")}}`;
}

type Kind = "counter" | "gauge" | "histogram";

interface Exposed {
  readonly name: string;
  readonly help: string;
  readonly type: Kind;
  lines(): string[];
}

abstract class Family<S> implements Exposed {
  protected readonly series = new Map<string, { readonly labels: Labels; value: S }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: Kind,
    private readonly constLabels: Labels,
    private readonly reserved: ReadonlyArray<string> = [],
  ) {}

  protected key(labels: Labels): { readonly key: string; readonly labels: Labels } {
    const all = { ...this.constLabels, ...labels };
    return { key: labelText(all), labels: all };
  }

  /** The series for `labels`, created by `init` on first use (label names are checked once, then). */
  protected at(labels: Labels, init: () => S): { readonly labels: Labels; value: S } {
    const k = this.key(labels);
    let s = this.series.get(k.key);
    if (s === undefined) {
      for (const n of Object.keys(k.labels)) {
        if (!labelName.test(n) || n.startsWith("__") || this.reserved.includes(n)) {
          throw new Error(`metric ${this.name}: invalid label name "${n}"`);
        }
      }
      this.series.set(k.key, s = { labels: k.labels, value: init() });
    }
    return s;
  }

  protected peek(labels: Labels): S | undefined {
    return this.series.get(this.key(labels).key)?.value;
  }

  abstract lines(): string[];
}

export class Counter extends Family<number> {
  inc(labels: Labels = {}, by = 1): void {
    if (!(by >= 0)) throw new Error(`counter ${this.name}: cannot add ${by}`);
    this.at(labels, () => 0).value += by;
  }
  /** 0 for a series never incremented. */
  get(labels: Labels = {}): number {
    return this.peek(labels) ?? 0;
  }
  lines(): string[] {
    return [...this.series].map(([k, s]) => `${this.name}${k} ${formatValue(s.value)}`);
  }
}

export class Gauge extends Family<number> {
  set(value: number, labels: Labels = {}): void {
    this.at(labels, () => 0).value = value;
  }
  /** Drops the series (e.g. of a deleted object) from the exposition. */
  remove(labels: Labels = {}): void {
    this.series.delete(this.key(labels).key);
  }
  /** undefined for a series never set (or removed). */
  get(labels: Labels = {}): number | undefined {
    return this.peek(labels);
  }
  lines(): string[] {
    return [...this.series].map(([k, s]) => `${this.name}${k} ${formatValue(s.value)}`);
  }
}

interface Buckets {
  /** Per bucket, the observations ≤ its bound (cumulative, as exposed). */
  readonly counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Family<Buckets> {
  constructor(name: string, help: string, constLabels: Labels, readonly buckets: ReadonlyArray<number>) {
    super(name, help, "histogram", constLabels, ["le"]);
    if (buckets.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= buckets[i - 1]))) {
      throw new Error(`histogram ${name}: buckets must be finite and increasing`);
    }
  }
  observe(value: number, labels: Labels = {}): void {
    const s = this.at(labels, () => ({ counts: this.buckets.map(() => 0), sum: 0, count: 0 })).value;
    this.buckets.forEach((b, i) => {
      if (value <= b) s.counts[i]++;
    });
    s.sum += value;
    s.count++;
  }
  /** Observations of the series. */
  count(labels: Labels = {}): number {
    return this.peek(labels)?.count ?? 0;
  }
  lines(): string[] {
    const out: string[] = [];
    for (const { labels, value: s } of this.series.values()) {
      this.buckets.forEach((b, i) =>
        out.push(`${this.name}_bucket${labelText({ ...labels, le: formatValue(b) })} ${s.counts[i]}`)
      );
      out.push(`${this.name}_bucket${labelText({ ...labels, le: "+Inf" })} ${s.count}`);
      out.push(`${this.name}_sum${labelText(labels)} ${formatValue(s.sum)}`);
      out.push(`${this.name}_count${labelText(labels)} ${s.count}`);
    }
    return out;
  }
}

/** The metrics of one component; `constLabels` (e.g. the node) go on every series. */
export class Registry {
  private readonly families: Exposed[] = [];
  constructor(private readonly constLabels: Labels = {}) {}

  private add<F extends Exposed>(family: F): F {
    if (!metricName.test(family.name)) throw new Error(`invalid metric name "${family.name}"`);
    if (this.families.some((f) => f.name === family.name)) throw new Error(`metric ${family.name} registered twice`);
    this.families.push(family);
    return family;
  }

  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help, "counter", this.constLabels));
  }

  gauge(name: string, help: string): Gauge {
    return this.add(new Gauge(name, help, "gauge", this.constLabels));
  }

  histogram(name: string, help: string, buckets: ReadonlyArray<number>): Histogram {
    return this.add(new Histogram(name, help, this.constLabels, buckets));
  }

  /** The text exposition: families in registration order, each with HELP and TYPE (also before any sample). */
  render(): string {
    const lines: string[] = [];
    for (const f of this.families) {
      lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`, ...f.lines());
    }
    return lines.join("\n") + "\n";
  }
}

/**
 * Serves `render` at /metrics (and "ok" at /healthz) until the scope closes. Port 0 picks a free port (see
 * `address.port`); the hostname defaults to all interfaces, as a DaemonSet scraped over the node IP needs.
 */
export const serveMetrics = (
  options: { readonly port: number; readonly hostname?: string },
  render: Effect.Effect<string>,
): Effect.Effect<HttpServer, HttpError, Http | Scope.Scope> =>
  Effect.gen(function* () {
    const http = yield* Http;
    return yield* http.serve({ hostname: options.hostname ?? "0.0.0.0", port: options.port }, (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/healthz") return Effect.succeed(new Response("ok\n"));
      if (path !== "/metrics") return Effect.succeed(new Response("not found\n", { status: 404 }));
      return Effect.map(render, (body) => new Response(body, { headers: { "content-type": ExpositionContentType } }));
    });
  });
