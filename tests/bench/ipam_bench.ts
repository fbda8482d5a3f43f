// `deno task bench:ipam`: danm's IPAM against the real peers and a model of DANM's scheme, all on one real etcd +
// kube-apiserver started for the run. Workload: 10 simulated nodes × 16 concurrent allocators, one /16 network each;
// danm until two thirds of the pool are handed out (BENCH_WARMUP, BENCH_FILL, BENCH_BASELINE_SECONDS below).
// Prints readable lines, then one JSON object as the last line. Needs root: it re-runs itself inside a private
// network + mount namespace (DANM v4.3.0 allocates through CNI ADDs into network namespaces).
//
// Real peers (tests/bench/peers/ipam.ts), same 160 concurrent requesters, BENCH_PEER_ROUNDS allocations each
// (default 2), a peer that has not finished after BENCH_PEER_TIMEOUT_S (default 600) reported as stalled:
//   - Whereabouts v0.9.2: IPAM-only CNI ADDs of its real binary from one /16 range;
//   - DANM v4.3.0: CNI ADDs of its real `danm` (one MACVLAN attachment each: its IPAM is inside that binary).
//
// The model ("DANM scheme model") is DANM's storage model as danm-spec §3 describes it: the whole allocation
// bitmask lives base64-encoded in the network object (`spec.Options.alloc`); an allocation reads the network,
// takes the lowest clear bit of the pool, and writes the whole object back with its resourceVersion, retrying
// on conflict without backoff. A model of the scheme without DANM's per-ADD work, not DANM's code.
import "../../adapters/runtime/effect_without_async_context.ts";
import * as k8s from "@kubernetes/client-node";
import { Effect, Layer } from "effect";
import { layerLiveKube } from "../../adapters/kube/live.ts";
import { type ClusterNetwork, ClusterNetworkResource } from "../../core/api/danm.ts";
import { ipBlockResource, labels } from "../../core/api/ipam.ts";
import { Ipam, ipamLayer, type IpamNetwork, type IpamStats, type Owner } from "../../core/ipam/allocator.ts";
import { blockStoreFromKube } from "../../core/ipam/kube.ts";
import { Kube } from "../../core/ports/kube.ts";
import { startApiServer } from "../harness/apiserver.ts";
import { isolated } from "../harness/isolate.ts";
import { run } from "../harness/proc.ts";
import { installDanmCrds } from "../integration/api/danm_crds.ts";
import { type Rest, restClient } from "../integration/api/rest.ts";
import { processCpuMs } from "./accounting.ts";
import { danmGoIpam, type PeerIpamResult, type PeerLoad, whereaboutsIpam } from "./peers/ipam.ts";

const outside = await isolated("DANM_BENCH_ISOLATED", import.meta.filename!, Deno.args).catch((e) => {
  console.error(`bench:ipam: ${e instanceof Error ? e.message : e}`);
  return 1;
});
if (outside !== undefined) Deno.exit(outside);

const nodes = Number(Deno.env.get("BENCH_NODES") ?? 10);
const perNode = Number(Deno.env.get("BENCH_ALLOCATORS") ?? 16);
const poolSize = 65_534; // the /16's addresses without network and broadcast
// A fixed amount of work rather than a fixed time, so that a faster machine does not measure a fuller pool: the first
// BENCH_WARMUP allocations warm up (JIT, connections, each node opening its first blocks) and are reported on their
// own; the run stops once BENCH_FILL of the pool is handed out (default two thirds: steady figures, short of running
// the pool dry, where nodes go looking for room in each other's blocks). The comparator runs BENCH_BASELINE_SECONDS.
const warmupCount = Number(Deno.env.get("BENCH_WARMUP") ?? 8_000);
const fill = Number(Deno.env.get("BENCH_FILL") ?? 0.66);
const totalCount = Math.floor(poolSize * fill);
const baselineSeconds = Number(Deno.env.get("BENCH_BASELINE_SECONDS") ?? 5);
const peerLoad: PeerLoad = {
  requesters: nodes * perNode,
  rounds: Number(Deno.env.get("BENCH_PEER_ROUNDS") ?? 2),
  timeoutMs: Number(Deno.env.get("BENCH_PEER_TIMEOUT_S") ?? 600) * 1000,
};

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};
const round = (x: number) => Math.round(x * 100) / 100;
// For profiling danm's side alone (e.g. with --cpu-prof): its part, then its JSON line, without model and peers.
const danmOnly = Deno.env.get("BENCH_IPAM_DANM_ONLY") === "1";

