// bench:netpol's per-packet cost: iperf3 across three veth pairs of two network namespaces each, on the same host,
// the same traffic through each:
//   unpoliced  no table at all (the baseline);
//   ct_only    only `ct state established,related accept` hooked in input and output — what any stateful firewall
//              pays (replies must pass), i.e. connection tracking switched on in the pod's netns;
//   engine     a pod's MultiNetworkPolicy ruleset (renderNft) loaded in both namespaces (client egress, server ingress).
// Method, for a 2-core machine shared with other work: every run pins the iperf3 client and server to the same CPUs
// for every pair (iperf3 --affinity), rounds are short and many, each round runs the three variants in the next of
// the six orders (a balanced rotation), so drift in the machine's load hits every variant alike, and the variants
// move to the next pair every round (tables reloaded), so no pair's own quirks stick to one variant; figures are
// medians of per-round ratios with their quartiles. Besides bits/s, TCP runs report CPU time per byte (both iperf3
// processes' user+system time — this kernel's tick accounting charges the softirq work done in a task's context, i.e.
// the veth receive path and its netfilter hooks, to that task): a second figure that other load on the machine moves
// less, since a run that gets less CPU also moves fewer bytes.
//
// Two traffic shapes, because a stateful ruleset's cost depends on which rule a packet stops at:
//   tcp  one bulk TCP stream: after the handshake every segment stops at `ct state established,related accept`,
//        the packet path of real connections;
//   udp  1,400-byte datagrams at full rate in one direction (the rate the server received): conntrack never sees a
//        reply, so every datagram is `new` and walks the whole chain to the allow rule at its end — the ruleset's
//        worst case per packet; iperf3's receiver drops most datagrams at that rate, so this figure is noisy.
import { Schema } from "effect";
import { run } from "../../harness/proc.ts";

export const serverAddress = "10.77.0.2";
export const clientAddress = "10.77.0.1";
export const serverAddress6 = "fd77::2";
export const clientAddress6 = "fd77::1";
/** The port iperf3 serves on: the policies allow it (last); `blockedPort` no policy allows. */
export const allowedPort = 5201;
export const blockedPort = 5202;
/** The pod interface name the rulesets police on both ends. */
export const podInterface = "net1";

export interface PairRulesets {
  /** Loaded into the client pod's netns (its egress side). */
  readonly client: string;
  /** Loaded into the server pod's netns (its ingress side). */
  readonly server: string;
}

export interface ThroughputOptions {
  /** Rounds; each runs every pair once per shape, in a rotating order. */
  readonly rounds: number;
  /** Seconds per iperf3 run (after a 1 s omitted warm-up for TCP). */
  readonly seconds: number;
  /** CPUs for iperf3's client and server in every run; undefined: not pinned. */
  readonly pin: readonly [number, number] | undefined;
  readonly rulesets: PairRulesets;
  readonly prefix: string;
  readonly log: (s: string) => void;
}

export type Shape = "tcp" | "udp";
export const variants = ["unpoliced", "ct_only", "engine"] as const;
export type Variant = typeof variants[number];

export interface Run {
  /** bits/s received. */
  readonly bps: number;
  /** CPU-seconds (client + server, user + system) per GB received; NaN for UDP (the sender's work is mostly dropped). */
  readonly cpuPerGB: number;
  /**
   * Bytes per packet the client's interface sent (whole run, warm-up included): netfilter and conntrack work per
   * packet, and over veth a TCP "packet" is a GSO segment of up to 64 KB whose size follows the run's timing — so a
   * run with smaller segments pays more per byte.
   */
  readonly bytesPerPacket: number;
  /**
   * CPUs' worth of time everything else on the machine was busy during the run (/proc/stat's busy time minus both
   * iperf3 processes', over the run's wall time including iperf3's start and warm-up, so approximate; TCP only): the
   * other load a round competed with.
   */
  readonly otherCpus: number;
}
/** Per variant, one run per round, in round order. */
export type ShapeResult = Record<Variant, Run[]>;
export type ThroughputResult = Record<Shape, ShapeResult>;

/** Connection tracking and nothing else: the floor of any stateful policy. Same table name as the engine's. */
export const ctOnlyRuleset = `table inet danm_netpol {}
delete table inet danm_netpol
table inet danm_netpol {
\tchain pod_in {
\t\ttype filter hook input priority filter; policy accept;
\t\tct state established,related accept
\t}
\tchain pod_out {
\t\ttype filter hook output priority filter; policy accept;
\t\tct state established,related accept
\t}
}
`;

/** What the unpoliced variant loads: removes danm's table (and with it connection tracking's hooks). */
const noRuleset = `table inet danm_netpol {}\ndelete table inet danm_netpol\n`;

