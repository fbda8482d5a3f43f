import { Effect, Layer } from "effect";
import { layerMemoryKube, MemoryApiServer } from "../../../adapters/kube/memory.ts";
import { type ClusterNetwork, ClusterNetworkResource, type DanmEp, DanmEpResource } from "../../../core/api/danm.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import { Ipam, ipamLayer, type Owner } from "../../../core/ipam/allocator.ts";
import { checkClusterConsistency, isConsistent } from "../../../core/ipam/consistency.ts";
import { blockStoreFromKube } from "../../../core/ipam/kube.ts";
import { Kube } from "../../../core/ports/kube.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

Deno.test("consistency checker: clean state, then a leak, an orphan DanmEp, a duplicate and a stale block", async () => {
  const server = new MemoryApiServer();
  const kubeLayer = layerMemoryKube(server);
  const layer = Layer.mergeAll(
    kubeLayer,
    ipamLayer().pipe(Layer.provide(blockStoreFromKube), Layer.provide(kubeLayer)),
  );
  await Effect.runPromise(Effect.scoped(Effect.provide(
    Effect.gen(function* () {
      const kube = yield* Kube;
      const ipam = yield* Ipam;
      const net = yield* kube.create(ClusterNetworkResource, {
        metadata: { name: "ext" },
        spec: { NetworkID: "ext", Options: { cidr: "10.7.0.0/24" } },
      } as ClusterNetwork);
      const ref = { kind: "ClusterNetwork" as const, name: "ext", uid: net.metadata.uid! };
      const addPod = (name: string) =>
        kube.create(PodResource, {
          metadata: { name, namespace: "default" },
          spec: { nodeName: "n1", containers: [{ name: "c", image: "x" }] },
        });
      const attach = (pod: { metadata: { name?: string; uid?: string } }, address?: string) =>
        Effect.gen(function* () {
          const owner: Owner = {
            namespace: "default",
            pod: pod.metadata.name!,
            podUid: pod.metadata.uid!,
            sandbox: `sb-${pod.metadata.name}`,
            iface: "eth1",
            node: "n1",
          };
          const got = address ??
            (yield* ipam.allocate({ ref, options: net.spec.Options! }, owner, "dynamic", undefined)).v4!;
          yield* kube.create(DanmEpResource, {
            metadata: { name: `ep-${pod.metadata.name}-${crypto.randomUUID().slice(0, 4)}`, namespace: "default" },
            spec: {
              NetworkName: "ext",
              apiType: "ClusterNetwork",
              EndpointID: "x",
              Pod: pod.metadata.name!,
              PodUID: pod.metadata.uid,
              Interface: { Name: "eth1", Address: got },
            },
          } as DanmEp);
          return got;
        });
      const a = yield* addPod("a"), b = yield* addPod("b");
      const addrA = yield* attach(a);
      yield* attach(b);
      const clean = yield* checkClusterConsistency({ graceSeconds: 0 });
      assert(isConsistent(clean), JSON.stringify(clean));

      // Pod b disappears without a DEL: its reservation leaks and its DanmEp is an orphan.
      yield* kube.delete(PodResource, "b", { namespace: "default", gracePeriodSeconds: 0 });
      // Pod c claims a's address in a DanmEp without any reservation: a duplicate, and unreserved.
      const c = yield* addPod("c");
      yield* attach(c, addrA);
      const report = yield* checkClusterConsistency({ graceSeconds: 0 });
      assertEquals(report.leakedReservations.map((l) => [l.pod, l.reason]), [["default/b", "pod gone"]]);
      assertEquals(report.orphanEndpoints.map((o) => o.pod), ["default/b"]);
      assertEquals(report.duplicates.map((d) => [d.address, d.holders]), [[
        "10.7.0.1",
        ["default/a/eth1", "default/c/eth1"],
      ]]);
      assertEquals(report.staleBlocks, []);

      // Deleting the network leaves its blocks stale.
      yield* kube.delete(ClusterNetworkResource, "ext");
      const after = yield* checkClusterConsistency({ graceSeconds: 0 });
      assertEquals(after.staleBlocks.length, 1);
      // Young reservations are in-flight ADDs, not leaks.
      const young = yield* checkClusterConsistency({ graceSeconds: 3600 });
      assertEquals(young.leakedReservations, []);
    }),
    layer,
  )));
});
