// The IPAM against the real apiserver: concurrent nodes, huge networks, exhaustion, reclaim.
import { Effect, Layer, Schema } from "effect";
import { layerLiveKube } from "../../../adapters/kube/live.ts";
import { type ClusterNetwork, ClusterNetworkResource } from "../../../core/api/danm.ts";
import { IPBlock, ipBlockResource, labels } from "../../../core/api/ipam.ts";
import { v3Header } from "../../../core/api/ipam_text.ts";
import { PodResource } from "../../../core/api/k8s.ts";
import { Ipam, ipamLayer, type IpamNetwork, type Owner } from "../../../core/ipam/allocator.ts";
import { blockStoreFromKube, kubeOwnerDirectory } from "../../../core/ipam/kube.ts";
import { reclaimOrphans } from "../../../core/ipam/reclaim.ts";
import { Kube } from "../../../core/ports/kube.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { uniqueName, useCluster } from "../../harness/cluster.ts";
import { installDanmCrds } from "../api/danm_crds.ts";

const cluster = await useCluster();
await installDanmCrds(cluster.kubeConfig);
const kubeLayer = layerLiveKube({ config: { _tag: "Kubeconfig", path: cluster.kubeconfigPath } }).pipe(Layer.orDie);

const run = <A, E>(program: Effect.Effect<A, E, Kube>) => Effect.runPromise(Effect.provide(program, kubeLayer));

/** Runs `program` as one node's allocator (its own Ipam instance, its own caches). */
const onNode = <A, E>(program: Effect.Effect<A, E, Ipam>) =>
  Effect.runPromise(Effect.scoped(Effect.provide(
    program,
    ipamLayer().pipe(Layer.provide(blockStoreFromKube), Layer.provide(kubeLayer)),
  )));

async function withNetwork<T>(options: Record<string, unknown>, body: (n: IpamNetwork) => Promise<T>): Promise<T> {
  const name = uniqueName("ipam");
  const created = await run(Effect.gen(function* () {
    const kube = yield* Kube;
    return yield* kube.create(ClusterNetworkResource, {
      metadata: { name },
      spec: { NetworkID: name.slice(0, 10), NetworkType: "ipvlan", Options: options },
    } as ClusterNetwork);
  }));
  const net: IpamNetwork = {
    ref: { kind: "ClusterNetwork", name, uid: created.metadata.uid! },
    options: created.spec.Options ?? {},
  };
  try {
    return await body(net);
  } finally {
    await run(Effect.gen(function* () {
      const kube = yield* Kube;
      yield* Effect.ignore(kube.delete(ClusterNetworkResource, name));
    }));
  }
}

const blocksOf = (n: IpamNetwork) =>
  run(Effect.gen(function* () {
    const kube = yield* Kube;
    return (yield* kube.list(ipBlockResource, { labelSelector: `${labels.networkUid}=${n.ref.uid}` })).items;
  }));

const owner = (i: number, node: string): Owner => ({
  namespace: "default",
  pod: `p-${node}-${i}`,
  podUid: `uid-${node}-${i}`,
  sandbox: `sb-${node}-${i}`,
  iface: "eth1",
  node,
});

const reservations = (blocks: ReadonlyArray<IPBlock>) => blocks.flatMap((b) => Object.values(b.spec.reservations));

Deno.test("10 nodes allocating concurrently on one network: 0 duplicates, then everything freed", async () => {
  await withNetwork({ cidr: "10.40.0.0/23" }, async (net) => {
    const nodes = Array.from({ length: 10 }, (_, i) => `node-${i}`);
    const results = await Promise.all(nodes.map((node) =>
      onNode(Effect.gen(function* () {
        const ipam = yield* Ipam;
        const got = yield* Effect.forEach(
          Array.from({ length: 30 }, (_, i) => i),
          (i) => ipam.allocate(net, owner(i, node), "dynamic", undefined),
          { concurrency: 16 },
        );
        return got.map((r) => r.v4!);
      }))
    ));
    const all = results.flat();
    assertEquals(all.length, 300);
    assertEquals(new Set(all).size, 300, "duplicate addresses handed out");
    const stored = reservations(await blocksOf(net));
    assertEquals(stored.length, 300);
    await Promise.all(nodes.map((node) =>
      onNode(Effect.gen(function* () {
        const ipam = yield* Ipam;
        yield* Effect.forEach(Array.from({ length: 30 }, (_, i) => i), (i) => ipam.release(net, owner(i, node)), {
          concurrency: 16,
        });
      }))
    ));
    assertEquals((await blocksOf(net)).length, 0, "blocks left after every address was released");
  });
});

