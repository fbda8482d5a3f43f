// The CNI ADD with the node agent's policy controller next to the daemon (as cmd/netwatcher runs them): a pod a
// MultiNetworkPolicy selects has its table before the ADD answers; when the table cannot be programmed the ADD fails
// (closed) and rolls back like any other failure — no interface, DanmEp, reservation or sandbox record is left.
import { Effect } from "effect";
import { DanmEpResource } from "../../../core/api/danm.ts";
import { ipBlockResource } from "../../../core/api/ipam.ts";
import { MultiNetworkPolicyResource, PolicyForAnnotation } from "../../../core/api/netpol.ts";
import { NetnsRef } from "../../../core/ports/netlink.ts";
import { MemoryPolicyTables } from "../../../adapters/nftables/memory.ts";
import { assertEquals, assertMatch } from "../../harness/assert.ts";
import { cniEnv, createNetwork, createPod, danmConf, makeWorld, sandbox, type World } from "./fixture.ts";

const podLinks = (w: World, netns: string) =>
  w.run(Effect.scoped(Effect.gen(function* () {
    const h = yield* w.netlink.netns(NetnsRef.path(netns));
    return (yield* h.links()).map((l) => l.name).sort();
  })));

async function policedWorld(tables: MemoryPolicyTables) {
  const w = await makeWorld({ policyTables: tables });
  await createNetwork(w, "DanmNet", "int", {
    NetworkID: "int",
    NetworkType: "ipvlan",
    Options: { host_device: "ens4", cidr: "10.10.0.0/24", net6: "2001:db8:10::/64", container_prefix: "int" },
  });
  await Effect.runPromise(w.kube.create(MultiNetworkPolicyResource, {
    metadata: { name: "deny", namespace: "default", annotations: { [PolicyForAnnotation]: "int" } },
    spec: { podSelector: { matchLabels: { app: "db" } }, policyTypes: ["Ingress"] },
  }));
  return w;
}

const attach = async (w: World, name: string, labels: Record<string, string>, before?: (netns: string) => void) => {
  const annotations = { "danm.io/interfaces": JSON.stringify([{ network: "int", ip: "dynamic" }]) };
  const pod = await createPod(w, name, annotations, "default", labels);
  const sb = sandbox(w);
  before?.(sb.netns);
  return { sb, answer: await w.call("danm", cniEnv("ADD", sb, pod), danmConf()) };
};

Deno.test("ADD with network policy: the selected pod's table is in place when the ADD answers; others get none", async () => {
  const tables = new MemoryPolicyTables();
  const w = await policedWorld(tables);
  try {
    const db = await attach(w, "db", { app: "db" });
    assertEquals(db.answer.code, 0, db.answer.stdout);
    // Right at the answer, not eventually: the ADD itself applied it (the pod's DanmEps may not be cached yet).
    const table = tables.tables.get(db.sb.netns) ?? "";
    assertMatch(table, /table inet danm_netpol/);
    assertMatch(table, /iifname vmap \{ "eth0" : jump in_0 \}/);
    const web = await attach(w, "web", { app: "web" });
    assertEquals(web.answer.code, 0, web.answer.stdout);
    assertEquals(tables.tables.has(web.sb.netns), false, "no policy selects web: no table, no nft run");
    assertEquals(tables.ops.filter((o) => o.netns === web.sb.netns), []);
  } finally {
    await w.dispose();
  }
});

Deno.test("ADD with network policy: a table nft refuses fails the ADD closed and leaves nothing behind", async () => {
  const tables = new MemoryPolicyTables();
  const w = await policedWorld(tables);
  try {
    const db = await attach(
      w,
      "db",
      { app: "db" },
      (netns) => tables.failing.set(netns, "Error: Could not process rule: No buffer space available"),
    );
    assertEquals(db.answer.code, 1);
    const err = db.answer.json as { msg: string; details: string };
    assertMatch(err.msg, /network policy of pod default\/db could not be programmed/);
    assertMatch(err.details, /No buffer space available/);
    assertEquals(await podLinks(w, db.sb.netns), ["lo"]);
    assertEquals((await Effect.runPromise(w.kube.list(DanmEpResource, { namespace: "default" }))).items.length, 0);
    const reservations = (await Effect.runPromise(w.kube.list(ipBlockResource))).items
      .flatMap((b) => Object.values(b.spec.reservations));
    assertEquals(reservations.length, 0);
    assertEquals(Object.keys(w.fs.files()).filter((f) => f.startsWith("/run/danm/sandboxes/")), []);
  } finally {
    await w.dispose();
  }
});
