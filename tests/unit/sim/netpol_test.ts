// MultiNetworkPolicies in `deno task sim`: k8s/examples/netpol.yaml — admitted policies are listed, a bad one is
// refused by admission naming the field, and each pod interface shows the policies that apply and the isolation per
// direction, in the text and the JSON report; the view is the engine's (compilePod), not a second reading.
import { Effect } from "effect";
import { layerLiveFs } from "../../../adapters/fs/live.ts";
import { runEmbedded } from "../../../adapters/sim/embedded.ts";
import { renderOutcome, type SimOutcome } from "../../../core/sim/report.ts";
import { loadScenario } from "../../../core/sim/scenario.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { repoRoot } from "../../harness/proc.ts";

const simulate = (paths: string[]): Promise<SimOutcome> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const scenario = yield* loadScenario(paths).pipe(Effect.provide(layerLiveFs));
      return yield* Effect.scoped(runEmbedded(scenario));
    }),
  );

const example = `${repoRoot}/k8s/examples/netpol.yaml`;

Deno.test("sim netpol: per pod and interface, the policies that apply and each direction's isolation", async () => {
  const o = await simulate([example]);
  assertEquals(o.errors, []);
  assertEquals(o.policies, ["shop/db-isolation", "shop/frontend-egress"]);
  assertEquals(o.rejected.map((r) => `${r.kind} ${r.namespace}/${r.name}`), ["MultiNetworkPolicy shop/typo"]);
  assert(
    o.rejected[0].reason.includes('spec.ingress[0].from[0].ipBlock.except[0]: "10.5.0.0/25" is not inside cidr'),
    o.rejected[0].reason,
  );
  const view = o.pods.flatMap((p) =>
    p.interfaces.map((i) => [
      p.name.replace(/-[a-z0-9]{7}-/, "-H-"),
      i.name,
      i.policy?.policies ?? [],
      i.policy?.ingress ?? "open",
      i.policy?.egress ?? "open",
    ])
  );
  assertEquals(view, [
    ["frontend-H-0", "eth0", ["shop/frontend-egress"], "open", { by: ["shop/frontend-egress"], allowedFlows: 2 }],
    ["frontend-H-0", "mgmt1", [], "open", "open"],
    ["frontend-H-1", "eth0", ["shop/frontend-egress"], "open", { by: ["shop/frontend-egress"], allowedFlows: 2 }],
    ["frontend-H-1", "mgmt1", [], "open", "open"],
    // Ingress from the frontends to the named port; egress isolated with no rule: everything dropped.
    [
      "db-0",
      "eth0",
      ["shop/db-isolation"],
      { by: ["shop/db-isolation"], allowedFlows: 1 },
      { by: ["shop/db-isolation"], allowedFlows: 0 },
    ],
    ["db-0", "mgmt1", [], "open", "open"],
    ["batch", "eth0", [], "open", "open"],
  ]);
  const text = renderOutcome(o);
  assert(text.includes("NETWORK POLICIES (2: shop/db-isolation, shop/frontend-egress)"), text);
  const row = text.split("\n").find((l) => l.startsWith("shop/db-0") && l.includes("db-isolation")) ?? "";
  assertEquals(row.split(/\s{2,}/), [
    "shop/db-0",
    "eth0",
    "data",
    "shop/db-isolation",
    "isolated, 1 allowed flow",
    "isolated, all denied",
  ]);
  // The JSON report carries the same view.
  const json = JSON.parse(JSON.stringify(o)) as SimOutcome;
  assertEquals(json.pods.find((p) => p.name === "db-0")?.interfaces[0].policy?.egress, {
    by: ["shop/db-isolation"],
    allowedFlows: 0,
  });
});

Deno.test("sim netpol: without policies the report has no policy section and no policy fields", async () => {
  const o = await simulate([`${repoRoot}/k8s/examples/demo.yaml`]);
  assertEquals(o.policies, undefined);
  assert(o.pods.every((p) => p.interfaces.every((i) => i.policy === undefined)));
  assert(!renderOutcome(o).includes("NETWORK POLICIES"));
});
