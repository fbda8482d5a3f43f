// The IPAM reclaimer's scope on a node agent: its own node's reservations and those of nodes that no longer exist.
import { Effect, Layer } from "effect";
import { assertEquals } from "../../harness/assert.ts";
import { Ipam, ipamLayer, type IpamNetwork, type Owner } from "../../../core/ipam/allocator.ts";
import { reclaimOrphans } from "../../../core/ipam/reclaim.ts";
import { memoryStore } from "./memory_store.ts";

const net: IpamNetwork = {
  ref: { kind: "DanmNet", namespace: "default", name: "n1", uid: "uid-n1" },
  options: { cidr: "10.5.0.0/24" },
};
const owner = (node: string): Owner => ({
  namespace: "default",
  pod: `pod-on-${node}`,
  podUid: `uid-${node}`,
  sandbox: `sb-${node}`,
  iface: "eth1",
  node,
});

Deno.test("a node agent reclaims what pods that are gone held on its node and on removed nodes, not on live ones", async () => {
  const store = memoryStore();
  await Effect.runPromise(Effect.scoped(Effect.provide(
    Effect.gen(function* () {
      const ipam = yield* Ipam;
      for (const node of ["self", "live-other", "removed"]) {
        yield* ipam.allocate(net, owner(node), "dynamic", undefined);
      }
    }),
    ipamLayer().pipe(Layer.provide(store.layer)),
  )));
  // Every pod is gone; only "self" and "live-other" still have a Node object.
  const directory = {
    podUid: () => Effect.succeed(undefined),
    networkExists: () => Effect.succeed(true),
    liveNodes: Effect.succeed(new Set(["self", "live-other"])),
  };
  const report = await Effect.runPromise(
    Effect.provide(reclaimOrphans(directory, { graceSeconds: 0, node: "self" }), store.layer),
  );
  assertEquals(report.freed.map((f) => f.split(" ")[1]).sort(), ["default/pod-on-removed", "default/pod-on-self"]);
  const left = store.blocks().flatMap((b) => Object.values(b.spec.reservations).map((r) => r.node));
  assertEquals(left, ["live-other"], "the live node's agent frees its own");
});