interface Pair {
  readonly tag: string;
  readonly client: string;
  readonly server: string;
  readonly servers: Deno.ChildProcess[];
}

const IperfReport = Schema.Struct({
  end: Schema.Struct({
    // What the server received (for UDP, `sum` is the sender's figure: datagrams the receiver dropped count there).
    sum_received: Schema.Struct({ bits_per_second: Schema.Number, bytes: Schema.Number, seconds: Schema.Number }),
    // Percent of the test's wall time, per process (iperf3 reads getrusage at the start and the end of the test).
    cpu_utilization_percent: Schema.Struct({ host_total: Schema.Number, remote_total: Schema.Number }),
  }),
});
const decodeIperf = Schema.decodeUnknownSync(IperfReport);

const LinkStats = Schema.Tuple([
  Schema.Struct({ stats64: Schema.Struct({ tx: Schema.Struct({ bytes: Schema.Number, packets: Schema.Number }) }) }),
]);
const decodeLinkStats = Schema.decodeUnknownSync(LinkStats);
/** Busy CPU-seconds of the whole machine so far (user, nice, system, irq, softirq, steal), from /proc/stat. */
const busySeconds = () => {
  const [, user, nice, system, , , irq, softirq, steal] = Deno.readTextFileSync("/proc/stat").split("\n")[0]
    .trim().split(/\s+/).map(Number);
  return (user + nice + system + irq + softirq + steal) / 100; // USER_HZ
};
const txCounters = async (ns: string) =>
  decodeLinkStats(JSON.parse(await run(["ip", "-n", ns, "-s", "-j", "link", "show", podInterface])))[0].stats64.tx;

async function makePair(prefix: string, tag: string): Promise<Pair> {
  const client = `${prefix}-${tag}-client`, server = `${prefix}-${tag}-server`;
  for (const ns of [client, server]) {
    await run(["ip", "netns", "add", ns]);
    await run(["ip", "-n", ns, "link", "set", "lo", "up"]);
  }
  await run([
    "ip",
    "link",
    "add",
    `${tag}c`,
    "netns",
    client,
    "type",
    "veth",
    "peer",
    "name",
    `${tag}s`,
    "netns",
    server,
  ]);
  for (
    const [ns, link, v4, v6] of [[client, `${tag}c`, clientAddress, clientAddress6], [
      server,
      `${tag}s`,
      serverAddress,
      serverAddress6,
    ]]
  ) {
    await run(["ip", "-n", ns, "link", "set", link, "name", podInterface]);
    await run(["ip", "-n", ns, "addr", "add", `${v4}/24`, "dev", podInterface]);
    await run(["ip", "-n", ns, "addr", "add", `${v6}/64`, "dev", podInterface, "nodad"]);
    await run(["ip", "-n", ns, "link", "set", podInterface, "up"]);
  }
  const servers = [allowedPort, blockedPort].map((port) =>
    new Deno.Command("ip", {
      args: ["netns", "exec", server, "iperf3", "--server", "--port", String(port)],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn()
  );
  return { tag, client, server, servers };
}

async function load(p: Pair, rulesets: PairRulesets): Promise<void> {
  await run(["ip", "netns", "exec", p.client, "nft", "-f", "-"], { stdin: rulesets.client });
  await run(["ip", "netns", "exec", p.server, "nft", "-f", "-"], { stdin: rulesets.server });
}

async function disposePair(p: Pair): Promise<void> {
  for (const s of p.servers) {
    try {
      s.kill("SIGTERM");
    } catch { /* already gone */ }
    await s.status;
  }
  for (const ns of [p.client, p.server]) await run(["ip", "netns", "del", ns]).catch(() => {});
}

async function iperf(
  p: Pair,
  shape: Shape,
  seconds: number,
  pin: ThroughputOptions["pin"],
  port = allowedPort,
): Promise<Run> {
  const argv = [
    "ip",
    "netns",
    "exec",
    p.client,
    "iperf3",
    "--client",
    serverAddress,
    "--port",
    String(port),
    "--time",
    String(seconds),
    "--json",
    "--connect-timeout",
    "2000",
    ...(pin ? ["--affinity", `${pin[0]},${pin[1]}`] : []),
    ...(shape === "udp" ? ["--udp", "--bitrate", "0", "--length", "1400"] : ["--omit", "1"]),
  ];
  const before = await txCounters(p.client);
  const [busy0, t0] = [busySeconds(), performance.now()];
  const { end } = decodeIperf(JSON.parse(await run(argv)));
  const [busy1, t1] = [busySeconds(), performance.now()];
  const after = await txCounters(p.client);
  const bps = end.sum_received.bits_per_second;
  if (!(bps > 0)) throw new Error(`iperf3 ${shape} on ${p.client} reported no throughput`);
  // CPU over the measured seconds (the omitted warm-up is outside both the bytes and iperf3's CPU window).
  const cpuShare = (end.cpu_utilization_percent.host_total + end.cpu_utilization_percent.remote_total) / 100;
  const cpu = cpuShare * end.sum_received.seconds;
  return {
    bps,
    cpuPerGB: shape === "tcp" ? cpu / (end.sum_received.bytes / 1e9) : NaN,
    bytesPerPacket: (after.bytes - before.bytes) / Math.max(1, after.packets - before.packets),
    // iperf3's CPU share spans the measured seconds; the wall clock here also holds its start-up and warm-up.
    otherCpus: shape === "tcp" ? Math.max(0, (busy1 - busy0) / ((t1 - t0) / 1000) - cpuShare) : NaN,
  };
}
/** iperf3's server needs a moment to listen; the first client may find nothing there. */
async function waitListening(p: Pair): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const ss = await run(["ip", "netns", "exec", p.server, "ss", "-Hltn", `sport = :${allowedPort}`]);
    if (ss.trim() !== "") return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`iperf3 never listened in ${p.server}`);
}

