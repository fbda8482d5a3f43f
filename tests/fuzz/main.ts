// `deno task fuzz [--cases N] [--seed S] [--only NAME,...]`: property-based fuzzing of every decoder of outside input
// (tests/fuzz/targets.ts), 100,000 cases each by default. Prints a line per decoder, the first failures with the
// change that caused them, and as its last line one JSON object: {seed, cases_per_decoder, decoders: {name: {cases,
// failures}}, failures}. Exits 1 when any case broke the property. The unit tier runs the same targets seeded and
// smaller (tests/unit/fuzz/decoders_test.ts).
import "../../adapters/runtime/effect_without_async_context.ts";
import { parseArgs } from "node:util";
import { fuzzTarget, type TargetReport } from "./run.ts";
import { allTargets } from "./targets.ts";

const { values } = parseArgs({
  // `deno task … -- --flag` passes the "--" through.
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    cases: { type: "string", default: "100000" },
    seed: { type: "string", default: String(Date.now() % 2 ** 31) },
    only: { type: "string" },
  },
  strict: true,
});
const cases = Number(values.cases), seed = Number(values.seed);
if (!Number.isInteger(cases) || cases < 1 || !Number.isInteger(seed)) {
  console.error("usage: deno task fuzz [--cases N] [--seed S] [--only NAME,...]");
  Deno.exit(2);
}
const only = values.only?.split(",").filter(Boolean);
const targets = allTargets().filter((t) => !only || only.includes(t.name));
if (targets.length === 0) {
  console.error(`no decoder named ${only?.join(", ")}; decoders: ${allTargets().map((t) => t.name).join(", ")}`);
  Deno.exit(2);
}

// Decoders under test log nothing useful here; keep the report readable.
console.log(`fuzzing ${targets.length} decoders, ${cases} cases each, seed ${seed}`);
const reports: TargetReport[] = [];
for (const target of targets) {
  const r = await fuzzTarget(target, cases, seed);
  await target.dispose?.();
  reports.push(r);
  console.log(
    `${r.name.padEnd(32)} ${String(r.cases).padStart(7)} cases  ${String(r.failures).padStart(5)} failures  ` +
      `(${r.values} values, ${r.typedErrors} typed errors, ${r.seconds.toFixed(1)} s)`,
  );
  for (const f of r.examples) console.log(`    FAIL ${f.problem}\n      case: ${f.how}\n      input: ${f.input}`);
}
const failures = reports.reduce((a, r) => a + r.failures, 0);
console.log(JSON.stringify({
  seed,
  cases_per_decoder: cases,
  decoders: Object.fromEntries(reports.map((r) => [r.name, { cases: r.cases, failures: r.failures }])),
  failures,
}));
Deno.exit(failures === 0 ? 0 : 1);
