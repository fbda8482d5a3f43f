// `deno task sim --real` run as an operator runs it: the bundled real scenario on a real apiserver with real
// processes and network namespaces, pings over every secondary network — plus two MultiNetworkPolicies
// (manifests/simreal_policies.yaml): the report's policy view and the webhook's admission warnings.
import { assert, assertEquals } from "../harness/assert.ts";
import { repoRoot } from "../harness/proc.ts";
import type { SimInterfacePolicy } from "../../core/sim/policies.ts";

Deno.test("sim --real: the bundled scenario comes up on real components and every ping is answered", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${repoRoot}/cmd/sim.ts`,
      "--real",
      "-o",
      "json",
      `${repoRoot}/k8s/examples/real.yaml`,
      `${repoRoot}/tests/e2e/manifests/simreal_policies.yaml`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr.slice(-3000));
  const doc = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    pods: Array<
      {
        name: string;
        status: string;
        interfaces: Array<{ name: string; network: string; ips: string[]; policy?: SimInterfacePolicy }>;
      }
    >;
    policies?: string[];
    warnings?: Array<{ kind: string; namespace: string; name: string; warning: string; source: string }>;
    pings: Array<{ network: string; ok: boolean }>;
    services: Array<{ name: string; endpoints: string[] }>;
    nodes: Array<{ name: string; hostInterfaces: Array<{ name: string }> }>;
  };
  assertEquals(doc.pods.map((p) => [p.name, p.status]), [
    ["du-0", "Running"],
    ["du-1", "Running"],
    ["du-2", "Running"],
    ["du-3", "Running"],
  ]);
  for (const p of doc.pods) {
    assertEquals(p.interfaces.map((i) => [i.name, i.network]), [["eth0", "default"], ["bh2", "backhaul"], [
      "fh1",
      "fronthaul",
    ]]);
  }
  // 4 pods → 12 ordered pairs on each of the two secondary networks, all answered.
  assertEquals(doc.pings.filter((p) => p.network === "DanmNet backhaul").length, 12);
  assertEquals(doc.pings.filter((p) => p.network === "DanmNet fronthaul").length, 12);
  assert(doc.pings.every((p) => p.ok), JSON.stringify(doc.pings.filter((p) => !p.ok)));
  const fronthaul = doc.pods.map((p) => p.interfaces.find((i) => i.name === "fh1")!.ips[0].split("/")[0]).sort();
  assertEquals(doc.services.map((s) => [s.name, [...s.endpoints].sort()]), [["du-fronthaul", fronthaul]]);
  for (const n of doc.nodes) assertEquals(n.hostInterfaces.map((h) => h.name), ["vx_backhaul"]);
  // The policy view over the real apiserver, as the in-memory sim shows it; eth0 is named but not policed.
  assertEquals(doc.policies, ["demo/backhaul-open", "demo/fronthaul-du"]);
  for (const p of doc.pods) {
    assertEquals(p.interfaces.map((i) => [i.name, i.policy]), [
      ["eth0", { policies: ["demo/fronthaul-du"], primary: true }],
      ["bh2", { policies: ["demo/backhaul-open"], ingress: { by: ["demo/backhaul-open"], allowedFlows: 1 } }],
      ["fh1", { policies: ["demo/fronthaul-du"], ingress: { by: ["demo/fronthaul-du"], allowedFlows: 1 } }],
    ]);
  }
  // The webhook's warning (the Warning header of the real apiserver's answer) reaches the report.
  assertEquals(doc.warnings?.map((w) => [w.kind, `${w.namespace}/${w.name}`, w.source.split("/").pop()]), [
    ["MultiNetworkPolicy", "demo/backhaul-open", "simreal_policies.yaml"],
  ]);
  assert(/demo\/midhaul does not exist/.test(doc.warnings![0].warning), doc.warnings![0].warning);
});
