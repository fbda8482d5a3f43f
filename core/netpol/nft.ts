// A pod's compiled rules as one `nft -f -` script for its network namespace. Only danm's own table is touched
// (`inet danm_netpol`), and it is replaced in one transaction — create if absent, delete, recreate — so there is no
// moment where the pod is open. Same rules → same bytes, so callers skip pods whose script did not change.
// Nothing from input is quoted into the text: interface names, addresses, protocols and ports are checked against
// what they may be and anything else is refused with a typed error.
import { Effect, Schema } from "effect";
import { formatCidr, parseCidr } from "../net/ip.ts";
import type { Direction, Flow, PodRules } from "./model.ts";

export const NetpolTable = "danm_netpol";

export class NetpolRenderError extends Schema.TaggedError<NetpolRenderError>()("NetpolRenderError", {
  pod: Schema.String,
  field: Schema.String,
  value: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `pod ${this.pod}: ${this.field} ${JSON.stringify(this.value)} ${this.reason}`;
  }
}

/** Interface names as danm makes them; stricter than Linux (which allows quotes, spaces…), on purpose. */
const ifNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const protocols = { TCP: "tcp", UDP: "udp", SCTP: "sctp" } as const;

/** What IPv6 needs on a link whatever the policy: neighbour and router discovery, MLD. */
const icmpv6Link = "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, " +
  "nd-redirect, mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report } accept";

type Bad = (field: string, value: string, reason: string) => NetpolRenderError;

/** A CIDR as nft will read it: must parse and already be canonical (the engine only makes canonical ones). */
function checkedCidr(text: string, family: 4 | 6, bad: Bad): string {
  const p = parseCidr(text);
  if (!p || p.cidr.family !== family || formatCidr(p.cidr) !== text) {
    throw bad("address", text, `is not a canonical IPv${family} CIDR`);
  }
  return text;
}

function checkedPort(n: number, bad: Bad): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw bad("port", String(n), "is not a port number");
  return n;
}

/** The l4 part of a flow's rule: "" (any protocol), "meta l4proto tcp" or "meta l4proto tcp th dport 80-90". */
function l4Match(flow: Flow, bad: Bad): string {
  if (flow.protocol === undefined) return "";
  const proto = (protocols as Record<string, string>)[flow.protocol];
  if (!proto) throw bad("protocol", String(flow.protocol), "is not TCP, UDP or SCTP");
  if (!flow.ports) return `meta l4proto ${proto}`;
  const from = checkedPort(flow.ports.from, bad);
  const to = checkedPort(flow.ports.to, bad);
  if (to < from) throw bad("port", `${from}-${to}`, "is an inverted range");
  return `meta l4proto ${proto} th dport ${from === to ? from : `${from}-${to}`}`;
}

interface ChainOut {
  readonly sets: string[];
  readonly rules: string[];
}

/** One interface direction's chain body: link-level ICMPv6, one rule per flow and family, then drop. */
function directionChain(prefix: string, way: "in" | "out", d: Direction, bad: Bad): ChainOut {
  const addr = way === "in" ? "saddr" : "daddr";
  const sets: string[] = [];
  const setNames = new Map<string, string>();
  const setFor = (family: 4 | 6, cidrs: ReadonlyArray<string>) => {
    const elements = cidrs.map((c) => checkedCidr(c, family, bad)).join(", ");
    const key = `${family} ${elements}`;
    let name = setNames.get(key);
    if (name === undefined) {
      name = `${prefix}_s${setNames.size}`;
      setNames.set(key, name);
      sets.push(
        `\tset ${name} {\n\t\ttype ipv${family}_addr\n\t\tflags interval\n\t\telements = { ${elements} }\n\t}`,
      );
    }
    return name;
  };
  const rules = [icmpv6Link];
  for (const flow of d.flows) {
    const l4 = l4Match(flow, bad);
    const tail = l4 === "" ? "accept" : `${l4} accept`;
    if (flow.peers === "any") {
      rules.push(tail);
      continue;
    }
    if (flow.peers.v4.length > 0) rules.push(`ip ${addr} @${setFor(4, flow.peers.v4)} ${tail}`);
    if (flow.peers.v6.length > 0) rules.push(`ip6 ${addr} @${setFor(6, flow.peers.v6)} ${tail}`);
  }
  rules.push("drop");
  return { sets, rules };
}

function renderOrThrow(rules: PodRules): string {
  const bad: Bad = (field, value, reason) => new NetpolRenderError({ pod: rules.pod, field, value, reason });
  const header = `# danm MultiNetworkPolicy rules of one pod; the table is replaced whole.\n` +
    `table inet ${NetpolTable} {}\ndelete table inet ${NetpolTable}\n`;
  if (rules.interfaces.length === 0) return header;
  const sets: string[] = [];
  const chains: string[] = [];
  const dispatch = { in: [] as string[], out: [] as string[] };
  const seen = new Set<string>();
  for (const [index, i] of rules.interfaces.entries()) {
    if (!ifNamePattern.test(i.ifName)) throw bad("interface", i.ifName, "is not an interface name danm makes");
    if (seen.has(i.ifName)) throw bad("interface", i.ifName, "appears twice");
    seen.add(i.ifName);
    for (const [way, d] of [["in", i.ingress], ["out", i.egress]] as const) {
      if (!d) continue;
      const chain = `${way}_${index}`;
      const body = directionChain(chain, way, d, bad);
      sets.push(...body.sets);
      chains.push(`\tchain ${chain} {\n${body.rules.map((r) => `\t\t${r}\n`).join("")}\t}`);
      dispatch[way].push(`"${i.ifName}" : jump ${chain}`);
    }
  }
  const base = (name: string, hook: string, match: string, entries: string[]) =>
    entries.length === 0 ? [] : [
      `\tchain ${name} {\n\t\ttype filter hook ${hook} priority filter; policy accept;\n` +
      `\t\tct state established,related accept\n\t\t${match} vmap { ${entries.join(", ")} }\n\t}`,
    ];
  const body = [
    ...sets,
    ...base("pod_in", "input", "iifname", dispatch.in),
    ...base("pod_out", "output", "oifname", dispatch.out),
    ...chains,
  ];
  return `${header}table inet ${NetpolTable} {\n${body.join("\n")}\n}\n`;
}

/**
 * The complete `nft -f -` input for the pod's network namespace. A pod with no policed interface gets a script that
 * removes danm's table (and touches nothing else).
 */
export const renderNft = (rules: PodRules): Effect.Effect<string, NetpolRenderError> =>
  Effect.try({
    try: () => renderOrThrow(rules),
    catch: (e) =>
      e instanceof NetpolRenderError
        ? e
        : new NetpolRenderError({ pod: rules.pod, field: "rules", value: "", reason: String(e) }),
  });
