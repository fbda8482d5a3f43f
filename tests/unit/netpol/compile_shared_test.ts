// What a batch shares (compile.ts CompileCache: peers per rule, whole interfaces per pod signature; the engine
// renderer's tables per compiled interfaces; nft.ts's diffs per pair of tables) never changes a pod's result: on
// random worlds every pod compiles, renders and diffs exactly as it does alone.
import fc from "fast-check";
import { Effect } from "effect";
import { compilePod, compilePods } from "../../../core/netpol/compile.ts";
import { engineRenderer } from "../../../core/netpol/controller.ts";
import { diffTables, renderTable } from "../../../core/netpol/nft.ts";
import { assertEquals } from "../../harness/assert.ts";
import { buildWorld, podArb, policyArb } from "./gen.ts";

Deno.test("property: a batch's shared compile, render and diff give every pod what it gets alone", () => {
  fc.assert(
    fc.property(
      fc.array(podArb, { minLength: 1, maxLength: 6 }),
      fc.array(policyArb, { minLength: 1, maxLength: 3 }),
      fc.array(policyArb, { minLength: 1, maxLength: 3 }),
      fc.boolean(),
      (podSpecs, policiesA, policiesB, teamA) => {
        const before = buildWorld(podSpecs, policiesA, teamA);
        const after = buildWorld(podSpecs, policiesB, !teamA);
        const keys = [...after.pods.keys()].reverse();
        const batch = compilePods(after, keys);
        for (const key of keys) {
          const alone = compilePod(after, key);
          assertEquals(batch.get(key), alone, key);
          const table = (w: typeof after) => Effect.runSync(engineRenderer(w, key));
          const own = alone.interfaces.length === 0 ? undefined : Effect.runSync(renderTable(alone));
          const shared = table(after);
          assertEquals(shared?.script, own?.script, key);
          const prev = table(before);
          if (prev === undefined || shared === undefined || own === undefined) continue;
          const ownPrev = Effect.runSync(renderTable(compilePod(before, key)));
          assertEquals(diffTables(prev, shared), diffTables(ownPrev, own), key);
        }
      },
    ),
    { numRuns: 300 },
  );
});
