// `deno task sim --real --kubelet` run as an operator runs it: the bundled real scenario on real nodes (kubelet +
// containerd, danm deployed from its images), pings over every secondary network, each node's versions in the JSON.
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { repoRoot } from "../harness/proc.ts";

Deno.test("sim --real --kubelet: the bundled scenario on real nodes, every ping answered, node versions reported", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}/cmd/sim.ts`, "--real", "--kubelet", "-o", "json"],
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
        node: string;
        status: string;
        interfaces: Array<{ name: string; network: string; ips: string[] }>;
      }
    >;
    pings: Array<{ network: string; ok: boolean }>;
    services: Array<{ name: string; endpoints: string[] }>;
    nodes: Array<
      { name: string; kubeletVersion: string; containerRuntimeVersion: string; hostInterfaces: Array<{ name: string }> }
    >;
  };
  // The Deployment's pods, named by its ReplicaSet and placed by the scheduler.
  assertEquals(doc.pods.length, 4);
  for (const p of doc.pods) {
    assertMatch(p.name, /^du-[a-z0-9]+-[a-z0-9]{5}$/);
    assertEquals(p.status, "Running");
    assertEquals(p.interfaces.map((i) => [i.name, i.network]), [["eth0", "default"], ["bh2", "backhaul"], [
      "fh1",
      "fronthaul",
    ]]);
  }
  assertEquals(new Set(doc.pods.map((p) => p.node)).size, 2, "pods on both nodes");
  assertEquals(doc.pings.filter((p) => p.network === "DanmNet backhaul").length, 12);
  assertEquals(doc.pings.filter((p) => p.network === "DanmNet fronthaul").length, 12);
  assert(doc.pings.every((p) => p.ok), JSON.stringify(doc.pings.filter((p) => !p.ok)));
  const fronthaul = doc.pods.map((p) => p.interfaces.find((i) => i.name === "fh1")!.ips[0].split("/")[0]).sort();
  assertEquals(doc.services.map((s) => [s.name, [...s.endpoints].sort()]), [["du-fronthaul", fronthaul]]);
  assertEquals(doc.nodes.map((n) => n.name), ["worker-1", "worker-2"]);
  for (const n of doc.nodes) {
    assertEquals(n.kubeletVersion, "v1.34.4");
    assertMatch(n.containerRuntimeVersion, /^containerd:\/\/1\.6\./);
    assertEquals(n.hostInterfaces.map((h) => h.name), ["vx_backhaul"]);
  }
});