interface RunResult {
  /** Every address handed out, warm-up included (for the duplicate count). */
  readonly addresses: string[];
  /** Allocations started in the measured window. */
  readonly latenciesMs: number[];
  readonly warmupLatenciesMs: number[];
  readonly errors: number;
  /** From the end of the warm-up until the last allocation started in the window finished. */
  readonly elapsedS: number;
}

const noStats: IpamStats = { batches: 0, ops: 0, writes: 0, conflicts: 0, lostCreates: 0 };
const totals: IpamStats = { ...noStats };

/** When a run measures and when it stops: after `totalCount` allocations, or `measureSeconds` into the measuring. */
interface Workload {
  readonly warmupCount: number;
  readonly totalCount?: number;
  readonly measureSeconds?: number;
}

/** Runs `allocate` from nodes × perNode loops until the workload is done. Each node gets its own connection. */
async function drive(
  allocate: (node: number, seq: number) => Effect.Effect<string, unknown, Kube | Ipam>,
  layerFor: () => Layer.Layer<Kube | Ipam>,
  work: Workload,
): Promise<RunResult> {
  const addresses: string[] = [], latenciesMs: number[] = [], warmupLatenciesMs: number[] = [];
  let errors = 0, lastDone = 0, started = 0, measuredFrom = Infinity, end = Infinity;
  await Promise.all(Array.from({ length: nodes }, (_, node) =>
    Effect.runPromise(Effect.scoped(Effect.provide(
      Effect.forEach(Array.from({ length: perNode }, (_, a) => a), (a) =>
        Effect.gen(function* () {
          let seq = 0;
          while (work.totalCount === undefined || started < work.totalCount) {
            const measured = started++ >= work.warmupCount;
            const t0 = performance.now();
            if (measured && measuredFrom === Infinity) {
              measuredFrom = t0;
              if (work.measureSeconds !== undefined) end = t0 + work.measureSeconds * 1000;
            }
            if (t0 >= end) break;
            const r = yield* Effect.result(allocate(node, a * 1_000_000 + seq++));
            const t1 = performance.now();
            if (r._tag === "Success") {
              (measured ? latenciesMs : warmupLatenciesMs).push(t1 - t0);
              addresses.push(r.success);
            } else errors++;
            if (measured) lastDone = Math.max(lastDone, t1);
          }
        }), { concurrency: "unbounded", discard: true }).pipe(
          Effect.andThen(Effect.gen(function* () {
            const s = (yield* Ipam).stats();
            for (const k of Object.keys(totals) as Array<keyof IpamStats>) totals[k] += s[k];
          })),
        ),
      layerFor(),
    )))));
  return { addresses, latenciesMs, warmupLatenciesMs, errors, elapsedS: (lastDone - measuredFrom) / 1000 };
}

const duplicatesOf = (xs: string[]) => xs.length - new Set(xs).size;

/**
 * The apiserver's requests to etcd for IPBlocks by operation (etcd_requests_total). An update whose stored object the
 * apiserver's watch cache has not caught up with yet is first tried against the stale copy, fails its resourceVersion
 * check and reads the object from etcd again: "get" beside "update" counts those second tries (and the client's own
 * re-reads after a lost race, `conflicts` + `lostCreates`).
 */
async function etcdIpBlockRequests(rest: Rest): Promise<Record<string, number>> {
  const text = String((await rest.call("GET", "/metrics")).body);
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    if (!line.startsWith("etcd_requests_total{") || !line.includes('resource="ipblocks"')) continue;
    const operation = /operation="([^"]+)"/.exec(line)?.[1] ?? "?";
    out[operation] = (out[operation] ?? 0) + Number(line.split(" ").pop());
  }
  return out;
}

// --- DANM scheme ------------------------------------------------------------------------------------------

