// What an operator sees of the CNI daemon on the in-memory layers: metrics per request, attachment, delegate and
// IPAM pool; one Event per failing pod, aggregated over retries; one log line per call. The same on the real
// apiserver, real namespaces and the real node agent process: tests/integration/observability/node_agent_test.ts.
import { Effect } from "effect";
import { EventResource } from "../../../core/api/k8s.ts";
import { NetworkSetupFailed } from "../../../core/cni/add.ts";
import { showAlloc } from "../../../core/ctl/commands.ts";
import { assert, assertEquals, assertMatch } from "../../harness/assert.ts";
import { eventually } from "../../harness/eventually.ts";
import {
  cniDir,
  cniEnv,
  createDelegatedNetwork,
  createNetwork,
  createPod,
  danmConf,
  getOutage,
  makeWorld,
  sandbox,
} from "./fixture.ts";

const mv = { network_kind: "DanmNet", network_namespace: "default", network: "mv" };

Deno.test("observability: metrics count ADDs by result, an Event names the failing network (one per pod, counted), one log line per call", async () => {
  const logLines: string[] = [];
  const w = await makeWorld({ logLines });
  try {
    w.fs.seed({ [`${cniDir}/broken.conf`]: JSON.stringify({ cniVersion: "1.0.0", name: "broken", type: "failing" }) });
    await createNetwork(w, "DanmNet", "bad", { NetworkID: "broken", NetworkType: "failing" });
    await createDelegatedNetwork(w);
    const good = [];
    for (const name of ["g1", "g2", "g3"]) {
      const pod = await createPod(w, name, {
        "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic" }]),
      });
      const sb = sandbox(w);
      assertEquals((await w.call("danm", cniEnv("ADD", sb, pod), danmConf())).code, 0);
      good.push({ pod, sb });
    }
    const failing = await createPod(w, "broken-pod", {
      "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic" }, { network: "bad" }]),
    });
    // The kubelet retries a failed sandbox with a new one: the same failure, twice.
    const tries = [sandbox(w), sandbox(w)];
    for (const sb of tries) assertEquals((await w.call("danm", cniEnv("ADD", sb, failing), danmConf())).code, 1);
    assertEquals((await w.call("danm", cniEnv("DEL", good[0].sb, good[0].pod), danmConf())).code, 0);

    const m = w.node.metrics;
    assertEquals(m.requests.count({ command: "ADD", result: "success" }), 3);
    assertEquals(m.requests.count({ command: "ADD", result: "error" }), 2);
    assertEquals(m.requests.count({ command: "DEL", result: "success" }), 1);
    assertEquals(m.ownTime.count({ command: "ADD", result: "success" }), 3);
    // mv's attachment worked in every pod (and was rolled back in the failing one); bad's failed both times.
    assertEquals(m.attachments.count({ ...mv, backend: "static", result: "success" }), 5);
    assertEquals(
      m.attachments.count({
        network_kind: "DanmNet",
        network_namespace: "default",
        network: "bad",
        backend: "static",
        result: "error",
      }),
      2,
    );
    assertEquals(m.delegates.count({ command: "ADD", plugin: "failing", result: "error" }), 2);
    assert(m.delegates.count({ command: "ADD", plugin: "macvlan", result: "success" }) >= 5, "macvlan delegate runs");
    // macvlan with danm's addresses starts before they are reserved: its fakeipam waited for a ticket.
    assert(m.ticketWait.count({ result: "success" }) >= 5, "ticket waits");
    assertEquals(m.ipam.allocationDuration.count({ result: "success" }), 5);
    assertEquals(m.ipam.allocations.get({ family: "4" }), 5);
    assertEquals(m.ipam.releases.get({ family: "4" }), 3); // two rollbacks and one DEL
    assertEquals(m.inFlight.get({ command: "ADD" }), 0);

    // Pool gauges after a scrape: as `danmctl showalloc` counts.
    const text = await Effect.runPromise(w.node.renderMetrics);
    const shown = await w.run(showAlloc("mv", "default", "DanmNet"));
    assertEquals(m.ipam.poolAllocated.get({ ...mv, family: "4" }), shown.pools[0].used);
    assertEquals(String(m.ipam.poolCapacity.get({ ...mv, family: "4" })), shown.pools[0].capacity);
    assertEquals(shown.pools[0].used, 2);
    assertMatch(text, /danm_ipam_pool_allocated_addresses\{[^}]*network="mv"[^}]*\} 2\n/);

    // One Event on the failing pod, naming the network, its interface and why; the retry counted on it.
    const events = await eventually("the Event counting both failures", async () => {
      const items = (await Effect.runPromise(w.kube.list(EventResource, { namespace: "default" }))).items;
      return items.length === 1 && items[0].count === 2 ? items : undefined;
    });
    const e = events[0];
    assertEquals([e.type, e.reason, e.involvedObject.kind, e.involvedObject.uid], [
      "Warning",
      NetworkSetupFailed,
      "Pod",
      failing.metadata.uid,
    ]);
    assertMatch(e.message ?? "", /DanmNet default\/bad \(eth1\).*deliberate failure/);
    assertEquals(e.source?.host, w.node.config.nodeName);
    assertEquals(m.events.get({ reason: NetworkSetupFailed }), 2);

    // One line per call: outcome, duration, pod, sandbox, networks; the failure with its reason.
    const calls = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.plugin === "danm");
    assertEquals(calls.map((c) => `${c.command} ${c.result}`), [
      "ADD success",
      "ADD success",
      "ADD success",
      "ADD error",
      "ADD error",
      "DEL success",
    ]);
    const failed = calls.filter((c) => c.result === "error");
    assertEquals(failed.map((c) => c.sandbox), tries.map((t) => t.containerId));
    for (const c of failed) {
      assertEquals([c.level, c.pod, c.networks], [
        "warn",
        "default/broken-pod",
        "DanmNet default/mv (eth0), DanmNet default/bad (eth1)",
      ]);
      assertMatch(String(c.error), /1 of 2 attachment\(s\) failed.*deliberate failure/s);
      assert(typeof c.duration_ms === "number" && typeof c.time === "string", JSON.stringify(c));
    }
    assertEquals(calls.at(-1)?.networks, "DanmNet default/mv (eth0)");
  } finally {
    await w.dispose();
  }
});

