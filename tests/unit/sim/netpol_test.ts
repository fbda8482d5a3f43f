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
  assertEquals(o.policies, ["shop/batch-quiet", "shop/db-isolation", "shop/frontend-egress"]);
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
      i.policy?.primary ? "primary" : i.policy?.ingress ?? "open",
      i.policy?.primary ? "primary" : i.policy?.egress ?? "open",
    ])
  );
  assertEquals(view, [
    ["frontend-H-0", "data1", ["shop/frontend-egress"], "open", { by: ["shop/frontend-egress"], allowedFlows: 2 }],
    ["frontend-H-0", "eth0", [], "open", "open"],
    ["frontend-H-0", "mgmt2", [], "open", "open"],
    ["frontend-H-1", "data1", ["shop/frontend-egress"], "open", { by: ["shop/frontend-egress"], allowedFlows: 2 }],
    ["frontend-H-1", "eth0", [], "open", "open"],
    ["frontend-H-1", "mgmt2", [], "open", "open"],
    // Ingress from the frontends to the named port; egress isolated with no rule: everything dropped.
    [
      "db-0",
      "data1",
      ["shop/db-isolation"],
      { by: ["shop/db-isolation"], allowedFlows: 1 },
      { by: ["shop/db-isolation"], allowedFlows: 0 },
    ],
    ["db-0", "eth0", [], "open", "open"],
    ["db-0", "mgmt2", [], "open", "open"],
    // batch's only interface is its primary one, on `data`: batch-quiet names the network but eth0 is not policed.
    ["batch", "eth0", ["shop/batch-quiet"], "primary", "primary"],
  ]);
  const text = renderOutcome(o);
  assert(text.includes("NETWORK POLICIES (3: shop/batch-quiet, shop/db-isolation, shop/frontend-egress)"), text);
  const row = text.split("\n").find((l) => l.startsWith("shop/db-0") && l.includes("db-isolation")) ?? "";
  assertEquals(row.split(/\s{2,}/), [
    "shop/db-0",
    "data1",
    "data",
    "shop/db-isolation",
    "isolated, 1 allowed flow",
    "isolated, all denied",
  ]);
  const batch = text.split("\n").find((l) => l.startsWith("shop/batch") && l.includes("batch-quiet")) ?? "";
  assertEquals(batch.split(/\s{2,}/).slice(4), ["not policed (primary interface)", "not policed (primary interface)"]);
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

Deno.test("sim netpol: admission warnings (a network that does not exist yet) reach the report, text and JSON", async () => {
  const policies = `${repoRoot}/tests/e2e/manifests/simreal_policies.yaml`;
  const o = await simulate([`${repoRoot}/k8s/examples/real.yaml`, policies]);
  assertEquals(o.errors, []);
  assertEquals(o.policies, ["demo/backhaul-open", "demo/fronthaul-du"]);
  assertEquals(o.warnings?.map((w) => [w.kind, w.namespace, w.name, w.source]), [
    ["MultiNetworkPolicy", "demo", "backhaul-open", policies],
  ]);
  assert(/entry 1: NetworkAttachmentDefinition or DanmNet demo\/midhaul does not exist/.test(o.warnings![0].warning));
  const text = renderOutcome(o);
  assert(text.includes(`ADMISSION WARNINGS\n  MultiNetworkPolicy demo/backhaul-open (${policies}):\n    `), text);
  // eth0 is on ClusterNetwork default, which fronthaul-du names: shown, not policed.
  const eth0 = o.pods[0].interfaces.find((i) => i.name === "eth0");
  assertEquals(eth0?.policy, { policies: ["demo/fronthaul-du"], primary: true });
  assertEquals(JSON.parse(JSON.stringify(o)).warnings.length, 1);
});
