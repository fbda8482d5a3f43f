// The memory apiserver files its watches by one equality requirement of their selector
// (adapters/kube/memory_watchers.ts). That only ever saves work: for any objects and selectors, every watch whose
// selector matches an object's new or previous state is among the candidates of the write, exactly once, and a
// closed watch is gone. Generated with fast-check from a fixed seed, so a failure reproduces.
import fc from "fast-check";
import { WatcherRoutes } from "../../../adapters/kube/memory_watchers.ts";
import type { Selection } from "../../../adapters/kube/memory_index.ts";
import { labelsOf } from "../../../adapters/kube/memory_index.ts";
import type { JsonObject } from "../../../adapters/kube/patch.ts";
import {
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
} from "../../../adapters/kube/selectors.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const nodes = ["", "n1", "n2"];
const namespaces = ["a", "b"];

const objectArb = fc.record({
  ns: fc.constantFrom(...namespaces),
  node: fc.constantFrom(...nodes),
  app: fc.constantFrom("x", "y", undefined),
}).map(({ ns, node, app }): JsonObject => ({
  metadata: { name: "p", namespace: ns, ...(app ? { labels: { app } } : {}) },
  spec: { nodeName: node },
}));

const selectionArb = fc.record({
  ns: fc.constantFrom(...namespaces, undefined),
  field: fc.constantFrom("", ...nodes.flatMap((n) => [`spec.nodeName=${n}`, `spec.nodeName!=${n}`])),
  label: fc.constantFrom("", "app=x", "app!=x", "app in (y)", "app in (x,y)", "app", "!app"),
}).map(({ ns, field, label }): Selection & { readonly id: string } => {
  const fields = field ? parseFieldSelector(field) : [], labels = label ? parseLabelSelector(label) : [];
  return {
    id: `${ns}|${field}|${label}`,
    ...(ns ? { namespace: ns } : {}),
    fields,
    labels,
    matches: (o) =>
      (ns === undefined || (o.metadata as JsonObject).namespace === ns) && matchesFields(fields, o) &&
      matchesLabels(labels, labelsOf(o)),
  };
});

Deno.test("memory watches: every watch that may match a write is a candidate, once; a closed one is not", () => {
  fc.assert(
    fc.property(
      fc.array(selectionArb, { maxLength: 12 }),
      fc.array(fc.tuple(objectArb, fc.option(objectArb, { nil: undefined })), { minLength: 1, maxLength: 8 }),
      fc.nat(),
      (selections, writes, closeAt) => {
        const routes = new WatcherRoutes<{ readonly selection: Selection }>();
        const watches = selections.map((selection) => ({ selection }));
        for (const w of watches) routes.add(w);
        const closed = watches.length > 0 ? watches[closeAt % watches.length] : undefined;
        if (closed) routes.delete(closed);
        const open = watches.filter((w) => w !== closed);
        assertEquals(routes.size, open.length);
        for (const [object, previous] of writes) {
          const got = [...routes.candidates(object, previous)];
          assertEquals(new Set(got).size, got.length, "a watch offered twice");
          if (closed) assert(!got.includes(closed), "a closed watch offered");
          for (const w of open) {
            if (w.selection.matches(object) || (previous !== undefined && w.selection.matches(previous))) {
              assert(got.includes(w), `watch ${(w.selection as { id?: string }).id} missed`);
            }
          }
        }
      },
    ),
    { seed: 20261207, numRuns: 2000 },
  );
});
