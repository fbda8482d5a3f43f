// bench:ipam's real peers, under the same load as danm's IPAM: `requesters` concurrent loops (nodes × allocators per
// node), each making `rounds` allocations one after the other, on a /16.
//
//   - Whereabouts v0.9.2: IPAM-only CNI ADDs — its `whereabouts` binary exec'd as a delegate execs its IPAM plugin
//     (CNI variables, the network configuration on stdin), from one range, through its installed flat file and
//     ServiceAccount. Every ADD takes the cluster-wide Lease, then rewrites the IPPool.
//   - DANM v4.3.0: its IPAM lives inside its `danm` CNI binary (the bitmask in the network object), so an
//     allocation is a CNI ADD of a pod with one MACVLAN attachment through its real binaries (danm, macvlan,
//     DANM's fakeipam), exec'd as a runtime does. Pods and their network namespaces are made before the clock runs.
//
// A peer that does not finish within `timeoutMs` is reported with how far it got; one that fails every request
// makes the bench fail (no figures are invented).
import { type CniOutcome, execCni, kubeletCniArgs } from "../../harness/fakelet.ts";
import { adminRest, peerBinDir, type PeerCluster } from "../../harness/peers/install.ts";
import {
  createDanmGoClusterNetwork,
  danmGoGroup,
  danmGoInterfacesAnnotation,
  installDanmGo,
} from "../../harness/peers/danm_go.ts";
import { installWhereabouts, whereaboutsNamespace } from "../../harness/peers/whereabouts.ts";
import { run } from "../../harness/proc.ts";
import { pick, type Rest } from "../../integration/api/rest.ts";

export interface PeerLoad {
  readonly requesters: number;
  readonly rounds: number;
  /** Requests still to start after this are not started (the peer is reported as stalled). */
  readonly timeoutMs: number;
}

export interface PeerIpamResult {
  readonly label: string;
  readonly requested: number;
  readonly allocations: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly stalled: boolean;
  readonly seconds: number;
  readonly allocsPerS: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Addresses handed out more than once. */
  readonly duplicates: number;
  /** What the peer's own storage says it holds (IPPool allocations, DanmEps). */
  readonly stored: number;
}

export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};

