// Prometheus metrics of one agent, rendered in the text exposition format (version 0.0.4), and a tiny scoped HTTP
// server for them. Hand-rolled: a handful of series does not justify a client library, and keeping the registry per
// agent lets several agents (tests: one per node netns) live in one process without sharing counters.
import { Effect, type Scope } from "effect";

type Labels = Readonly<Record<string, string>>;

const escapeLabel = (v: string) => v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
const labelText = (l: Labels) => {
  const keys = Object.keys(l).sort();
  return keys.length === 0 ? "" : `{${keys.map((k) => `${k}="${escapeLabel(l[k])}"`).join(",")}}`;
};
const num = (n: number) => Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(9)));

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  render(): string[];
}

export class Counter {
  private readonly values = new Map<string, number>();
  constructor(private readonly base: Labels) {}
  inc(labels: Labels = {}, by = 1): void {
    const key = labelText({ ...this.base, ...labels });
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelText({ ...this.base, ...labels })) ?? 0;
  }
  /** @internal */
  series(): ReadonlyMap<string, number> {
    return this.values;
  }
}

export class Gauge {
  private readonly values = new Map<string, number>();
  constructor(private readonly base: Labels) {}
  set(value: number, labels: Labels = {}): void {
    this.values.set(labelText({ ...this.base, ...labels }), value);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelText({ ...this.base, ...labels })) ?? 0;
  }
  /** @internal */
  series(): ReadonlyMap<string, number> {
    return this.values;
  }
}

export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(private readonly base: Labels, readonly buckets: ReadonlyArray<number>) {
    this.counts = buckets.map(() => 0);
  }
  observe(value: number): void {
    this.sum += value;
    this.count++;
    this.buckets.forEach((b, i) => {
      if (value <= b) this.counts[i]++;
    });
  }
  get observations(): number {
    return this.count;
  }
  /** @internal */
  lines(name: string): string[] {
    const out = this.buckets.map((b, i) =>
      `${name}_bucket${labelText({ ...this.base, le: num(b) })} ${this.counts[i]}`
    );
    out.push(`${name}_bucket${labelText({ ...this.base, le: "+Inf" })} ${this.count}`);
    out.push(`${name}_sum${labelText(this.base)} ${num(this.sum)}`);
    out.push(`${name}_count${labelText(this.base)} ${this.count}`);
    return out;
  }
}

export class Registry {
  private readonly families: Family[] = [];
  constructor(private readonly base: Labels = {}) {}

  counter(name: string, help: string): Counter {
    const c = new Counter(this.base);
    this.families.push({
      name,
      help,
      type: "counter",
      render: () => [...c.series()].map(([k, v]) => `${name}${k} ${num(v)}`),
    });
    return c;
  }

  gauge(name: string, help: string): Gauge {
    const g = new Gauge(this.base);
    this.families.push({
      name,
      help,
      type: "gauge",
      render: () => [...g.series()].map(([k, v]) => `${name}${k} ${num(v)}`),
    });
    return g;
  }

  histogram(name: string, help: string, buckets: ReadonlyArray<number>): Histogram {
    const h = new Histogram(this.base, buckets);
    this.families.push({ name, help, type: "histogram", render: () => h.lines(name) });
    return h;
  }

  /** The text exposition format. */
  render(): string {
    const out: string[] = [];
    for (const f of this.families) {
      out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...f.render());
    }
    return out.join("\n") + "\n";
  }
}

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

/**
 * Serves `render()` at /metrics on `port` (0 = any free port) until the scope closes; returns the bound port.
 * `hostname` defaults to all interfaces, as a DaemonSet scraped over the node IP needs.
 */
export const serveMetrics = (
  port: number,
  render: () => Effect.Effect<string>,
  hostname = "0.0.0.0",
): Effect.Effect<number, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() =>
      Deno.serve({ port, hostname, onListen: () => {} }, async (req) => {
        const path = new URL(req.url).pathname;
        if (path === "/healthz") return new Response("ok\n");
        if (path !== "/metrics") return new Response("not found\n", { status: 404 });
        return new Response(await Effect.runPromise(render()), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      })
    ),
    (server) => Effect.promise(() => server.shutdown()),
  ).pipe(Effect.map((server) => server.addr.port));