Deno.test("observability: a restarted daemon reports the pools its node's pods hold before its first request", async () => {
  const w = await makeWorld();
  try {
    await createNetwork(w, "DanmNet", "mv", {
      NetworkID: "mvnet",
      NetworkType: "macvlan",
      Options: { host_device: "ens5", cidr: "10.30.0.0/24" },
    });
    for (const name of ["r1", "r2"]) {
      const pod = await createPod(w, name, {
        "danm.io/interfaces": JSON.stringify([{ network: "mv", ip: "dynamic" }]),
      });
      assertEquals((await w.call("danm", cniEnv("ADD", sandbox(w), pod), danmConf())).code, 0);
    }
    const restarted = await w.newNode();
    await eventually(
      "the restarted daemon's caches",
      async () => (await Effect.runPromise(restarted.unsynced)).length === 0 ? true : undefined,
    );
    assertEquals(restarted.metrics.ipam.poolAllocated.get({ ...mv, family: "4" }), undefined);
    await Effect.runPromise(restarted.renderMetrics);
    assertEquals(restarted.metrics.ipam.poolAllocated.get({ ...mv, family: "4" }), 2);
    const shown = await w.run(showAlloc("mv", "default", "DanmNet"));
    assertEquals(String(restarted.metrics.ipam.poolCapacity.get({ ...mv, family: "4" })), shown.pools[0].capacity);
  } finally {
    await w.dispose();
  }
});

Deno.test("observability: readiness names what is missing (here: the apiserver does not answer)", async () => {
  const outage = getOutage();
  const w = await makeWorld({ statusProbeTtlMs: 0, wrapKube: outage.wrapKube });
  try {
    assertEquals(await Effect.runPromise(w.node.notReady), undefined);
    outage.down = true;
    assertMatch(
      await Effect.runPromise(w.node.notReady) ?? "",
      /^apiserver: the apiserver does not answer: .*injected outage/,
    );
    outage.down = false;
    assertEquals(await Effect.runPromise(w.node.notReady), undefined);
  } finally {
    await w.dispose();
  }
});

Deno.test("observability: a request the daemon has no room for is counted and logged once, as refused", async () => {
  const logLines: string[] = [];
  const w = await makeWorld({ logLines, maxConcurrent: 1, maxQueued: 0 });
  try {
    w.fs.seed({ [`${cniDir}/slow.conf`]: JSON.stringify({ cniVersion: "1.0.0", name: "slow", type: "sleeper" }) });
    await createNetwork(w, "DanmNet", "slow", { NetworkID: "slow", NetworkType: "sleeper" });
    const pod = await createPod(w, "s1", { "danm.io/interfaces": JSON.stringify([{ network: "slow" }]) });
    const running = w.call("danm", cniEnv("ADD", sandbox(w), pod), danmConf());
    await eventually(
      "the first ADD in its slot",
      () => Promise.resolve(w.node.metrics.inFlight.get({ command: "ADD" }) === 1 ? true : undefined),
    );
    const refused = await w.call("danm", cniEnv("ADD", sandbox(w), pod), danmConf());
    assertEquals([refused.code, (refused.json as { code: number }).code], [1, 11]);
    assertEquals(w.node.metrics.rejected.get({ command: "ADD" }), 1);
    // VERSION (the readiness probe's request) is never refused: busy is not broken.
    assertEquals((await w.call("danm", { CNI_COMMAND: "VERSION" }, { cniVersion: "1.1.0" })).code, 0);
    const busy = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.result === "busy");
    assertEquals(busy.map((l) => [l.msg, l.pod, l.level]), [["danm ADD refused: busy", "default/s1", "warn"]]);
    await running; // the sleeper times out (attachTimeoutMs) and the ADD is rolled back
  } finally {
    await w.dispose();
  }
});