const hex = (bytes: number) =>
  [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");

/** The first address of a CNI result. */
const addressOf = (o: CniOutcome): string | undefined => {
  const ips = pick(o.json, "ips");
  const first = Array.isArray(ips) ? pick(ips[0], "address") : undefined;
  return typeof first === "string" ? first.split("/")[0] : undefined;
};

/** Runs `request(requester, round)` from every requester, `rounds` times each, until done or the deadline. */
async function drive(
  label: string,
  load: PeerLoad,
  request: (requester: number, round: number) => Promise<CniOutcome>,
): Promise<Omit<PeerIpamResult, "duplicates" | "stored"> & { addresses: string[] }> {
  const latencies: number[] = [], addresses: string[] = [];
  let errors = 0, firstError: string | undefined, stalled = false;
  const started = performance.now(), deadline = started + load.timeoutMs;
  await Promise.all(Array.from({ length: load.requesters }, async (_, r) => {
    for (let round = 0; round < load.rounds; round++) {
      if (performance.now() > deadline) {
        stalled = true;
        return;
      }
      const out = await request(r, round);
      const address = out.code === 0 ? addressOf(out) : undefined;
      if (address) {
        latencies.push(out.ms);
        addresses.push(address);
      } else {
        errors++;
        firstError ??= (out.stdout || out.stderr).trim().slice(0, 500);
      }
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  if (latencies.length === 0) {
    throw new Error(`${label}: no allocation succeeded (${errors} failed): ${firstError ?? "no answer"}`);
  }
  return {
    label,
    requested: load.requesters * load.rounds,
    allocations: latencies.length,
    errors,
    ...(firstError ? { firstError } : {}),
    stalled,
    seconds,
    allocsPerS: latencies.length / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    addresses,
  };
}

const duplicatesOf = (xs: ReadonlyArray<string>) => xs.length - new Set(xs).size;

/** Whereabouts allocating from `range` (a /16) under `load`. */
export async function whereaboutsIpam(cluster: PeerCluster, range: string, load: PeerLoad): Promise<PeerIpamResult> {
  const whereabouts = await installWhereabouts(cluster);
  const dir = await Deno.makeTempDir({ prefix: "bench-wb-" });
  const rest = adminRest(cluster);
  try {
    const binDir = await peerBinDir(`${dir}/bin`, { whereabouts: whereabouts.plugin });
    const netns = `wbbench-${hex(3)}`;
    await run(["ip", "netns", "add", netns]);
    // What a delegate hands its IPAM plugin: its whole configuration (here a MACVLAN's), the IPAM section inside.
    const conf = {
      cniVersion: "0.3.1",
      name: "wbbench",
      type: "whereabouts",
      master: "ens4",
      ipam: whereabouts.ipam(range),
    };
    const tag = hex(4);
    const r = await drive("Whereabouts", load, (requester, round) => {
      const containerId = hex(32);
      const pod = { namespace: "bench-ipam", name: `wb-${tag}-${requester}-${round}`, uid: crypto.randomUUID() };
      return execCni(binDir, conf, "ADD", {
        containerId,
        netns: `/run/netns/${netns}`,
        ifName: "net1",
        args: kubeletCniArgs(pod, containerId),
      });
    });
    const pools = await rest.call(
      "GET",
      `/apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/${whereaboutsNamespace}/ippools`,
    );
    const items = pick(pools.body, "items");
    const stored = (Array.isArray(items) ? items : [])
      .filter((p) => pick(p, "spec", "range") === range)
      .map((p) => Object.keys((pick(p, "spec", "allocations") ?? {}) as Record<string, unknown>).length)
      .reduce((a, n) => a + n, 0);
    const { addresses, ...measured } = r;
    return { ...measured, duplicates: duplicatesOf(addresses), stored };
  } finally {
    rest.close();
    await whereabouts.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function createPods(rest: Rest, namespace: string, names: ReadonlyArray<string>, annotations: object) {
  const uids: string[] = [];
  for (const name of names) {
    const r = await rest.call("POST", `/api/v1/namespaces/${namespace}/pods`, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace, annotations },
      spec: { nodeName: "bench-node", containers: [{ name: "c", image: "pause" }] },
    });
    if (r.status !== 201) throw new Error(`creating pod ${name}: ${JSON.stringify(r.body)}`);
    uids.push(String(pick(r.body, "metadata", "uid")));
  }
  return uids;
}

/** DANM v4.3.0 allocating from a /16 MACVLAN ClusterNetwork through CNI ADDs of its real binaries, under `load`. */
export async function danmGoIpam(
  cluster: PeerCluster,
  cidr: string,
  hostDevice: string,
  load: PeerLoad,
): Promise<PeerIpamResult> {
  const danm = await installDanmGo(cluster);
  const rest = adminRest(cluster);
  try {
    const namespace = "bench-danm-go";
    await rest.call("POST", "/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: namespace },
    });
    await createDanmGoClusterNetwork(rest, "bench-ipam-mv", {
      NetworkID: "benchipam",
      NetworkType: "macvlan",
      Options: { host_device: hostDevice, cidr },
    });
    const names = Array.from(
      { length: load.requesters * load.rounds },
      (_, i) => `dg-${Math.floor(i / load.rounds)}-${i % load.rounds}`,
    );
    const annotation = JSON.stringify([{ clusterNetwork: "bench-ipam-mv", ip: "dynamic" }]);
    const uids = await createPods(rest, namespace, names, { [danmGoInterfacesAnnotation]: annotation });
    const netns = names.map(() => `dg-${hex(6)}`);
    for (const ns of netns) await run(["ip", "netns", "add", ns]);
    const r = await drive("DANM v4.3.0", load, (requester, round) => {
      const i = requester * load.rounds + round;
      const containerId = hex(32);
      return execCni(danm.binDir, danm.netconf, "ADD", {
        containerId,
        netns: `/run/netns/${netns[i]}`,
        ifName: "eth0",
        args: kubeletCniArgs({ namespace, name: names[i], uid: uids[i] }, containerId),
      });
    }).catch(async (e) => {
      throw new Error(`${e.message}\n${await danm.logs(10)}`);
    });
    const eps = pick((await rest.call("GET", `/apis/${danmGoGroup}/v1/namespaces/${namespace}/danmeps`)).body, "items");
    const stored = Array.isArray(eps) ? eps.length : 0;
    const { addresses, ...measured } = r;
    return { ...measured, duplicates: duplicatesOf(addresses), stored };
  } finally {
    rest.close();
    await danm.stop();
  }
}