Deno.test("an IPv4 /8 and an IPv6 /64 network allocate (dynamic and static at the far end) and free", async () => {
  await withNetwork({ cidr: "10.0.0.0/8", net6: "2001:db8:40::/64" }, async (net) => {
    await onNode(Effect.gen(function* () {
      const ipam = yield* Ipam;
      const a = yield* ipam.allocate(net, owner(1, "n"), "dynamic", "dynamic");
      assertEquals(a, { v4: "10.0.0.1/8", v6: "2001:db8:40::1/64" });
      const far = yield* ipam.allocate(net, owner(2, "n"), "10.255.255.254", "2001:db8:40::ffff:ffff:ffff:fffe");
      assertEquals(far, { v4: "10.255.255.254/8", v6: "2001:db8:40:0:ffff:ffff:ffff:fffe/64" });
      const mid = yield* ipam.allocate(net, owner(3, "n"), "10.128.7.9/8", undefined);
      assertEquals(mid.v4, "10.128.7.9/8");
    }));
    const blocks = await blocksOf(net);
    // Only the touched blocks exist: no object proportional to the network's size.
    assertEquals(blocks.length, 5);
    await onNode(Effect.gen(function* () {
      const ipam = yield* Ipam;
      for (const i of [1, 2, 3]) yield* ipam.release(net, owner(i, "n"));
    }));
    assertEquals((await blocksOf(net)).length, 0);
  });
});

Deno.test("a tiny pool: exhaustion is a typed error naming the network; release makes room; nothing left", async () => {
  await withNetwork(
    { cidr: "10.41.0.0/24", allocation_pool: { start: "10.41.0.5", end: "10.41.0.6" } },
    async (net) => {
      await onNode(Effect.gen(function* () {
        const ipam = yield* Ipam;
        yield* ipam.allocate(net, owner(1, "n"), "dynamic", undefined);
        yield* ipam.allocate(net, owner(2, "n"), "dynamic", undefined);
        const e = yield* Effect.flip(ipam.allocate(net, owner(3, "n"), "dynamic", undefined));
        assertEquals(e._tag, "PoolExhausted");
        assert(e.message.includes(net.ref.name), e.message);
        yield* ipam.release(net, owner(1, "n"));
        assertEquals((yield* ipam.allocate(net, owner(3, "n"), "dynamic", undefined)).v4, "10.41.0.5/24");
        yield* ipam.release(net, owner(2, "n"));
        yield* ipam.release(net, owner(3, "n"));
      }));
      assertEquals((await blocksOf(net)).length, 0);
    },
  );
});

Deno.test("the reclaimer frees reservations of pods that are gone and keeps those of live pods", async () => {
  await withNetwork({ cidr: "10.42.0.0/24" }, async (net) => {
    const podName = uniqueName("live");
    const pod = await run(Effect.gen(function* () {
      const kube = yield* Kube;
      return yield* kube.create(PodResource, {
        metadata: { name: podName, namespace: "default" },
        spec: { nodeName: "n", containers: [{ name: "c", image: "none" }] },
      });
    }));
    try {
      const live: Owner = { ...owner(1, "n"), pod: podName, podUid: pod.metadata.uid! };
      const gone = owner(2, "n");
      await onNode(Effect.gen(function* () {
        const ipam = yield* Ipam;
        yield* ipam.allocate(net, live, "dynamic", undefined);
        yield* ipam.allocate(net, gone, "dynamic", undefined);
      }));
      const report = await run(Effect.gen(function* () {
        const directory = yield* kubeOwnerDirectory;
        return yield* Effect.provide(reclaimOrphans(directory, { graceSeconds: 0 }), blockStoreFromKube);
      }));
      assert(report.freed.some((f) => f.includes(gone.pod)), JSON.stringify(report));
      const left = reservations(await blocksOf(net));
      assertEquals(left.map((r) => r.podUid), [live.podUid]);
      await onNode(Effect.gen(function* () {
        yield* (yield* Ipam).release(net, live);
      }));
    } finally {
      await run(Effect.gen(function* () {
        yield* Effect.ignore(
          (yield* Kube).delete(PodResource, podName, { namespace: "default", gracePeriodSeconds: 0 }),
        );
      }));
    }
  });
});

