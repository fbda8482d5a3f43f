// The per-node records and the "N/M nodes" condition, and the compare-and-swap writer against the memory apiserver.
import { Effect } from "effect";
import { DanmNetResource, HostInterfacesReady, type NetworkStatus } from "../../../core/api/danm.ts";
import { nextStatus, updateNetworkStatus } from "../../../core/netwatcher/status.ts";
import { Kube } from "../../../core/ports/kube.ts";
import { makeMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { danmNet, statusKinds } from "./fixture.ts";

const t0 = "2025-01-01T00:00:00Z", t1 = "2025-01-01T00:01:00Z";
const rec = (node: string, ready: boolean) => ({ node, ready, interfaces: ["vx_x"], message: ready ? "ok" : "bad" });
const input = (node: string, ready: boolean | undefined, now = t0, liveNodes?: Set<string>) => ({
  node,
  record: ready === undefined ? undefined : rec(node, ready),
  liveNodes,
  generation: 2,
  now,
});
const condition = (s: NetworkStatus | undefined) => s?.conditions?.find((c) => c.type === HostInterfacesReady);

Deno.test("status: records aggregate into the HostInterfacesReady condition", () => {
  let s = nextStatus(undefined, input("a", true))!;
  assertEquals(condition(s), {
    type: HostInterfacesReady,
    status: "True",
    observedGeneration: 2,
    lastTransitionTime: t0,
    reason: "AllNodesReady",
    message: "1/1 nodes",
  });
  s = nextStatus(s, input("b", true, t1))!;
  s = nextStatus(s, input("c", false, t1))!;
  assertEquals(s.hostInterfaces?.map((r) => r.node), ["a", "b", "c"]);
  assertEquals([condition(s)?.status, condition(s)?.message, condition(s)?.reason], [
    "False",
    "2/3 nodes",
    "NodesNotReady",
  ]);
  assertEquals(condition(s)?.lastTransitionTime, t1, "True → False moves the transition time");
  // Same records again: nothing to write.
  assertEquals(nextStatus(s, input("c", false, "2025-01-02T00:00:00Z")), undefined);
  // The message changes while the status stays False: the transition time stays.
  const s2 = nextStatus(s, input("b", false, "2025-01-02T00:00:00Z"))!;
  assertEquals([condition(s2)?.message, condition(s2)?.lastTransitionTime], ["1/3 nodes", t1]);
});

Deno.test("status: records of deleted nodes are dropped; the last record leaving removes the condition", () => {
  const other = { type: "Other", status: "True" as const, lastTransitionTime: t0, reason: "x", message: "y" };
  let s: NetworkStatus = { observedGeneration: 1, conditions: [other] };
  s = nextStatus(s, input("a", true))!;
  s = nextStatus(s, input("b", false))!;
  // b's Node is gone: a drops its record on the next write.
  s = nextStatus(s, input("a", true, t1, new Set(["a"])))!;
  assertEquals(s.hostInterfaces?.map((r) => r.node), ["a"]);
  assertEquals(condition(s)?.message, "1/1 nodes");
  // a's own record survives even if a's Node is not (yet) listed.
  assertEquals(nextStatus(s, input("a", true, t1, new Set())), undefined);
  // The network no longer needs host interfaces: back to the status netwatcher found.
  assertEquals(nextStatus(s, input("a", undefined)), { observedGeneration: 1, conditions: [other] });
});

Deno.test("status: concurrent writers converge through compare-and-swap (no record lost)", async () => {
  const server = new MemoryApiServer({ statusSubresources: statusKinds });
  await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
    const kube = yield* makeMemoryKube(server);
    const net = yield* kube.create(DanmNetResource, danmNet("cas", { host_device: "eth1", vxlan: 9 }));
    // Twenty nodes write at once, each from the same (soon stale) cached object.
    const nodes = Array.from({ length: 20 }, (_, i) => `n${String(i).padStart(2, "0")}`);
    const results = yield* Effect.forEach(
      nodes,
      (node, i) =>
        updateNetworkStatus(DanmNetResource, net, {
          node,
          record: rec(node, i % 2 === 0),
          liveNodes: undefined,
          now: t0,
        }),
      { concurrency: "unbounded" },
    ).pipe(Effect.provideService(Kube, kube));
    assertEquals(results.filter((r) => r === "written").length, 20);
    const stored = yield* kube.get(DanmNetResource, "cas", { namespace: "default" });
    assertEquals(stored.status?.hostInterfaces?.map((r) => r.node), nodes);
    assertEquals(condition(stored.status)?.message, "10/20 nodes");
    assert(condition(stored.status)?.status === "False");
  })));
});
