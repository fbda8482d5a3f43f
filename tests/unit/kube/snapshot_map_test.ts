// Informer snapshots (adapters/kube/snapshot_map.ts): a change makes a new map and leaves every earlier one as
// it was; iteration keeps a Map's order (first insertion of a key, kept when its value is replaced).
import { SnapshotMap } from "../../../adapters/kube/snapshot_map.ts";
import { assertEquals } from "../../harness/assert.ts";

Deno.test("snapshot map: updates leave earlier snapshots unchanged and keep a Map's iteration order", () => {
  const a = SnapshotMap.from<number>([["x", 1], ["y", 2], ["z", 3]]);
  const b = a.set("y", 20).set("w", 4);
  const c = b.delete("x");
  assertEquals([...a], [["x", 1], ["y", 2], ["z", 3]]);
  assertEquals([...b], [["x", 1], ["y", 20], ["z", 3], ["w", 4]]);
  assertEquals([...c.keys()], ["y", "z", "w"]);
  assertEquals([c.size, c.get("y"), c.has("x"), c.get("x")], [3, 20, false, undefined]);
  assertEquals(c.delete("nope"), c);
  // The same sequence on a Map gives the same order.
  const m = new Map([["x", 1], ["y", 2], ["z", 3]]);
  m.set("y", 20).set("w", 4).delete("x");
  assertEquals([...c], [...m]);
  const seen: string[] = [];
  c.forEach((v, k) => seen.push(`${k}=${v}`));
  assertEquals(seen, ["y=20", "z=3", "w=4"]);
});
