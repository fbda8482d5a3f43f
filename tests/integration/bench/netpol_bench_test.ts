// bench:netpol's smoke run: the bench itself, in its --quick form (one short throughput round, a few policies), so a
// broken bench is caught by the suite. Not a timed test: the figures are only checked to be there and sane.
import { Schema } from "effect";
import { assert } from "../../harness/assert.ts";
import { repoRoot, run } from "../../harness/proc.ts";

const Shape = Schema.Struct({ ratio: Schema.Number, policed_gbit: Schema.Number, unpoliced_gbit: Schema.Number });
const Figures = Schema.decodeUnknownSync(Schema.Struct({
  policies: Schema.Number,
  throughput_ratio: Schema.Number,
  tcp: Shape,
  udp: Shape,
  leftovers: Schema.Number,
}));

Deno.test("bench:netpol --quick runs end to end and prints its figures as the last line", async () => {
  const out = await run([Deno.execPath(), "run", "-A", `${repoRoot}/tests/bench/netpol_bench.ts`, "--quick"]);
  const figures = Figures(JSON.parse(out.trim().split("\n").at(-1)!));
  assert(figures.leftovers === 0, `namespaces left behind: ${figures.leftovers}`);
  for (const s of [figures.tcp, figures.udp]) {
    assert(s.policed_gbit > 0 && s.unpoliced_gbit > 0, `no throughput measured: ${JSON.stringify(s)}`);
  }
  assert(figures.throughput_ratio === figures.tcp.ratio, "throughput_ratio is the TCP ratio");
});
