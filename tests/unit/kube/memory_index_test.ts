// The memory apiserver's indexes (adapters/kube/memory_index.ts) only ever save work: after any sequence of
// creates, label and status changes and deletes, a list with namespace, label and field selectors — whole or in
// pages — returns exactly the objects, in the order, that a scan of every stored object with the same selectors
// returns. Generated with fast-check from a fixed seed, so a failure reproduces.
import { Effect } from "effect";
import fc from "fast-check";
import { PodResource } from "../../../core/api/k8s.ts";
import { MemoryApiServer } from "../../../adapters/kube/memory.ts";
import type { JsonObject } from "../../../adapters/kube/patch.ts";
import {
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
} from "../../../adapters/kube/selectors.ts";
import { labelsOf } from "../../../adapters/kube/memory_index.ts";
import { assertEquals } from "../../harness/assert.ts";

const namespaces = ["a", "b", "c"];
const names = ["p0", "p1", "p2", "p3", "p4", "p5"];
const labelValues: Record<string, ReadonlyArray<string>> = {
  app: ["x", "y"],
  tier: ["web", "db"],
  zone: ["1", "2", "3"],
};
const nodes = ["n1", "n2", "n3"];
const phases = ["Pending", "Running", "Failed"];

const labelsArb = fc.record(
  Object.fromEntries(Object.entries(labelValues).map(([k, vs]) => [k, fc.constantFrom(...vs)])),
  { requiredKeys: [] },
) as fc.Arbitrary<Record<string, string>>;

type Op =
  | {
    readonly op: "create";
    readonly ns: string;
    readonly name: string;
    readonly labels: Record<string, string>;
    readonly node: string;
  }
  | {
    readonly op: "relabel";
    readonly ns: string;
    readonly name: string;
    readonly labels: Record<string, string | null>;
  }
  | { readonly op: "phase"; readonly ns: string; readonly name: string; readonly phase: string }
  | { readonly op: "delete"; readonly ns: string; readonly name: string };

const target = { ns: fc.constantFrom(...namespaces), name: fc.constantFrom(...names) };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("create" as const),
      ...target,
      labels: labelsArb,
      node: fc.constantFrom(...nodes),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("relabel" as const),
      ...target,
      // null removes the label (merge patch).
      labels: fc.record(
        Object.fromEntries(
          Object.entries(labelValues).map(([k, vs]) => [k, fc.constantFrom<string | null>(...vs, null)]),
        ),
        { requiredKeys: [] },
      ) as fc.Arbitrary<Record<string, string | null>>,
    }),
  },
  fc.record({ op: fc.constant("phase" as const), ...target, phase: fc.constantFrom(...phases) }),
  fc.record({ op: fc.constant("delete" as const), ...target }),
);

const labelTermArb = fc.oneof(
  ...Object.entries(labelValues).flatMap(([k, vs]) => [
    fc.constantFrom(...vs).map((v) => `${k}=${v}`),
    fc.constantFrom(...vs).map((v) => `${k}!=${v}`),
    fc.subarray([...vs], { minLength: 1 }).map((s) => `${k} in (${s.join(",")})`),
    fc.subarray([...vs], { minLength: 1 }).map((s) => `${k} notin (${s.join(",")})`),
    fc.constant(k),
    fc.constant(`!${k}`),
  ]),
);
const fieldTermArb = fc.oneof(
  fc.constantFrom(...nodes).map((n) => `spec.nodeName=${n}`),
  fc.constantFrom(...nodes).map((n) => `spec.nodeName!=${n}`),
  fc.constantFrom(...phases).map((p) => `status.phase=${p}`),
  fc.constantFrom(...phases).map((p) => `status.phase!=${p}`),
  fc.constantFrom(...names).map((n) => `metadata.name=${n}`),
  fc.constantFrom(...namespaces).map((n) => `metadata.namespace=${n}`),
);
const queryArb = fc.record({
  namespace: fc.option(fc.constantFrom(...namespaces), { nil: undefined }),
  labelSelector: fc.array(labelTermArb, { maxLength: 2 }).map((t) => t.join(",")),
  fieldSelector: fc.array(fieldTermArb, { maxLength: 1 }).map((t) => t.join(",")),
  limit: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }),
});
type Query = typeof queryArb extends fc.Arbitrary<infer Q> ? Q : never;

