// No giant closures: a function, method or closure in shipped code (core/, adapters/, cmd/) longer than
// `limit` lines fails here unless a `// long: <reason>` comment on the line before it says why it is kept whole.
// Parsed with the TypeScript compiler, so nested closures, generators and methods are all seen.
import { assertEquals } from "../../harness/assert.ts";
import { longFunctions } from "../../harness/function_length.ts";
import { modulesUnder } from "../../harness/modules.ts";
import { repoRoot } from "../../harness/proc.ts";

const limit = 150;

/**
 * Long functions owned by an open issue (#21), as "module name"; the check fails when one is gone too, so the
 * entry is removed with the split.
 */
const knownOffenders: ReadonlyArray<string> = [];

const describe = (module: string, text: string) =>
  longFunctions(module, text, limit).map((f) => `${f.module} ${f.name}`);

Deno.test("function length: a planted long closure fails; a stated reason or a short one passes", () => {
  const body = (n: number) => Array.from({ length: n }, (_, i) => `  const v${i} = ${i};`).join("\n");
  const planted = `export const make = (x: number) =>\n  Effect.gen(function* () {\n${body(160)}\n  });\n`;
  assertEquals(describe("core/planted.ts", planted), ["core/planted.ts make", "core/planted.ts make"]);
  const method = `class A {\n  run() {\n${body(151)}\n  }\n}\n`;
  assertEquals(longFunctions("adapters/a.ts", method, limit), [
    { module: "adapters/a.ts", line: 2, name: "run", lines: 153 },
  ]);
  assertEquals(describe("core/planted.ts", `// long: one state machine, read top to bottom\n${planted}`), []);
  assertEquals(describe("core/planted.ts", `// long:\n${planted}`), ["core/planted.ts make", "core/planted.ts make"]);
  assertEquals(describe("core/short.ts", `export function f() {\n${body(148)}\n}\n`), []);
});

Deno.test("function length: no function over 150 lines in core/, adapters/ or cmd/ without a stated reason", () => {
  const modules = modulesUnder(["core", "adapters", "cmd"]);
  assertEquals(modules.length > 50, true, `only ${modules.length} modules read`);
  const found = [
    ...new Set(modules.flatMap((m) => describe(m, Deno.readTextFileSync(`${repoRoot}/${m}`)))),
  ].sort();
  assertEquals(found, [...knownOffenders].sort());
});
