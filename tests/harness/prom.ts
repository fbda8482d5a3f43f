// The Prometheus project's own text-format parser, metrics linter and rule/PromQL parsers for the tests
// (tests/tools/prom, a Go tools module), built once per source version into the shared cache.
import { cacheRoot, repoRoot, run } from "./proc.ts";

const toolDir = `${repoRoot}/tests/tools/prom`;

/** Builds tests/tools/prom into ~/.cache/danm/prom-<source hash>/prom (atomically: concurrent runs are safe). */
export async function ensurePromTool(): Promise<string> {
  const source = (await Promise.all(["main.go", "go.mod", "go.sum"].map((f) => Deno.readTextFile(`${toolDir}/${f}`))))
    .join("\0");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(source)));
  const hash = [...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const dir = `${cacheRoot()}/prom-${hash}`;
  const bin = `${dir}/prom`;
  if (await Deno.stat(bin).then(() => true, () => false)) return bin;
  const tmp = `${dir}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(tmp, { recursive: true });
  try {
    const start = Date.now();
    await run(["go", "build", "-o", `${tmp}/prom`, "."], {
      cwd: toolDir,
      env: { ...Deno.env.toObject(), CGO_ENABLED: "0", GOFLAGS: "-trimpath" },
      inheritStderr: true,
    });
    console.error(`built the Prometheus test tool in ${((Date.now() - start) / 1000).toFixed(0)} s`);
    // Another run may have finished first: its binary is as good as ours.
    await Deno.rename(tmp, dir).catch(async (e) => {
      if (!(await Deno.stat(bin).then(() => true, () => false))) throw e;
    });
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return bin;
}

export interface PromSample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value?: number;
  readonly count?: number;
  readonly sum?: number;
  /** Upper bound (Go's float formatting: "0.005", "+Inf") → cumulative count. */
  readonly buckets?: Readonly<Record<string, number>>;
}

export interface PromFamily {
  readonly name: string;
  readonly type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  readonly help: string;
  readonly samples: ReadonlyArray<PromSample>;
}

export interface ParsedExposition {
  readonly families: ReadonlyArray<PromFamily>;
  /** promlint's findings (`promtool check metrics`): naming, units, help text … */
  readonly lint: ReadonlyArray<{ readonly metric: string; readonly text: string }>;
}

/** Parses an exposition with Prometheus' own parser (throws on a syntax error) and lints it. */
export async function parseExposition(text: string): Promise<ParsedExposition> {
  return JSON.parse(await run([await ensurePromTool(), "metrics"], { stdin: text }));
}

export interface PromRule {
  readonly group: string;
  readonly alert?: string;
  readonly record?: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** Metric names the expression selects. */
  readonly metrics: ReadonlyArray<string>;
}

/** Loads rule files as Prometheus does (throws with its errors). */
export async function checkRules(...files: string[]): Promise<ReadonlyArray<PromRule>> {
  return JSON.parse(await run([await ensurePromTool(), "rules", ...files]));
}

/** Metric names each PromQL expression selects (throws if one does not parse). */
export async function exprMetrics(exprs: ReadonlyArray<string>): Promise<ReadonlyArray<ReadonlyArray<string>>> {
  const out: Array<{ metrics: string[] }> = JSON.parse(
    await run([await ensurePromTool(), "exprs"], { stdin: JSON.stringify(exprs) }),
  );
  return out.map((o) => o.metrics);
}

/**
 * Evaluates every alert of `rulesFile` at `at` (e.g. "30m") over `series` (promqltest's `load <interval>` notation):
 * alert name → the results of its expression (its `for:` is not applied).
 */
export async function evalAlerts(
  rulesFile: string,
  at: string,
  series: string,
): Promise<
  Readonly<Record<string, ReadonlyArray<{ readonly labels: Record<string, string>; readonly value: number }>>>
> {
  return JSON.parse(await run([await ensurePromTool(), "eval", rulesFile, at], { stdin: series }));
}

/** The samples of one family in a parsed exposition (throws when the family is missing). */
export function family(parsed: ParsedExposition, name: string): PromFamily {
  const f = parsed.families.find((x) => x.name === name);
  if (!f) throw new Error(`no metric family ${name} in the exposition`);
  return f;
}

/** The samples of `name` whose labels include `labels`. */
export function samples(parsed: ParsedExposition, name: string, labels: Record<string, string> = {}): PromSample[] {
  return family(parsed, name).samples.filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/**
 * The q-quantile of a histogram's cumulative buckets (upper bound → count, "+Inf" included) as PromQL's
 * histogram_quantile estimates it: linear interpolation inside the bucket the rank falls in, from 0 for the first.
 */
export function histogramQuantile(q: number, buckets: Readonly<Record<string, number>>): number {
  const sorted = Object.entries(buckets).map(([le, n]) => [le === "+Inf" ? Infinity : Number(le), n] as const)
    .sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (total === 0) return NaN;
  const rank = q * total;
  let lower = 0, below = 0;
  for (const [le, n] of sorted) {
    if (n >= rank) {
      // In the +Inf bucket PromQL answers the highest finite bound.
      if (le === Infinity) return lower;
      return lower + (le - lower) * ((rank - below) / (n - below || 1));
    }
    [lower, below] = [le, n];
  }
  return lower;
}

/** Per bucket, `after` minus `before` (a histogram's observations between two scrapes). */
export const bucketDelta = (
  after: Readonly<Record<string, number>>,
  before: Readonly<Record<string, number>> = {},
): Record<string, number> => Object.fromEntries(Object.entries(after).map(([le, n]) => [le, n - (before[le] ?? 0)]));