Deno.test("blocks of a deleted network are removed by the reclaimer", async () => {
  let net: IpamNetwork | undefined;
  await withNetwork({ cidr: "10.43.0.0/24" }, async (n) => {
    net = n;
    await onNode(Effect.gen(function* () {
      yield* (yield* Ipam).allocate(n, owner(1, "n"), "dynamic", undefined);
    }));
  });
  // withNetwork deleted the network; the pod "exists" as far as the directory is concerned.
  const report = await run(Effect.gen(function* () {
    const directory = yield* kubeOwnerDirectory;
    return yield* Effect.provide(
      reclaimOrphans({ ...directory, podUid: () => Effect.succeed("uid-n-1") }, { graceSeconds: 0 }),
      blockStoreFromKube,
    );
  }));
  assert(report.deletedBlocks.some((b) => b.startsWith(net!.ref.uid)), JSON.stringify(report));
  assertEquals((await blocksOf(net!)).length, 0);
});

/** IPBlocks with their reservations text as stored, undecoded: to write what an older danm wrote. */
const StoredIPBlock = Schema.Struct({
  ...IPBlock.fields,
  spec: Schema.Struct({ ...IPBlock.fields.spec.fields, reservations: Schema.String }),
});
const storedBlocks = { ...ipBlockResource, schema: StoredIPBlock };

/** The v2 text (older danm: positional lines, no header) of a block's reservations. */
const v2Text = (b: IPBlock) =>
  Object.entries(b.spec.reservations).map(([off, r]) =>
    `${off} ${r.pod} ${r.podUid} ${r.sandbox} ${r.iface} ${r.node} ${r.since}${r.static ? " static" : ""}`
  ).join("\n");

Deno.test("a block an older danm wrote (v2 text) keeps working: retried ADD, new allocations, DEL; rewritten in v3", async () => {
  await withNetwork({ cidr: "10.44.0.0/24" }, async (net) => {
    // Real-sized owners, whose IDs the v3 text packs, and one with short IDs, kept as they are.
    const real = (i: number): Owner => ({
      ...owner(i, "n"),
      podUid: crypto.randomUUID(),
      sandbox: crypto.randomUUID().replaceAll("-", "").repeat(2),
    });
    const owners = [real(1), real(2), owner(3, "n")];
    const first = await onNode(
      Effect.forEach(owners, (o) => Effect.flatMap(Ipam, (ipam) => ipam.allocate(net, o, "dynamic", undefined))),
    );
    const blocks = await blocksOf(net);
    assertEquals(blocks.length, 1);
    const [block] = blocks;
    const v3 = await run(Effect.flatMap(Kube, (kube) => kube.get(storedBlocks, block.metadata.name!)));
    assert(v3.spec.reservations.startsWith(v3Header), v3.spec.reservations);
    // Rewrite the block as an older danm stored it.
    await run(
      Effect.flatMap(
        Kube,
        (kube) => kube.update(storedBlocks, { ...v3, spec: { ...v3.spec, reservations: v2Text(block) } }),
      ),
    );
    const [old] = await blocksOf(net);
    assertEquals(old.spec.reservations, block.spec.reservations, "the v2 text reads as the same reservations");
    // A fresh allocator (a restarted node agent): the retried ADD gets its address, a new pod another one.
    const newcomer = real(4);
    const again = await onNode(Effect.gen(function* () {
      const ipam = yield* Ipam;
      const retried = yield* ipam.allocate(net, owners[1], "dynamic", undefined);
      const fresh = yield* ipam.allocate(net, newcomer, "dynamic", undefined);
      yield* ipam.release(net, owners[0]);
      return [retried.v4, fresh.v4];
    }));
    assertEquals(again[0], first[1].v4);
    assert(!first.some((f) => f.v4 === again[1]), `${again[1]} handed out twice`);
    const rewritten = await run(Effect.flatMap(Kube, (kube) => kube.get(storedBlocks, block.metadata.name!)));
    assert(rewritten.spec.reservations.startsWith(v3Header), rewritten.spec.reservations);
    const [now] = await blocksOf(net);
    assertEquals(
      Object.values(now.spec.reservations).map((r) => [r.pod, r.podUid, r.sandbox, r.node]).sort(),
      [owners[1], owners[2], newcomer].map((o) => [`default/${o.pod}`, o.podUid, o.sandbox, o.node]).sort(),
    );
    await onNode(
      Effect.flatMap(Ipam, (ipam) => Effect.forEach([owners[1], owners[2], newcomer], (o) => ipam.release(net, o))),
    );
    assertEquals((await blocksOf(net)).length, 0);
  });
});

globalThis.addEventListener("unload", () => {
  cluster.release();
});
