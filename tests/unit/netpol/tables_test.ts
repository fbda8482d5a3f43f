// The live PolicyTables layer's command lines (through the in-memory Process): nft runs inside the netns by
// nsenter, the ruleset goes on stdin behind the one-transaction replace prelude, nothing from it in argv.
import { Effect } from "effect";
import { makeLivePolicyTables } from "../../../adapters/nftables/live.ts";
import { MemoryProcess } from "../../../adapters/process/memory.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const hostile = `/run/netns/x; rm -rf /`;

Deno.test("live PolicyTables: nsenter --net=PATH -- nft -f -, the ruleset on stdin after the replace prelude", async () => {
  const proc = new MemoryProcess().register("nsenter", () => Effect.succeed({}));
  const tables = makeLivePolicyTables(proc.service, { path: "/sbin" });
  await Effect.runPromise(tables.apply(hostile, "table inet danm_netpol { }\n"));
  await Effect.runPromise(tables.remove(hostile));
  assertEquals(proc.calls.map((c) => c.argv), [
    ["nsenter", `--net=${hostile}`, "--", "nft", "-f", "-"],
    ["nsenter", `--net=${hostile}`, "--", "nft", "-f", "-"],
  ]);
  assertEquals(proc.calls[0].env, { PATH: "/sbin" });
  const stdin = proc.calls.map((c) => new TextDecoder().decode(c.stdin));
  assertEquals(stdin[0], "table inet danm_netpol\ndelete table inet danm_netpol\ntable inet danm_netpol { }\n");
  assertEquals(stdin[1], "table inet danm_netpol\ndelete table inet danm_netpol\n");
});

Deno.test("live PolicyTables: read maps nft's 'no such table' to undefined and other failures to typed errors", async () => {
  let stderr = "Error: No such file or directory\nlist table inet danm_netpol\n                ^^^^^^^^^^^\n";
  const proc = new MemoryProcess().register("nsenter", () => Effect.succeed({ code: 1, stderr }));
  const tables = makeLivePolicyTables(proc.service);
  assertEquals(await Effect.runPromise(tables.read("/n")), undefined);
  stderr = "Error: Could not process rule: Operation not permitted";
  const err = await Effect.runPromise(Effect.flip(tables.read("/n")));
  assert(err._tag === "PolicyTableError" && err.stderr.includes("Operation not permitted"), err.message);
  stderr = "nsenter: cannot open /n: No such file or directory";
  assertEquals(
    (await Effect.runPromise(Effect.flip(tables.apply("/n", ""))))
      ._tag,
    "PolicyNetnsGone",
  );
});

Deno.test("live PolicyTables: busybox nsenter's messages (the node image's) map to the same typed errors", async () => {
  let out = { code: 1, stderr: "nsenter: can't open '/n': No such file or directory" };
  const proc = new MemoryProcess().register("nsenter", () => Effect.succeed(out));
  const tables = makeLivePolicyTables(proc.service);
  assertEquals(
    (await Effect.runPromise(Effect.flip(tables.apply("/n", ""))))
      ._tag,
    "PolicyNetnsGone",
  );
  out = { code: 127, stderr: "nsenter: can't execute 'nft': No such file or directory" };
  const missing = await Effect.runPromise(Effect.flip(tables.apply("/n", "")));
  assert(missing._tag === "PolicyToolMissing" && missing.program === "nft", missing.message);
});
