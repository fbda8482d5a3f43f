// Property test: random concurrent allocate / release / crash sequences across nodes never hand out an
// address twice, and after a reclaim round nothing leaks.
import { Effect, Layer } from "effect";
import { assert, assertEquals } from "../../harness/assert.ts";
import { Ipam, ipamLayer, type IpamNetwork, type Owner } from "../../../core/ipam/allocator.ts";
import { reclaimOrphans } from "../../../core/ipam/reclaim.ts";
import { memoryStore } from "./memory_store.ts";

/** Small deterministic PRNG so a failing seed can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const network: IpamNetwork = {
  ref: { kind: "ClusterNetwork", name: "prop", uid: "uid-prop" },
  options: { cidr: "10.9.0.0/25", net6: "2001:db8:9::/121", allocation_pool: { start: "10.9.0.2", end: "10.9.0.120" } },
};

for (const seed of [1, 2, 3, 4, 5]) {
  Deno.test(`IPAM property (seed ${seed}): no duplicates under concurrency and lost writes; no leaks after reclaim`, async () => {
    const rand = rng(seed);
    const store = memoryStore();
    store.lostAckRate = 0.05;
    const nodes = ["n1", "n2", "n3"];
    /** What each live pod believes it holds (only successful ADDs). */
    const held = new Map<string, { owner: Owner; v4?: string; v6?: string }>();
    const livePods = new Map<string, string>(); // "ns/name" -> uid
    let podSeq = 0;

    const runNode = (node: string, steps: number) =>
      Effect.scoped(Effect.provide(
        Effect.gen(function* () {
          const ipam = yield* Ipam;
          yield* Effect.forEach(Array.from({ length: steps }, (_, i) => i), () =>
            Effect.gen(function* () {
              const roll = rand();
              const mine = [...held.values()].filter((h) => h.owner.node === node);
              if (roll < 0.6 || mine.length === 0) {
                const id = podSeq++;
                const owner: Owner = {
                  namespace: "ns",
                  pod: `p${id}`,
                  podUid: `u${id}`,
                  sandbox: `s${id}`,
                  iface: "eth0",
                  node,
                };
                livePods.set(`ns/p${id}`, owner.podUid);
                const stat = rand() < 0.2 ? `10.9.0.${121 + Math.floor(rand() * 5)}` : "dynamic";
                const r = yield* Effect.result(
                  ipam.allocate(network, owner, stat, rand() < 0.5 ? "dynamic" : undefined),
                );
                if (r._tag === "Success") held.set(owner.podUid, { owner, ...r.success });
                else if (rand() < 0.5) livePods.delete(`ns/p${id}`); // the pod gave up and was deleted
              } else {
                const victim = mine[Math.floor(rand() * mine.length)];
                const r = yield* Effect.result(ipam.release(network, victim.owner));
                held.delete(victim.owner.podUid);
                livePods.delete(`${victim.owner.namespace}/${victim.owner.pod}`);
                if (r._tag === "Failure") { /* a lost DEL: the reclaimer must clean up */ }
              }
            }), { concurrency: 8, discard: true });
        }),
        ipamLayer({ maxAttempts: 30 }).pipe(Layer.provide(store.layer)),
      ));

    // Two rounds per node, each round a fresh allocator (a restart loses every cache).
    for (let round = 0; round < 2; round++) {
      await Effect.runPromise(Effect.all(nodes.map((n) => runNode(n, 80)), { concurrency: "unbounded" }));
    }

    // No address is believed held by two live pods.
    const seen = new Map<string, string>();
    for (const h of held.values()) {
      for (const a of [h.v4, h.v6]) {
        if (!a || a === "none") continue;
        assert(!seen.has(a), `${a} held by ${seen.get(a)} and ${h.owner.podUid}`);
        seen.set(a, h.owner.podUid);
      }
    }

    // Every reservation of a live pod matches what the pod holds (no duplicates in storage either).
    store.lostAckRate = 0;
    const directory = {
      podUid: (ns: string, name: string) => Effect.succeed(livePods.get(`${ns}/${name}`)),
      networkExists: () => Effect.succeed(true),
      liveNodes: Effect.succeed(new Set<string>()),
    };
    const report = await Effect.runPromise(
      Effect.provide(reclaimOrphans(directory, { graceSeconds: 0 }), store.layer),
    );
    assertEquals(report.raced, 0);
    const stored = new Map<string, string>();
    for (const b of store.blocks()) {
      for (const r of Object.values(b.spec.reservations)) {
        assert(livePods.get(r.pod) === r.podUid, `leak after reclaim: ${r.pod} ${r.podUid}`);
        const key = `${b.metadata.name}`;
        stored.set(`${key}/${r.podUid}/${r.iface}/${b.spec.family}`, r.podUid);
      }
    }
    // Pods whose ADD succeeded own exactly one reservation per family they hold.
    for (const h of held.values()) {
      const fams = [h.v4 && h.v4 !== "none" ? "IPv4" : "", h.v6 && h.v6 !== "none" ? "IPv6" : ""].filter(Boolean);
      for (const f of fams) {
        const n = [...stored.keys()].filter((k) => k.endsWith(`/${h.owner.podUid}/eth0/${f}`)).length;
        assertEquals(n, 1, `reservations of ${h.owner.podUid} ${f}`);
      }
    }
  });
}
