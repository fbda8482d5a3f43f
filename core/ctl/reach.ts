// `danmctl dry-run reach <from-pod> <to-pod> <network> <port>[/protocol]`: may one pod reach another on a network,
// port and protocol? Answered by the policy engine's mayReach over the cluster's MultiNetworkPolicies, pods and
// DanmEps — the same compiled rules the node agent renders into nftables, so the answer can't disagree with
// enforcement — with every address pair's verdict and the policy rule that decided it.
import { Effect } from "effect";
import type { Protocol } from "../api/k8s.ts";
import { parsePolicyFor } from "../api/netpol.ts";
import { readClusterWorld } from "../netpol/cluster.ts";
import { NadKind, type NetworkKey, networkKey, type PodKey, podKey, type PolicyWorld } from "../netpol/model.ts";
import { mayReach, type Reachability } from "../netpol/reach.ts";
import { DryRunError } from "./dryrun.ts";

export interface ReachArgs {
  readonly from: string;
  readonly to: string;
  readonly network: string;
  readonly port: string;
  /** Namespace of pods (and networks) given without one; default "default". */
  readonly namespace?: string;
}

export interface ReachAnswer extends Reachability {
  readonly from: PodKey;
  readonly to: PodKey;
  readonly network: NetworkKey;
  readonly protocol: Protocol;
  readonly port: number;
}

const protocols: Record<string, Protocol> = { tcp: "TCP", udp: "UDP", sctp: "SCTP" };

/** `80`, `80/TCP`, `53/udp`: a port number 1-65535 and a protocol (default TCP). */
export function parsePortArg(arg: string): { port: number; protocol: Protocol } | undefined {
  const m = /^([0-9]{1,5})(?:\/([A-Za-z]+))?$/.exec(arg.trim());
  if (!m) return undefined;
  const port = Number(m[1]);
  const protocol = m[2] === undefined ? "TCP" : protocols[m[2].toLowerCase()];
  return protocol !== undefined && port >= 1 && port <= 65535 ? { port, protocol } : undefined;
}

const podArg = (arg: string, namespace: string): PodKey => arg.includes("/") ? arg : podKey(namespace, arg);

/**
 * The network key of a `policy-for`-style reference (`name`, `ns/name`, `DanmNet/…`, `TenantNetwork/…`,
 * `ClusterNetwork/…`). A plain name is a NAD or a DanmNet: whichever `from` (else `to`) is attached to.
 */
function networkArg(
  world: PolicyWorld,
  arg: string,
  namespace: string,
  pods: ReadonlyArray<PodKey>,
): Effect.Effect<NetworkKey, DryRunError> {
  return parsePolicyFor(arg).pipe(
    Effect.mapError((e) => new DryRunError({ reason: `network "${arg}": ${e.reason}` })),
    Effect.flatMap((refs) => {
      if (refs.length !== 1) return Effect.fail(new DryRunError({ reason: `network "${arg}": name one network` }));
      const ref = refs[0], ns = ref.namespace ?? namespace;
      if (ref.kind !== undefined) return Effect.succeed(networkKey(ref.kind, ns, ref.name));
      const candidates = [networkKey("DanmNet", ns, ref.name), networkKey(NadKind, ns, ref.name)];
      const onPod = (key: NetworkKey) =>
        pods.some((p) => (world.attachments.get(p) ?? []).some((a) => a.network === key));
      return Effect.succeed(candidates.find(onPod) ?? candidates[0]);
    }),
  );
}

export const reach = (args: ReachArgs) =>
  Effect.gen(function* () {
    const namespace = args.namespace ?? "default";
    const port = parsePortArg(args.port);
    if (port === undefined) {
      return yield* new DryRunError({ reason: `port "${args.port}": expected PORT or PORT/PROTOCOL (TCP, UDP, SCTP)` });
    }
    const from = podArg(args.from, namespace), to = podArg(args.to, namespace);
    const world = yield* readClusterWorld;
    for (const p of [from, to]) {
      if (!world.pods.has(p)) return yield* new DryRunError({ reason: `pod ${p} does not exist (or has terminated)` });
    }
    const network = yield* networkArg(world, args.network, from.split("/")[0], [from, to]);
    const answer: ReachAnswer = {
      from,
      to,
      network,
      ...port,
      ...mayReach(world, { from, to, network, ...port }),
    };
    return answer;
  });

export function renderReach(a: ReachAnswer): string {
  const head = `${a.from} → ${a.to} on ${a.network}, ${a.protocol}/${a.port}: ${a.allowed ? "ALLOWED" : "DENIED"}`;
  return [head, ...a.reasons.map((r) => `  ${r}`)].join("\n");
}