function bitmask(bits: number, set: number[]): string {
  const bytes = new Uint8Array(Math.ceil(bits / 8));
  for (const i of set) bytes[i >> 3] |= 0x80 >> (i & 7);
  return btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
}

const danmAllocate = (networkName: string) =>
  Effect.gen(function* () {
    const kube = yield* Kube;
    for (let attempt = 0; attempt < 100_000; attempt++) {
      const net = yield* kube.get(ClusterNetworkResource, networkName);
      const raw = atob(net.spec.Options?.alloc ?? "");
      const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
      let found = -1;
      for (let i = 1; i < bytes.length * 8 - 1; i++) {
        if ((bytes[i >> 3] & (0x80 >> (i & 7))) === 0) {
          found = i;
          break;
        }
      }
      if (found < 0) return yield* Effect.fail("exhausted");
      bytes[found >> 3] |= 0x80 >> (found & 7);
      const alloc = btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
      const updated = yield* Effect.result(kube.update(ClusterNetworkResource, {
        ...net,
        spec: { ...net.spec, Options: { ...net.spec.Options, alloc } },
      }));
      if (updated._tag === "Success") return `10.61.${found >> 8}.${found & 255}/16`;
      if (updated.failure._tag !== "KubeConflict") return yield* updated.failure;
    }
    return yield* Effect.fail("gave up");
  });

// --- main -------------------------------------------------------------------------------------------------

