// renderTable's structured form and diffTables: peer churn is a change of set elements only (exact elements to add
// and remove), anything else (a set, chain or interface coming or going) is not a patch; applying a patch to the
// sets it starts from gives exactly the sets of the full render it leads to.
import { Effect } from "effect";
import fc from "fast-check";
import type { Flow, PodRules } from "../../../core/netpol/model.ts";
import { diffTables, type RenderedTable, renderNft, renderTable } from "../../../core/netpol/nft.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const origin = { policy: "ns1/p", rule: 0 };
const rules = (flows: Flow[]): PodRules => ({
  pod: "ns1/a",
  interfaces: [{ ifName: "net1", network: "DanmNet:ns1/net1", ingress: { policies: ["ns1/p"], flows } }],
});
const table = (flows: Flow[]) => Effect.runSync(renderTable(rules(flows)));
const tcp80 = (v4: string[], v6: string[] = []): Flow => ({
  peers: { v4, v6 },
  protocol: "TCP",
  ports: { from: 80, to: 80 },
  origin,
});
const anyProto = (v4: string[]): Flow => ({ peers: { v4, v6: [] }, origin });

/** The sets a patch leaves: `from`'s elements, the removed ones out, the added ones in. */
function patched(from: RenderedTable, to: RenderedTable): Map<string, Set<string>> | undefined {
  const diff = diffTables(from, to);
  if (diff === undefined) return undefined;
  const sets = new Map(from.sets.map((s) => [s.name, new Set(s.elements)]));
  for (const c of diff) {
    const s = sets.get(c.set)!;
    for (const e of c.remove) assert(s.delete(e), `removes ${e}, which ${c.set} does not hold`);
    for (const e of c.add) {
      assert(!s.has(e), `adds ${e}, which ${c.set} holds already`);
      s.add(e);
    }
  }
  return sets;
}
const setsOf = (t: RenderedTable) => new Map(t.sets.map((s) => [s.name, new Set(s.elements)]));

Deno.test("renderTable: the script is renderNft's; the skeleton is the script without the sets' elements", () => {
  const flows = [tcp80(["10.0.0.2/32"], ["fd00::2/128"]), anyProto(["10.9.0.0/16"])];
  const t = table(flows);
  assertEquals(t.script, Effect.runSync(renderNft(rules(flows))));
  assertEquals(t.sets.map((s) => [s.name, s.elements]), [
    ["in_0_l4v4", ["10.0.0.2/32 . tcp . 80"]],
    ["in_0_l4v6", ["fd00::2/128 . tcp . 80"]],
    ["in_0_allv4", ["10.9.0.0/16"]],
  ]);
  assert(!t.skeleton.includes("elements") && !t.skeleton.includes("10.0.0.2"), t.skeleton);
  assertEquals(t.skeleton, table([tcp80(["10.7.7.7/32"], ["fd00::7/128"]), anyProto(["10.8.0.0/16"])]).skeleton);
});

Deno.test("diffTables: a peer coming and going is exactly its elements; canonical CIDRs may merge", () => {
  const before = table([tcp80(["10.0.0.2/32", "10.0.0.8/32"]), anyProto(["10.1.0.0/32"])]);
  const after = table([tcp80(["10.0.0.2/32", "10.0.0.5/32"]), anyProto(["10.1.0.0/32", "10.1.0.1/32"])]);
  assertEquals(diffTables(before, after), [
    { set: "in_0_l4v4", add: ["10.0.0.5/32 . tcp . 80"], remove: ["10.0.0.8/32 . tcp . 80"] },
    // Two adjacent peers are one canonical CIDR: the old element goes, the merged one comes.
    { set: "in_0_allv4", add: ["10.1.0.0/31"], remove: ["10.1.0.0/32"] },
  ]);
  assertEquals(diffTables(after, after), []);
});

Deno.test("diffTables: a set, chain or interface coming or going is not a patch (the table is replaced whole)", () => {
  const v4only = table([tcp80(["10.0.0.2/32"])]);
  assertEquals(diffTables(v4only, table([tcp80(["10.0.0.2/32"], ["fd00::2/128"])])), undefined, "a v6 set comes");
  assertEquals(diffTables(table([tcp80(["10.0.0.2/32"], ["fd00::2/128"])]), v4only), undefined, "a v6 set goes");
  assertEquals(diffTables(v4only, table([{ peers: "any", origin }])), undefined, "accept-all: no sets, other rules");
  const twoIfs = Effect.runSync(renderTable({
    pod: "ns1/a",
    interfaces: [...rules([tcp80(["10.0.0.2/32"])]).interfaces, {
      ifName: "net2",
      network: "DanmNet:ns1/net2",
      egress: { policies: ["ns1/p"], flows: [] },
    }],
  }));
  assertEquals(diffTables(v4only, twoIfs), undefined, "an interface comes");
});

Deno.test("property: a patch turns the sets it starts from into exactly the full render's; else the skeleton differs", () => {
  const host = fc.integer({ min: 0, max: 15 }).map((i) => `10.0.0.${i}/32`);
  const port = fc.integer({ min: 1, max: 6 });
  const flow = fc.record({
    v4: fc.uniqueArray(host, { maxLength: 6 }),
    protocol: fc.constantFrom("TCP" as const, "UDP" as const, undefined),
    from: port,
    span: fc.integer({ min: 0, max: 3 }),
  }).map(({ v4, protocol, from, span }): Flow =>
    protocol === undefined
      ? { peers: { v4, v6: [] }, origin }
      : { peers: { v4, v6: [] }, protocol, ports: { from, to: from + span }, origin }
  );
  let patches = 0;
  fc.assert(
    fc.property(fc.array(flow, { maxLength: 4 }), fc.array(flow, { maxLength: 4 }), (a, b) => {
      const [from, to] = [table(a), table(b)];
      const sets = patched(from, to);
      if (sets === undefined) return assert(from.skeleton !== to.skeleton);
      patches++;
      assertEquals(sets, setsOf(to));
    }),
    { numRuns: 400 },
  );
  assert(patches > 50, `only ${patches} of 400 random pairs were patches: the property tested little`);
});
