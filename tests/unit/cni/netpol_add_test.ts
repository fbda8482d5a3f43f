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
import { cniEnv, createNetwork, createPod, danmConf, makeWorld, nodeName, sandbox, type World } from "./fixture.ts";
import { localSandboxes } from "../../../core/cni/policy.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import { eventuallyHolds } from "../../harness/eventually.ts";
import { layerMemoryFs } from "../../../adapters/fs/memory.ts";

const podLinks = (w: World, netns: string) =>
  w.run(Effect.scoped(Effect.gen(function* () {
    const h = yield* w.netlink.netns(NetnsRef.path(netns));
    return (yield* h.links()).map((l) => l.name).sort();
  })));

async function policedWorld(tables: MemoryPolicyTables) {
  const w = await makeWorld({ policyTables: tables });
  // The pods' primary interface (eth0) is on `prim`, which no policy names; `int` (int1) is the policed one.
  await createNetwork(w, "DanmNet", "prim", {
    NetworkID: "prim",
    NetworkType: "ipvlan",
    Options: { host_device: "ens4", cidr: "10.11.0.0/24" },
  });
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
  const annotations = {
    "danm.io/interfaces": JSON.stringify([{ network: "prim", ip: "dynamic" }, { network: "int", ip: "dynamic" }]),
  };
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
    assertMatch(table, /iifname vmap \{ "int1" : jump in_0 \}/);
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

Deno.test("the policy controller follows a pod by the daemon's sandbox record, without DanmEps (as for NAD-only pods)", async () => {
  const tables = new MemoryPolicyTables();
  const w = await policedWorld(tables);
  try {
    const web = await attach(w, "web", { app: "web" });
    assertEquals(web.answer.code, 0, web.answer.stdout);
    assertEquals(tables.tables.has(web.sb.netns), false);
    // What the controller reads of the record: the ADD's own view of the pod (eth0 is there, select.ts leaves it open).
    const [sandbox] = await Effect.runPromise(
      Effect.provide(localSandboxes("/run/danm/sandboxes", nodeName), layerMemoryFs(w.fs)),
    );
    assertEquals(sandbox.netns, web.sb.netns);
    assertEquals(sandbox.attachments.map((a) => [a.ifName, a.network]), [
      ["eth0", "DanmNet:default/prim"],
      ["int1", "DanmNet:default/int"],
    ]);
    // Without its DanmEps (a NAD attachment gets none) the pod is still this node's: a label change polices it.
    for (const ep of (await Effect.runPromise(w.kube.list(DanmEpResource, { namespace: "default" }))).items) {
      await Effect.runPromise(w.kube.delete(DanmEpResource, ep.metadata.name ?? "", { namespace: "default" }));
    }
    await Effect.runPromise(w.kube.patch(PodResource, "web", {
      type: "merge",
      patch: { metadata: { labels: { app: "db" } } },
    }, { namespace: "default" }));
    await Effect.runPromise(eventuallyHolds(
      "web's table from its record",
      Effect.sync(() => /"int1" : jump in_0/.test(tables.tables.get(web.sb.netns) ?? "")),
      5_000,
    ));
  } finally {
    await w.dispose();
  }
});