const api = await startApiServer();
try {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(api.kubeconfigPath);
  await installDanmCrds(kc);
  const rest = restClient(kc);
  const kubeLayer = () => layerLiveKube({ config: { _tag: "Kubeconfig", path: api.kubeconfigPath } }).pipe(Layer.orDie);
  const setup = <A, E>(e: Effect.Effect<A, E, Kube>) => Effect.runPromise(Effect.provide(e, kubeLayer()));

  const ours = await setup(Effect.gen(function* () {
    const kube = yield* Kube;
    return yield* kube.create(ClusterNetworkResource, {
      metadata: { name: "bench-danm-ipam" },
      spec: { NetworkID: "bench", NetworkType: "ipvlan", Options: { cidr: "10.60.0.0/16" } },
    } as ClusterNetwork);
  }));
  await setup(Effect.gen(function* () {
    const kube = yield* Kube;
    yield* kube.create(ClusterNetworkResource, {
      metadata: { name: "bench-danm-scheme" },
      spec: {
        NetworkID: "benchd",
        NetworkType: "ipvlan",
        Options: { cidr: "10.61.0.0/16", alloc: bitmask(65536, [0, 65535]) },
      },
    } as ClusterNetwork);
  }));
  const net: IpamNetwork = {
    ref: { kind: "ClusterNetwork", name: "bench-danm-ipam", uid: ours.metadata.uid! },
    options: ours.spec.Options ?? {},
  };
  // Owners as a cluster has them: UUID-sized pod UIDs and 64-hex sandbox IDs make the stored blocks (and the
  // apiserver's work per write) as big as in production; short made-up IDs would flatter the figures. Unique per run
  // without a crypto call per allocation, whose cost (and garbage) would be the bench's, not the allocator's.
  const runTag = crypto.randomUUID().replaceAll("-", "").repeat(2);
  let serial = 0;
  const hex = (n: number) => `${runTag.slice(0, n)}${(serial++).toString(16).padStart(12, "0")}`.slice(-n);
  const uuid = () => hex(32).replace(/^(.{8})(.{4})(.{4})(.{4})/, "$1-$2-$3-$4-");
  const owner = (node: number, seq: number): Owner => ({
    namespace: "bench-ipam",
    pod: `cnf-dataplane-${node}-${seq}-${hex(5)}`,
    podUid: uuid(),
    sandbox: hex(64),
    iface: "eth1",
    node: `bench-worker-${node}`,
  });

  console.log(
    `workload: ${nodes} nodes × ${perNode} concurrent allocators, one /16 network; ${warmupCount} allocations of warm-up, then measured up to ${totalCount} (${
      Math.round(fill * 100)
    }% of the pool)`,
  );
  // CPU of the parties while danm allocates: this process (the allocator and its client), apiserver, etcd.
  const parties = {
    "allocator process": () => processCpuMs(Deno.pid),
    apiserver: () => processCpuMs(api.pids.apiserver),
    etcd: () => processCpuMs(api.pids.etcd),
  };
  const cpuBefore = Object.fromEntries(Object.entries(parties).map(([k, f]) => [k, f()]));
  const danm = await drive(
    (node, seq) =>
      Effect.gen(function* () {
        const ipam = yield* Ipam;
        return (yield* ipam.allocate(net, owner(node, seq), "dynamic", undefined)).v4!;
      }),
    () => Layer.merge(kubeLayer(), ipamLayer().pipe(Layer.provide(blockStoreFromKube), Layer.provide(kubeLayer()))),
    { warmupCount, totalCount },
  );
  const allocations = danm.addresses.length;
  const cpuUsPerAlloc = Object.fromEntries(
    Object.entries(parties).map(([k, f]) => [k, Math.round(((f() - cpuBefore[k]) * 1000) / Math.max(1, allocations))]),
  );
  console.log(`allocator counters: ${JSON.stringify(totals)}`);
  const etcdRequests = await etcdIpBlockRequests(rest);
  console.log(`apiserver → etcd requests for IPBlocks: ${JSON.stringify(etcdRequests)}`);
  console.log(`CPU per allocation (µs, warm-up included): ${JSON.stringify(cpuUsPerAlloc)}`);
  const stored = await setup(Effect.gen(function* () {
    const kube = yield* Kube;
    const blocks = (yield* kube.list(ipBlockResource, { labelSelector: `${labels.networkUid}=${net.ref.uid}` })).items;
    return blocks.flatMap((b) => Object.keys(b.spec.reservations).map((off) => `${b.spec.cidr}+${off}`));
  }));
  const danmAllocs = danm.latenciesMs.length / danm.elapsedS;
  console.log(
    `warm-up: ${danm.warmupLatenciesMs.length} allocations, p50 ${
      percentile(danm.warmupLatenciesMs, 50).toFixed(1)
    } ms, p99 ${percentile(danm.warmupLatenciesMs, 99).toFixed(1)} ms (not in the figures below)`,
  );
  console.log(
    `danm IPAM:   ${danm.latenciesMs.length} allocations in ${danm.elapsedS.toFixed(1)}s = ${
      danmAllocs.toFixed(0)
    }/s, p50 ${percentile(danm.latenciesMs, 50).toFixed(1)} ms, p99 ${
      percentile(danm.latenciesMs, 99).toFixed(1)
    } ms, errors ${danm.errors}, duplicates ${duplicatesOf(danm.addresses)}, stored reservations ${stored.length}`,
  );

  if (danmOnly) {
    console.log(JSON.stringify({
      bench: "ipam",
      danm_only: true,
      allocs_per_s: round(danmAllocs),
      p50_ms: round(percentile(danm.latenciesMs, 50)),
      p99_ms: round(percentile(danm.latenciesMs, 99)),
      duplicates: duplicatesOf(danm.addresses) + duplicatesOf(stored),
      errors: danm.errors,
      cpu_us_per_alloc: cpuUsPerAlloc,
      block_writes: totals.writes,
      etcd_ipblock_requests: etcdRequests,
    }));
  } else {
    const baseline = await drive((_node, _seq) => danmAllocate("bench-danm-scheme"), () =>
      Layer.merge(
        kubeLayer(),
        Layer.succeed(
          Ipam,
          Ipam.of({
            allocate: () => Effect.die("unused"),
            release: () => Effect.die("unused"),
            stats: () => noStats,
            track: () => Effect.die("unused"),
            usage: () => [],
          }),
        ),
      ), { warmupCount: 0, measureSeconds: baselineSeconds }); // No warm-up: one of its allocations takes longer than one would.
    const baseAllocs = baseline.latenciesMs.length / baseline.elapsedS;
    console.log(
      `DANM scheme model (bitmask in the network object, optimistic retry): ${baseline.latenciesMs.length} allocations in ${
        baseline.elapsedS.toFixed(1)
      }s = ${baseAllocs.toFixed(0)}/s, p50 ${percentile(baseline.latenciesMs, 50).toFixed(1)} ms, p99 ${
        percentile(baseline.latenciesMs, 99).toFixed(1)
      } ms, errors ${baseline.errors}, duplicates ${duplicatesOf(baseline.addresses)}`,
    );
    // Duplicates among the addresses handed out, and among the reservations stored (which must match them 1:1).
    const duplicates = duplicatesOf(danm.addresses) + duplicatesOf(stored);
    if (stored.length !== danm.addresses.length) {
      console.log(`WARNING: ${stored.length} stored reservations for ${danm.addresses.length} allocations`);
    }

    // The real peers, same apiserver, same concurrency.
    const peerLine = (p: PeerIpamResult) =>
      console.log(
        `${p.label}: ${p.allocations} of ${p.requested} allocations in ${p.seconds.toFixed(1)}s = ${
          p.allocsPerS.toFixed(1)
        }/s, p50 ${p.p50Ms.toFixed(0)} ms, p99 ${p.p99Ms.toFixed(0)} ms, errors ${p.errors}${
          p.firstError ? ` (first: ${p.firstError.replaceAll("\n", " ").slice(0, 200)})` : ""
        }, duplicates ${p.duplicates}, stored ${p.stored}${
          p.stalled ? `, STALLED: stopped after ${peerLoad.timeoutMs / 1000}s` : ""
        }`,
      );
    console.log(`real peers: ${peerLoad.requesters} concurrent requesters × ${peerLoad.rounds} allocations each`);
    const whereabouts = await whereaboutsIpam(api, "10.62.0.0/16", peerLoad);
    peerLine(whereabouts);
    await run(["ip", "link", "add", "benchipam0", "type", "veth", "peer", "name", "benchipam1"]);
    for (const l of ["benchipam0", "benchipam1"]) await run(["ip", "link", "set", l, "up"]);
    const danmGo = await danmGoIpam(api, "10.63.0.0/16", "benchipam0", peerLoad);
    peerLine(danmGo);
    console.log(JSON.stringify({
      bench: "ipam",
      nodes,
      allocators_per_node: perNode,
      warmup_allocations: danm.warmupLatenciesMs.length,
      measured_allocations: danm.latenciesMs.length,
      pool_fill: round(stored.length / poolSize),
      allocs_per_s: round(danmAllocs),
      warmup_p99_ms: round(percentile(danm.warmupLatenciesMs, 99)),
      p50_ms: round(percentile(danm.latenciesMs, 50)),
      p99_ms: round(percentile(danm.latenciesMs, 99)),
      duplicates,
      errors: danm.errors,
      baseline: "DANM scheme model (bitmask in the network object, optimistic retry)",
      baseline_allocs_per_s: round(baseAllocs),
      baseline_p50_ms: round(percentile(baseline.latenciesMs, 50)),
      baseline_p99_ms: round(percentile(baseline.latenciesMs, 99)),
      baseline_duplicates: duplicatesOf(baseline.addresses),
      ratio: round(danmAllocs / baseAllocs),
      cpu_us_per_alloc: cpuUsPerAlloc,
      block_writes: totals.writes,
      etcd_ipblock_requests: etcdRequests,
      peer_requesters: peerLoad.requesters,
      whereabouts_allocs_per_s: round(whereabouts.allocsPerS),
      whereabouts_p50_ms: round(whereabouts.p50Ms),
      whereabouts_p99_ms: round(whereabouts.p99Ms),
      whereabouts_allocations: whereabouts.allocations,
      whereabouts_errors: whereabouts.errors,
      whereabouts_duplicates: whereabouts.duplicates,
      whereabouts_stalled: whereabouts.stalled,
      danm_go_allocs_per_s: round(danmGo.allocsPerS),
      danm_go_p50_ms: round(danmGo.p50Ms),
      danm_go_p99_ms: round(danmGo.p99Ms),
      danm_go_allocations: danmGo.allocations,
      danm_go_errors: danmGo.errors,
      danm_go_duplicates: danmGo.duplicates,
      danm_go_stalled: danmGo.stalled,
      ratio_whereabouts: round(danmAllocs / whereabouts.allocsPerS),
      ratio_danm_go: round(danmAllocs / danmGo.allocsPerS),
    }));
  }
} finally {
  await api.stop();
  await Deno.remove(api.dir, { recursive: true }).catch(() => {});
}
