// bench:netpol's per-packet cost: iperf3 across two veth pairs of two network namespaces each, on the same host —
// one pair with a pod's MultiNetworkPolicy ruleset loaded in both of its namespaces (the client's egress, the
// server's ingress), one without. Runs alternate (ABBA), so drift in the machine's load hits both sides alike.
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
  /** Alternating rounds; each round runs both pairs once per shape, in ABBA order across rounds. */
  readonly rounds: number;
  /** Seconds per iperf3 run (after a 1 s omitted warm-up for TCP). */
  readonly seconds: number;
  readonly rulesets: PairRulesets;
  readonly prefix: string;
  readonly log: (s: string) => void;
}

export type Shape = "tcp" | "udp";
export interface ShapeResult {
  /** bits/s received, per round. */
  readonly policed: number[];
  readonly unpoliced: number[];
  /** policed / unpoliced of the same round. */
  readonly ratios: number[];
}
export type ThroughputResult = Record<Shape, ShapeResult>;

interface Pair {
  readonly client: string;
  readonly server: string;
  readonly servers: Deno.ChildProcess[];
}

const IperfReport = Schema.Struct({
  end: Schema.Struct({
    // What the server received (for UDP, `sum` is the sender's figure: datagrams the receiver dropped count there).
    sum_received: Schema.Struct({ bits_per_second: Schema.Number }),
  }),
});
const decodeIperf = Schema.decodeUnknownSync(IperfReport);

async function makePair(prefix: string, tag: string, rulesets: PairRulesets | undefined): Promise<Pair> {
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
  if (rulesets) {
    await run(["ip", "netns", "exec", client, "nft", "-f", "-"], { stdin: rulesets.client });
    await run(["ip", "netns", "exec", server, "nft", "-f", "-"], { stdin: rulesets.server });
  }
  const servers = [allowedPort, blockedPort].map((port) =>
    new Deno.Command("ip", {
      args: ["netns", "exec", server, "iperf3", "--server", "--port", String(port)],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn()
  );
  return { client, server, servers };
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

async function iperf(p: Pair, shape: Shape, seconds: number, port = allowedPort): Promise<number> {
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
    ...(shape === "udp" ? ["--udp", "--bitrate", "0", "--length", "1400"] : ["--omit", "1"]),
  ];
  const report = decodeIperf(JSON.parse(await run(argv)));
  const bps = report.end.sum_received.bits_per_second;
  if (!(bps > 0)) throw new Error(`iperf3 ${shape} on ${p.client} reported no throughput`);
  return bps;
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
  const reaches = (p: Pair) => iperf(p, "tcp", 1, blockedPort).then(() => true, () => false);
  if (!(await reaches(open))) throw new Error("the unpoliced pair cannot reach the blocked port: set-up is broken");
  if (await reaches(policed)) throw new Error("the policed pair reaches a port no policy allows: ruleset not enforced");
}

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
export { median };

export async function measureThroughput(o: ThroughputOptions): Promise<ThroughputResult> {
  const pairs: Pair[] = [];
  try {
    const policed = await makePair(o.prefix, "pol", o.rulesets);
    pairs.push(policed);
    const open = await makePair(o.prefix, "open", undefined);
    pairs.push(open);
    await waitListening(policed);
    await waitListening(open);
    await checkEnforced(policed, open);
    o.log("policed pair drops a port no policy allows, the unpoliced pair passes it");
    const out: ThroughputResult = {
      tcp: { policed: [], unpoliced: [], ratios: [] },
      udp: { policed: [], unpoliced: [], ratios: [] },
    };
    for (let round = 0; round < o.rounds; round++) {
      for (const shape of ["tcp", "udp"] as const) {
        const order = round % 2 === 0 ? [policed, open] : [open, policed];
        const got = new Map<Pair, number>();
        for (const p of order) got.set(p, await iperf(p, shape, o.seconds));
        const r = out[shape];
        r.policed.push(got.get(policed)!);
        r.unpoliced.push(got.get(open)!);
        r.ratios.push(got.get(policed)! / got.get(open)!);
        o.log(
          `round ${round + 1}/${o.rounds} ${shape}: policed ${(got.get(policed)! / 1e9).toFixed(2)} Gbit/s, ` +
            `unpoliced ${(got.get(open)! / 1e9).toFixed(2)} Gbit/s, ratio ${r.ratios.at(-1)!.toFixed(3)}`,
        );
      }
    }
    return out;
  } finally {
    for (const p of pairs) await disposePair(p);
  }
}
