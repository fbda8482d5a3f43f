// The node agent's periodic malloc_trim (adapters/runtime/malloc_trim.ts) gives freed malloc memory back: a Deno
// process that allocated ~60 MiB of small buffers and freed 95% of them (every 20th kept, so glibc cannot shrink its
// heap from the top) drops its RSS by tens of MiB at the first trim.
import { assert } from "../../harness/assert.ts";
import { repoRoot } from "../../harness/proc.ts";

const script = `
import { Effect } from "effect";
import { trimMallocEvery } from "${repoRoot}/adapters/runtime/malloc_trim.ts";
const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))[1]) / 1024;
const keep = [], all = [];
for (let i = 0; i < 60_000; i++) {
  const b = new Uint8Array(1000).fill(1);
  all.push(b);
  if (i % 20 === 0) keep.push(b);
}
all.length = 0;
globalThis.gc();
globalThis.gc();
const before = rss();
const trimmed = await Effect.runPromise(Effect.scoped(trimMallocEvery(60_000)));
console.log(JSON.stringify({ trimmed, before, after: rss(), kept: keep.length }));
`;

Deno.test("malloc_trim: memory freed after a burst of small allocations goes back to the kernel", async () => {
  const file = await Deno.makeTempFile({ dir: repoRoot, prefix: ".malloc-trim-", suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, script);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "-A", "--v8-flags=--expose-gc", file],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    assert(out.success, `${text}\n${new TextDecoder().decode(out.stderr)}`);
    const r = JSON.parse(text) as { trimmed: boolean; before: number; after: number };
    assert(r.trimmed, "glibc's malloc_trim was found");
    assert(r.before - r.after > 20, `RSS ${r.before.toFixed(1)} → ${r.after.toFixed(1)} MiB`);
  } finally {
    await Deno.remove(file).catch(() => {});
  }
});
