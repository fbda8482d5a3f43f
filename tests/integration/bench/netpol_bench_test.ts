// bench:netpol's smoke run: the bench itself, in its --quick form (a few pods over two nodes' policy controllers, two
// policies, one change of each kind, one short throughput round of its three pairs), so a broken bench is caught by
// the suite. Not a timed test: the figures are only checked to be there and consistent; the bench itself fails on a
// change that never converged, a kernel table that differs from the predicted ruleset, or a namespace left behind.
import { Schema } from "effect";
import { assert } from "../../harness/assert.ts";
import { repoRoot, run } from "../../harness/proc.ts";

const Spread = Schema.Struct({ median: Schema.Number, p25: Schema.Number, p75: Schema.Number });
const Shape = Schema.Struct({
  ratio: Spread,
  ratio_ct_only: Spread,
  engine_over_ct: Spread,
  gbit: Schema.Struct({ unpoliced: Schema.Number, ct_only: Schema.Number, engine: Schema.Number }),
});
const Figures = Schema.decodeUnknownSync(Schema.Struct({
  pods: Schema.Number,
  policies: Schema.Number,
  converge_p50_ms: Schema.Number,
  converge_p99_ms: Schema.Number,
  throughput_ratio: Schema.Number,
  throughput_ratio_ct_only: Schema.Number,
  engine_over_ct_ratio: Schema.Number,
  cpu_ratio: Schema.Number,
  changes: Schema.Number,
  converge_timeouts: Schema.Number,
  affected_max: Schema.Number,
  kernel_checks: Schema.Number,
  kernel_mismatches: Schema.Number,
  tcp: Shape,
  udp: Shape,
  leftovers: Schema.Number,
}));

Deno.test("bench:netpol --quick runs end to end and prints its figures as the last line", async () => {
  const out = await run([Deno.execPath(), "run", "-A", `${repoRoot}/tests/bench/netpol_bench.ts`, "--quick"]);
  const figures = Figures(JSON.parse(out.trim().split("\n").at(-1)!));
  assert(figures.leftovers === 0, `namespaces left behind: ${figures.leftovers}`);
  for (const s of [figures.tcp, figures.udp]) {
    assert(Object.values(s.gbit).every((g) => g > 0), `no throughput measured: ${JSON.stringify(s)}`);
  }
  assert(figures.throughput_ratio === figures.tcp.ratio.median, "throughput_ratio is the TCP engine/unpoliced ratio");
  assert(figures.throughput_ratio_ct_only === figures.tcp.ratio_ct_only.median, "the ct-only comparator is reported");
  assert(figures.cpu_ratio > 0, "CPU per byte measured");
  assert(figures.changes === 4 && figures.converge_timeouts === 0, `changes: ${JSON.stringify(figures)}`);
  assert(figures.affected_max > 0, "no change affected any pod: the scenario measures nothing");
  assert(figures.converge_p50_ms > 0 && figures.converge_p99_ms >= figures.converge_p50_ms, "percentiles");
  assert(figures.kernel_checks > 0 && figures.kernel_mismatches === 0, `kernel read-back: ${JSON.stringify(figures)}`);
});