/**
 * The policed pair must actually be policed: a connection to a port no policy allows gets nowhere there (the
 * server listens on it), while the unpoliced pair connects — otherwise the comparison measures nothing.
 */
async function checkEnforced(policed: Pair, open: Pair): Promise<void> {
  const reaches = (p: Pair) => iperf(p, "tcp", 1, undefined, blockedPort).then(() => true, () => false);
  if (!(await reaches(open))) {
    throw new Error(`the unpoliced pair (${open.tag}) cannot reach the blocked port: set-up is broken`);
  }
  if (await reaches(policed)) throw new Error("the policed pair reaches a port no policy allows: ruleset not enforced");
}

/** The six orders of three variants; round r runs them in orders[r % 6], so each is as often first, second, last. */
const orders: ReadonlyArray<readonly [number, number, number]> = [
  [0, 1, 2],
  [2, 1, 0],
  [1, 2, 0],
  [0, 2, 1],
  [2, 0, 1],
  [1, 0, 2],
];

export async function measureThroughput(o: ThroughputOptions): Promise<ThroughputResult> {
  const pairs: Pair[] = [];
  try {
    const rulesets: Record<Variant, PairRulesets> = {
      unpoliced: { client: noRuleset, server: noRuleset },
      ct_only: { client: ctOnlyRuleset, server: ctOnlyRuleset },
      engine: o.rulesets,
    };
    for (const tag of ["a", "b", "c"]) pairs.push(await makePair(o.prefix, tag));
    for (const p of pairs) await waitListening(p);
    const out: ThroughputResult = {
      tcp: { unpoliced: [], ct_only: [], engine: [] },
      udp: { unpoliced: [], ct_only: [], engine: [] },
    };
    const gbit = (r: Run) => (r.bps / 1e9).toFixed(2);
    const engineAt = variants.indexOf("engine");
    for (let round = 0; round < o.rounds; round++) {
      // The variants move to the next pair every round, so a difference between the pairs themselves (their
      // order of creation, where their memory landed) is spread over all three instead of taken for a ruleset's.
      const on = (v: number) => pairs[(v + round) % pairs.length];
      for (const [v, variant] of variants.entries()) await load(on(v), rulesets[variant]);
      await checkEnforced(on(engineAt), on(variants.indexOf("unpoliced")));
      for (const shape of ["tcp", "udp"] as const) {
        for (const v of orders[round % orders.length]) {
          out[shape][variants[v]].push(await iperf(on(v), shape, o.seconds, o.pin));
        }
        const r = out[shape], [u, c, e] = [r.unpoliced.at(-1)!, r.ct_only.at(-1)!, r.engine.at(-1)!];
        o.log(
          `round ${round + 1}/${o.rounds} ${shape} (engine on pair ${on(engineAt).tag}): ` +
            `Gbit/s unpoliced ${gbit(u)}, ct-only ${gbit(c)}, engine ${gbit(e)}` +
            (shape === "tcp"
              ? `; CPU-s/GB ${u.cpuPerGB.toFixed(3)}, ${c.cpuPerGB.toFixed(3)}, ${e.cpuPerGB.toFixed(3)}` +
                `; bytes/packet ${[u, c, e].map((x) => Math.round(x.bytesPerPacket)).join(", ")}` +
                `; other load ${[u, c, e].map((x) => x.otherCpus.toFixed(2)).join(", ")} CPUs`
              : ""),
        );
      }
    }
    o.log("every round: the engine's pair dropped a port no policy allows, the unpoliced pair passed it");
    return out;
  } finally {
    for (const p of pairs) await disposePair(p);
  }
}

