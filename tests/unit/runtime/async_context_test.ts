// adapters/runtime/effect_without_async_context.ts: effect loaded through it keeps no memory per fiber suspension,
// and every entry point that uses effect loads it that way, before anything else.
import { assert } from "../../harness/assert.ts";
import { moduleGraph } from "../../harness/modules.ts";
import { repoRoot } from "../../harness/proc.ts";

/** Heap growth (bytes, after full GCs) over `awaits` fiber suspensions, in a fresh Deno with or without the prelude. */
async function heapGrowth(withPrelude: boolean, awaits: number): Promise<number> {
  const script = `
    ${withPrelude ? `import "${repoRoot}/adapters/runtime/effect_without_async_context.ts";` : ""}
    import { Effect } from "effect";
    const gc = globalThis.gc;
    const suspend = (n) => Effect.gen(function* () { for (let i = 0; i < n; i++) yield* Effect.promise(() => Promise.resolve(i)); });
    await Effect.runPromise(suspend(1000));
    gc(); gc();
    const before = Deno.memoryUsage().heapUsed;
    await Effect.runPromise(suspend(${awaits}));
    gc(); gc();
    console.log(Deno.memoryUsage().heapUsed - before);
  `;
  const file = await Deno.makeTempFile({ prefix: "danm-heap-growth-", suffix: ".js" });
  await Deno.writeTextFile(file, script);
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", "--v8-flags=--expose-gc", `--config=${repoRoot}/deno.json`, file],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(out.success, `child failed: ${new TextDecoder().decode(out.stderr)}`);
    return Number(new TextDecoder().decode(out.stdout).trim());
  } finally {
    await Deno.remove(file);
  }
}

Deno.test("effect loaded without async_hooks keeps nothing per fiber suspension", async () => {
  const awaits = 200_000;
  const [without, withPrelude] = await Promise.all([heapGrowth(false, awaits), heapGrowth(true, awaits)]);
  // What the workaround is for: with Deno's AsyncResource every suspension stays reachable (~42 bytes each, 2.9.6).
  // Reported, not asserted: a Deno that fixes it makes the prelude unnecessary, not wrong.
  console.log(`heap growth over ${awaits} suspensions: ${without} bytes plain, ${withPrelude} bytes with the prelude`);
  assert(withPrelude < 1_000_000, `with the prelude the heap grew ${withPrelude} bytes over ${awaits} suspensions`);
});

Deno.test("every entry point that uses effect imports the prelude first", () => {
  const usesEffect = (rel: string) =>
    /(?:from|import)\s*"effect(?:\/[^"]*)?"/.test(Deno.readTextFileSync(`${repoRoot}/${rel}`));
  const entries = [...Deno.readDirSync(`${repoRoot}/cmd`)].filter((e) => e.name.endsWith(".ts")).map((e) =>
    `cmd/${e.name}`
  );
  let checked = 0;
  for (const entry of entries) {
    if (!moduleGraph(entry).some(usesEffect)) continue;
    checked++;
    const first = Deno.readTextFileSync(`${repoRoot}/${entry}`).match(/^import\s[^;]*;/m)?.[0];
    assert(
      first === `import "../adapters/runtime/effect_without_async_context.ts";`,
      `${entry}: first import is ${first}, not the effect prelude`,
    );
  }
  assert(checked >= 5, `only ${checked} entry points use effect?`);
});
