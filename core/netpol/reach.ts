// "May pod A reach pod B on network N, protocol P, port X?" — answered from the same compiled rules the node
// enforces (A's egress on its interface there, B's ingress on its), so `danmctl dry-run` and the sim can never
// disagree with nftables. Each address family is a path of its own; the answer is yes only when every path is.
import type {
  Direction,
  Flow,
  NetworkKey,
  PodKey,
  PodRules,
  PolicyKey,
  PolicyWorld,
  Protocol,
  RuleOrigin,
} from "./model.ts";
import { blocksContain } from "./peers.ts";
import { compilePod } from "./compile.ts";

export interface ReachQuery {
  readonly from: PodKey;
  readonly to: PodKey;
  readonly network: NetworkKey;
  readonly protocol: Protocol;
  readonly port: number;
}

/** One direction's verdict: not isolated (no policy), or the rules that allow it (none = denied). */
export interface DirectionVerdict {
  readonly allowed: boolean;
  readonly isolated: boolean;
  /** The policies isolating this direction (empty when not isolated). */
  readonly policies: ReadonlyArray<PolicyKey>;
  /** The rules that allow it, when isolated. */
  readonly allowedBy: ReadonlyArray<RuleOrigin>;
}

/** One address pair (same family) of the two interfaces. */
export interface ReachPath {
  readonly family: 4 | 6;
  readonly source: string;
  readonly destination: string;
  readonly egress: DirectionVerdict;
  readonly ingress: DirectionVerdict;
  readonly allowed: boolean;
}

export interface Reachability {
  readonly allowed: boolean;
  readonly paths: ReadonlyArray<ReachPath>;
  /** Plain sentences explaining the answer, one per path (or why there is none). */
  readonly reasons: ReadonlyArray<string>;
}

/** Whether one flow admits a packet from/to `peer` — exactly what its nft rule matches. */
export function flowMatches(flow: Flow, peer: string, protocol: Protocol, port: number): boolean {
  if (flow.peers !== "any" && !blocksContain(flow.peers, peer)) return false;
  if (flow.protocol === undefined) return true;
  if (flow.protocol !== protocol) return false;
  return flow.ports === undefined || (port >= flow.ports.from && port <= flow.ports.to);
}

/** The verdict of one direction (undefined = not isolated) for a packet whose other end is `peer`. */
export function directionVerdict(
  d: Direction | undefined,
  peer: string,
  protocol: Protocol,
  port: number,
): DirectionVerdict {
  if (!d) return { allowed: true, isolated: false, policies: [], allowedBy: [] };
  const allowedBy = d.flows.filter((f) => flowMatches(f, peer, protocol, port)).map((f) => f.origin);
  const unique = allowedBy.filter((o, i) =>
    allowedBy.findIndex((x) => x.policy === o.policy && x.rule === o.rule) === i
  );
  return { allowed: unique.length > 0, isolated: true, policies: d.policies, allowedBy: unique };
}

const describe = (way: string, v: DirectionVerdict): string =>
  !v.isolated
    ? `${way} not isolated`
    : v.allowed
    ? `${way} allowed by ${v.allowedBy.map((o) => `${o.policy} ${way} rule ${o.rule}`).join(", ")}`
    : `${way} denied (isolated by ${v.policies.join(", ")}; no rule allows it)`;

/** The verdict from already compiled rules; `world` supplies only the two interfaces' addresses. */
export function reachFromRules(
  world: PolicyWorld,
  q: ReachQuery,
  fromRules: PodRules,
  toRules: PodRules,
): Reachability {
  const on = (pod: PodKey) => (world.attachments.get(pod) ?? []).filter((a) => a.network === q.network);
  const src = on(q.from);
  const dst = on(q.to);
  if (src.length === 0 || dst.length === 0) {
    const missing = src.length === 0 ? q.from : q.to;
    return { allowed: false, paths: [], reasons: [`${missing} has no interface on ${q.network}`] };
  }
  const paths: ReachPath[] = [];
  for (const s of src) {
    const egress = fromRules.interfaces.find((i) => i.ifName === s.ifName)?.egress;
    for (const d of dst) {
      const ingress = toRules.interfaces.find((i) => i.ifName === d.ifName)?.ingress;
      for (const family of [4, 6] as const) {
        const key = family === 4 ? "v4" : "v6";
        for (const source of s[key]) {
          for (const destination of d[key]) {
            const e = directionVerdict(egress, destination, q.protocol, q.port);
            const i = directionVerdict(ingress, source, q.protocol, q.port);
            paths.push({ family, source, destination, egress: e, ingress: i, allowed: e.allowed && i.allowed });
          }
        }
      }
    }
  }
  if (paths.length === 0) {
    return { allowed: false, paths, reasons: [`${q.from} and ${q.to} share no address family on ${q.network}`] };
  }
  const reasons = paths.map((p) =>
    `${p.source} → ${p.destination} ${q.protocol}/${q.port}: ${p.allowed ? "allowed" : "denied"} — ` +
    `${describe("egress", p.egress)}; ${describe("ingress", p.ingress)}`
  );
  return { allowed: paths.every((p) => p.allowed), paths, reasons };
}

/** May `from` reach `to` on `network` with this protocol and port? Compiles both pods' rules. */
export function mayReach(world: PolicyWorld, q: ReachQuery): Reachability {
  return reachFromRules(world, q, compilePod(world, q.from), compilePod(world, q.to));
}