/** Linear-interpolated quantile (q in [0, 1]) of a non-empty list. */
export function quantile(xs: ReadonlyArray<number>, q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const at = (s.length - 1) * q, lo = Math.floor(at), hi = Math.ceil(at);
  return s[lo] + (s[hi] - s[lo]) * (at - lo);
}
export const median = (xs: ReadonlyArray<number>): number => quantile(xs, 0.5);

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** A per-round ratio's median, quartiles and extremes. */
export interface Spread {
  readonly median: number;
  readonly p25: number;
  readonly p75: number;
  readonly min: number;
  readonly max: number;
}
function spread(xs: ReadonlyArray<number>): Spread;
function spread(xs: ReadonlyArray<number>, orNull: true): Spread | null;
function spread(xs: ReadonlyArray<number>): Spread | null {
  if (xs.length === 0) return null;
  return {
    median: round3(median(xs)),
    p25: round3(quantile(xs, 0.25)),
    p75: round3(quantile(xs, 0.75)),
    min: round3(Math.min(...xs)),
    max: round3(Math.max(...xs)),
  };
}

/** Per-round ratios `of[i] / by[i]` of a figure (bits/s: higher is better; so CPU per byte goes `by / of`). */
const perRound = (of: Run[], by: Run[], figure: (r: Run) => number) => of.map((r, i) => figure(r) / figure(by[i]));

export interface ShapeSummary {
  /** engine / unpoliced, bits/s (the throughput_ratio for TCP). */
  readonly ratio: Spread;
  /** ct_only / unpoliced, bits/s: connection tracking's share. */
  readonly ratio_ct_only: Spread;
  /** engine / ct_only, bits/s: what the engine costs beyond connection tracking. */
  readonly engine_over_ct: Spread;
  /** Medians, Gbit/s. */
  readonly gbit: Record<Variant, number>;
  /** Medians, bytes per packet the client sent. */
  readonly bytes_per_packet: Record<Variant, number>;
  /** TCP only: medians of the other load during the runs, in CPUs. */
  readonly other_cpus?: Record<Variant, number>;
  /** TCP only: the same three ratios from CPU time per byte (unpoliced's CPU/byte ÷ the other's: 1 = free). */
  readonly cpu?: {
    readonly ratio: Spread;
    readonly ratio_ct_only: Spread;
    readonly engine_over_ct: Spread;
    readonly s_per_gb: Record<Variant, number>;
  };
  /**
   * TCP only: the same three bits/s ratios over the quiet rounds alone — rounds where the other load stayed below
   * `quietCpus` in all three runs; null when no round was quiet. A reading of the spread, not a replacement for the
   * all-round figures.
   */
  readonly quiet?: {
    readonly rounds: number;
    readonly ratio: Spread | null;
    readonly ratio_ct_only: Spread | null;
    readonly engine_over_ct: Spread | null;
  };
}

/** Other load, in CPUs, under which a round counts as quiet (fixed before any run; see ShapeSummary.quiet). */
export const quietCpus = 0.25;

export function summarize(r: ShapeResult): ShapeSummary {
  const bps = (x: Run) => x.bps, inverseCpu = (x: Run) => 1 / x.cpuPerGB;
  const medianOf = (f: (x: Run) => number) =>
    Object.fromEntries(variants.map((v) => [v, round3(median(r[v].map(f)))])) as Record<Variant, number>;
  const ratios = (f: (x: Run) => number) => ({
    ratio: spread(perRound(r.engine, r.unpoliced, f)),
    ratio_ct_only: spread(perRound(r.ct_only, r.unpoliced, f)),
    engine_over_ct: spread(perRound(r.engine, r.ct_only, f)),
  });
  const withCpu = r.unpoliced.every((x) => Number.isFinite(x.cpuPerGB));
  const quietRounds = r.unpoliced.flatMap((_, i) => variants.every((v) => r[v][i].otherCpus < quietCpus) ? [i] : []);
  const pick = (v: Variant) => quietRounds.map((i) => r[v][i]);
  const quiet = {
    rounds: quietRounds.length,
    ratio: spread(perRound(pick("engine"), pick("unpoliced"), bps), true),
    ratio_ct_only: spread(perRound(pick("ct_only"), pick("unpoliced"), bps), true),
    engine_over_ct: spread(perRound(pick("engine"), pick("ct_only"), bps), true),
  };
  return {
    ...ratios(bps),
    gbit: medianOf((x) => x.bps / 1e9),
    bytes_per_packet: medianOf((x) => Math.round(x.bytesPerPacket)),
    ...(withCpu
      ? {
        cpu: { ...ratios(inverseCpu), s_per_gb: medianOf((x) => x.cpuPerGB) },
        other_cpus: medianOf((x) => x.otherCpus),
        quiet,
      }
      : {}),
  };
}