const apply = (server: MemoryApiServer, o: Op) => {
  const ref = { rt: PodResource, namespace: o.ns, name: o.name };
  const b = server.backend;
  switch (o.op) {
    case "create":
      return b.create(ref, {
        metadata: { name: o.name, namespace: o.ns, labels: o.labels },
        spec: { nodeName: o.node, containers: [{ name: "c", image: "i" }] },
      }, {});
    case "relabel":
      return b.patch(ref, { type: "merge", patch: { metadata: { labels: o.labels } } }, {});
    case "phase":
      return b.patch(ref, { type: "merge", patch: { status: { phase: o.phase } } }, { subresource: "status" });
    case "delete":
      return b.delete(ref, { gracePeriodSeconds: 0 });
  }
};

const id = (o: JsonObject) => {
  const m = o.metadata as JsonObject;
  return `${m.namespace}/${m.name}@${m.resourceVersion}`;
};

/** The reference: every stored object, filtered one by one. */
const scan = (server: MemoryApiServer, q: Query): string[] => {
  const labels = parseLabelSelector(q.labelSelector), fields = parseFieldSelector(q.fieldSelector);
  return server.objects(PodResource)
    .filter((o) => q.namespace === undefined || (o.metadata as JsonObject).namespace === q.namespace)
    .filter((o) => matchesLabels(labels, labelsOf(o)) && matchesFields(fields, o))
    .map(id);
};

/** The list as a client pages through it. */
const listed = (server: MemoryApiServer, q: Query) =>
  Effect.gen(function* () {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = yield* server.backend.list({ rt: PodResource, namespace: q.namespace }, {
        labelSelector: q.labelSelector,
        fieldSelector: q.fieldSelector,
        ...(q.limit ? { limit: q.limit } : {}),
        ...(token ? { continue: token } : {}),
      });
      out.push(...page.items.map(id));
      token = page.continue;
    } while (token);
    return out;
  });

Deno.test("memory kube indexes: lists with selectors and pages return what a scan returns, across updates and deletes", async () => {
  let checked = 0, nonEmpty = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(opArb, { minLength: 1, maxLength: 60 }),
      fc.array(queryArb, { minLength: 1, maxLength: 8 }),
      async (ops, queries) => {
        const server = new MemoryApiServer();
        await Effect.runPromise(Effect.gen(function* () {
          // Every query runs after every write, so the indexes are read in every intermediate state.
          for (const o of ops) {
            yield* Effect.ignore(apply(server, o)); // conflicts and not-founds are part of the sequence
            for (const q of queries) {
              const want = scan(server, q);
              assertEquals(yield* listed(server, q), want, JSON.stringify(q));
              checked++;
              if (want.length > 0) nonEmpty++;
            }
          }
        }));
      },
    ),
    { seed: 23, numRuns: 500 },
  );
  // The property must have compared real lists, not only empty ones.
  if (nonEmpty < checked / 5) throw new Error(`only ${nonEmpty} of ${checked} compared lists were non-empty`);
});

Deno.test("memory kube indexes: objects handed out are frozen, so no caller can change the store through them", async () => {
  const server = new MemoryApiServer();
  const ref = { rt: PodResource, namespace: "a", name: "p" };
  const created = await Effect.runPromise(server.backend.create(ref, {
    metadata: { name: "p", namespace: "a", labels: { app: "x" } },
    spec: { nodeName: "n1", containers: [{ name: "c", image: "i" }] },
  }, {}));
  const got = await Effect.runPromise(server.backend.get(ref));
  for (const o of [created, got]) {
    let threw = false;
    try {
      ((o.metadata as JsonObject).labels as JsonObject).app = "y";
    } catch {
      threw = true;
    }
    assertEquals(threw, true);
  }
  const listedApp = await Effect.runPromise(
    server.backend.list({ rt: PodResource, namespace: "a" }, { labelSelector: "app=x" }),
  );
  assertEquals(listedApp.items.length, 1);
});
