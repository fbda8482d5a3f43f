// The live PolicyTables layer's command lines (through the in-memory Process): nft runs inside the netns by
// nsenter, the ruleset goes on stdin behind the one-transaction replace prelude, nothing from it in argv; a patch's
// element lines likewise. And the in-memory twin's patch.
import { Effect } from "effect";
import { makeLivePolicyTables } from "../../../adapters/nftables/live.ts";
import { MemoryProcess } from "../../../adapters/process/memory.ts";
import { MemoryPolicyTables } from "../../../adapters/nftables/memory.ts";
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

Deno.test("live PolicyTables: a patch is one nft -f - on stdin, every removal before the additions", async () => {
  const proc = new MemoryProcess().register("nsenter", () => Effect.succeed({}));
  const tables = makeLivePolicyTables(proc.service, { patchWith: "nft" });
  await Effect.runPromise(tables.patch(hostile, {
    from: "old",
    to: "new",
    sets: [
      { set: "in_0_l4v4", add: ["10.0.0.5/32 . tcp . 80"], remove: [] },
      { set: "in_0_allv4", add: ["10.1.0.0/31"], remove: ["10.1.0.0/32", "10.2.0.0/32"] },
    ],
  }));
  await Effect.runPromise(tables.patch(hostile, { from: "a", to: "a", sets: [] }));
  assertEquals(
    proc.calls.map((c) => c.argv),
    [["nsenter", `--net=${hostile}`, "--", "nft", "-f", "-"]],
    "empty: no run",
  );
  assertEquals(
    new TextDecoder().decode(proc.calls[0].stdin),
    "delete element inet danm_netpol in_0_allv4 { 10.1.0.0/32, 10.2.0.0/32 }\n" +
      "add element inet danm_netpol in_0_l4v4 { 10.0.0.5/32 . tcp . 80 }\n" +
      "add element inet danm_netpol in_0_allv4 { 10.1.0.0/31 }\n",
  );
});

Deno.test("memory PolicyTables: a patch holds on the table it starts from, and is refused (nothing changed) on another", async () => {
  const mem = new MemoryPolicyTables();
  const sets = [{ set: "s", add: ["10.0.0.1/32"], remove: [] }];
  await Effect.runPromise(mem.service.apply("/n", "A"));
  await Effect.runPromise(mem.service.patch("/n", { from: "A", to: "B", sets }));
  assertEquals(mem.tables.get("/n"), "B");
  const err = await Effect.runPromise(Effect.flip(mem.service.patch("/n", { from: "A", to: "C", sets })));
  assert(err._tag === "PolicyTableError" && err.op === "patch", err.message);
  assertEquals(mem.tables.get("/n"), "B");
  const absent = await Effect.runPromise(Effect.flip(mem.service.patch("/m", { from: "A", to: "C", sets })));
  assertEquals(absent._tag, "PolicyTableError");
  assertEquals(mem.ops.map((o) => `${o.op} ${o.ruleset}`), ["apply A", "patch B"]);
});
