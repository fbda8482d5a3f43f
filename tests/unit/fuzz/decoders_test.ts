// The seeded fuzzing of every decoder of outside input (tests/fuzz), small enough for the unit tier: the same
// targets and property as `deno task fuzz`, a fixed seed, a few hundred cases each.
import "../../../adapters/runtime/effect_without_async_context.ts";
import { fuzzTarget } from "../../fuzz/run.ts";
import { allTargets } from "../../fuzz/targets.ts";
import { fail } from "../../harness/assert.ts";

const seed = 18;
const cases = 300;

for (const target of allTargets()) {
  Deno.test(`fuzz: ${target.name} answers ${cases} generated inputs with a value or a typed error (seed ${seed})`, async () => {
    try {
      const r = await fuzzTarget(target, cases, seed);
      if (r.cases !== cases) fail(`ran ${r.cases} of ${cases} cases`);
      if (r.failures > 0) {
        fail(
          `${r.failures} of ${r.cases} cases broke the property:\n` +
            r.examples.map((f) => `  ${f.problem}\n    case: ${f.how}\n    input: ${f.input}`).join("\n"),
        );
      }
      // Both sides of the property are exercised, or the generator has gone blind.
      if (r.values === 0 || r.typedErrors === 0) fail(`only ${r.values} values and ${r.typedErrors} typed errors`);
    } finally {
      await target.dispose?.();
    }
  });
}
