// Merge patch (RFC 7386), JSON patch (RFC 6902) and the server-side-apply approximation of the memory store.
import fc from "fast-check";
import { clone, jsonPatch, mergePatch, PatchError, serverSideApply } from "../../../adapters/kube/patch.ts";
import { deepFreeze } from "../../../adapters/kube/memory_index.ts";
import { assert, assertEquals, fail } from "../../harness/assert.ts";

Deno.test("clone: any JSON value, frozen or not, comes back equal, unfrozen and sharing nothing", () => {
  const shared = (a: unknown, b: unknown): boolean =>
    typeof a === "object" && a !== null &&
    (a === b ||
      Object.keys(a).some((k) => shared((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])));
  fc.assert(
    fc.property(fc.jsonValue(), fc.boolean(), (v, frozen) => {
      const input = frozen ? deepFreeze(structuredClone(v)) : v;
      const copy = clone(input);
      assertEquals(copy, structuredClone(v));
      assertEquals(JSON.stringify(copy), JSON.stringify(v), "same keys in the same order");
      assert(!shared(copy, input), "no object or array shared with the input");
      if (typeof copy === "object" && copy !== null) assert(!Object.isFrozen(copy), "the copy can be changed");
    }),
    { seed: 23, numRuns: 500 },
  );
  // An own "__proto__" key stays a key of the copy and does not become its prototype.
  const parsed = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}');
  const copy = clone(parsed);
  assertEquals(Object.getPrototypeOf(copy), Object.prototype);
  assertEquals(Object.keys(copy), ["__proto__", "a"]);
  assertEquals((copy as { polluted?: boolean }).polluted, undefined);
});

Deno.test("merge patch: RFC 7386 examples", () => {
  assertEquals(mergePatch({ a: "b" }, { a: "c" }), { a: "c" });
  assertEquals(mergePatch({ a: "b" }, { b: "c" }), { a: "b", b: "c" });
  assertEquals(mergePatch({ a: "b" }, { a: null }), {});
  assertEquals(mergePatch({ a: "b", b: "c" }, { a: null }), { b: "c" });
  assertEquals(mergePatch({ a: ["b"] }, { a: "c" }), { a: "c" });
  assertEquals(mergePatch({ a: { b: "c" } }, { a: { b: "d", c: null } }), { a: { b: "d" } });
  assertEquals(mergePatch({ a: [{ b: "c" }] }, { a: [1] }), { a: [1] });
  assertEquals(mergePatch({}, { a: { bb: { ccc: null } } }), { a: { bb: {} } });
});

Deno.test("JSON patch: all six operations, array indices and '-'", () => {
  const doc = { a: { b: [1, 2, 3] }, c: "x" };
  const out = jsonPatch(doc, [
    { op: "add", path: "/a/b/-", value: 4 },
    { op: "add", path: "/a/b/0", value: 0 },
    { op: "remove", path: "/a/b/1" },
    { op: "replace", path: "/c", value: "y" },
    { op: "copy", from: "/c", path: "/d" },
    { op: "move", from: "/d", path: "/e~1f" },
    { op: "test", path: "/a/b", value: [0, 2, 3, 4] },
  ]);
  assertEquals(out, { a: { b: [0, 2, 3, 4] }, c: "y", "e/f": "y" });
  assertEquals(doc, { a: { b: [1, 2, 3] }, c: "x" }, "the input is not modified");
  for (
    const ops of [
      [{ op: "remove" as const, path: "/nope" }],
      [{ op: "replace" as const, path: "/a/z", value: 1 }],
      [{ op: "test" as const, path: "/c", value: "z" }],
      [{ op: "add" as const, path: "/a/b/9", value: 1 }],
    ]
  ) {
    try {
      jsonPatch(doc, ops);
      fail(`${JSON.stringify(ops)} should fail`);
    } catch (e) {
      assert(e instanceof PatchError, String(e));
    }
  }
});

Deno.test("server-side apply: ownership, pruning, shared values, conflicts and force", () => {
  const first = serverSideApply(
    undefined,
    { metadata: { labels: { a: "1", b: "2" } }, spec: { x: 1 } },
    "m1",
    new Map(),
    false,
  );
  if ("conflicts" in first) return fail("no conflicts on create");
  const owned = (o: ReadonlyMap<string, ReadonlySet<string>>, m: string) => [...(o.get(m) ?? [])].sort();
  assertEquals(owned(first.owners, "m1"), ["/metadata/labels/a", "/metadata/labels/b", "/spec/x"]);
  const pruned = serverSideApply(
    first.object,
    { metadata: { labels: { a: "1" } }, spec: { x: 1 } },
    "m1",
    first.owners,
    false,
  );
  if ("conflicts" in pruned) return fail("no conflicts");
  assertEquals(pruned.object, { metadata: { labels: { a: "1" } }, spec: { x: 1 } });
  const same = serverSideApply(pruned.object, { spec: { x: 1 } }, "m2", pruned.owners, false);
  if ("conflicts" in same) return fail("applying the same value shares ownership");
  const clash = serverSideApply(same.object, { spec: { x: 2 } }, "m3", same.owners, false);
  if (!("conflicts" in clash)) return fail("a different value conflicts");
  assertEquals(clash.conflicts, ['conflict with "m1": .spec.x', 'conflict with "m2": .spec.x']);
  const forced = serverSideApply(same.object, { spec: { x: 2 } }, "m3", same.owners, true);
  if ("conflicts" in forced) return fail("force wins");
  assertEquals(forced.object.spec, { x: 2 });
  assertEquals(owned(forced.owners, "m1"), ["/metadata/labels/a"]);
  assertEquals(owned(forced.owners, "m3"), ["/spec/x"]);
  assertEquals(forced.owners.has("m2"), false);
});
