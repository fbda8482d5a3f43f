// `deno task sim --real` run as an operator runs it: the bundled real scenario on a real apiserver with real
// processes and network namespaces, pings over every secondary network.
import { assert, assertEquals } from "../harness/assert.ts";
import { repoRoot } from "../harness/proc.ts";

Deno.test("sim --real: the bundled scenario comes up on real components and every ping is answered", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}/cmd/sim.ts`, "--real", "-o", "json"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr.slice(-3000));
  const doc = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    pods: Array<{ name: string; status: string; interfaces: Array<{ name: string; network: string; ips: string[] }> }>;
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
});
