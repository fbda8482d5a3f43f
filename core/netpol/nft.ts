// A pod's compiled rules as one `nft -f -` script for its network namespace. Only danm's own table is touched
// (`inet danm_netpol`), and it is replaced in one transaction — create if absent, delete, recreate — so there is no
// moment where the pod is open. Same rules → same bytes, so callers skip pods whose script did not change.
// The render is also kept structured (the sets' elements apart from the rest, the skeleton), so that when only
// elements change — peers coming and going — `diffTables` gives the elements to add and remove, from data.
// Nothing from input is quoted into the text: interface names, addresses, protocols and ports are checked against
// what they may be and anything else is refused with a typed error.
import { Effect, Schema } from "effect";
import type { AddressBlocks, Direction, Flow, PodRules, Protocol } from "./model.ts";
import type { SetElementsChange } from "../ports/policy_tables.ts";
import { cidrSpan, fromCidrs, type Interval, toCanonicalCidrs, unionBlocks } from "./peers.ts";

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
const protocols: Readonly<Record<Protocol, string>> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };

/** What IPv6 needs on a link whatever the policy: neighbour and router discovery, MLD. */
const icmpv6Link = "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, " +
  "nd-redirect, mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report } accept";

type Bad = (field: string, value: string, reason: string) => NetpolRenderError;

/** A CIDR as nft will read it: must parse and already be canonical (the engine only makes canonical ones). */
function checkCidr(text: string, family: 4 | 6, bad: Bad): void {
  const p = cidrSpan(text);
  if (!p || p.family !== family || !p.canonical) {
    throw bad("address", text, `is not a canonical IPv${family} CIDR`);
  }
}

/** Refuses a flow with anything the text could not carry safely. */
function checkFlow(flow: Flow, bad: Bad): void {
  if (flow.peers !== "any") {
    flow.peers.v4.forEach((c) => checkCidr(c, 4, bad));
    flow.peers.v6.forEach((c) => checkCidr(c, 6, bad));
  }
  if (flow.protocol !== undefined && !Object.hasOwn(protocols, flow.protocol)) {
    throw bad("protocol", String(flow.protocol), "is not TCP, UDP or SCTP");
  }
  if (flow.ports) {
    const { from, to } = flow.ports;
    for (const n of [from, to]) {
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw bad("port", String(n), "is not a port number");
    }
    if (to < from) throw bad("port", `${from}-${to}`, "is an inverted range");
  }
}

/** One element of a direction's l4 set: peer CIDR . protocol . port range. */
export interface L4Element {
  readonly cidr: string;
  readonly protocol: Protocol;
  readonly from: number;
  readonly to: number;
}

/**
 * An isolated direction folded for the kernel: per family ONE set of disjoint (peer . protocol . ports) elements and
 * one set of peers allowed every protocol, so a packet costs the same few lookups however many policies apply.
 */
export interface FoldedDirection {
  readonly acceptAll: boolean;
  readonly l4: { readonly v4: ReadonlyArray<L4Element>; readonly v6: ReadonlyArray<L4Element> };
  readonly anyProtocol: AddressBlocks;
}

const fullRange = (f: 4 | 6): Interval => [0n, (1n << (f === 4 ? 32n : 128n)) - 1n];
const protocolOrder: ReadonlyArray<Protocol> = ["TCP", "UDP", "SCTP"];

interface Box {
  readonly addr: Interval;
  readonly from: number;
  readonly to: number;
}

/** Boxes (address range × port range) of one protocol as disjoint elements: port segments, merged when equal. */
function disjointElements(family: 4 | 6, protocol: Protocol, boxes: ReadonlyArray<Box>): L4Element[] {
  const cuts = [...new Set(boxes.flatMap((b) => [b.from, b.to + 1]))].sort((a, b) => a - b);
  const segments: Array<{ from: number; to: number; cidrs: string[] }> = [];
  for (let i = 0; i + 1 < cuts.length; i++) {
    const [from, to] = [cuts[i], cuts[i + 1] - 1];
    const cidrs = toCanonicalCidrs(family, boxes.filter((b) => b.from <= from && b.to >= to).map((b) => b.addr));
    const last = segments[segments.length - 1];
    if (last && last.to + 1 === from && last.cidrs.join() === cidrs.join()) last.to = to;
    else if (cidrs.length > 0) segments.push({ from, to, cidrs });
  }
  return segments.flatMap((s) => s.cidrs.map((cidr) => ({ cidr, protocol, from: s.from, to: s.to })));
}

/** Folds a direction's flows (already checked) into its sets. */
export function foldDirection(d: Direction): FoldedDirection {
  const acceptAll = d.flows.some((f) => f.peers === "any" && f.protocol === undefined);
  const anyProtocol = unionBlocks(
    d.flows.flatMap((f) => (f.protocol === undefined && f.peers !== "any" ? [f.peers] : [])),
  );
  const l4 = (family: 4 | 6) =>
    protocolOrder.flatMap((protocol) => {
      const boxes = d.flows.flatMap((f): Box[] => {
        if (f.protocol !== protocol) return [];
        const [from, to] = f.ports ? [f.ports.from, f.ports.to] : [0, 65535];
        const addrs = f.peers === "any"
          ? [fullRange(family)]
          : fromCidrs(family, family === 4 ? f.peers.v4 : f.peers.v6);
        return addrs.map((addr) => ({ addr, from, to }));
      });
      return disjointElements(family, protocol, boxes);
    });
  return { acceptAll, l4: { v4: l4(4), v6: l4(6) }, anyProtocol };
}

const element = (e: L4Element) =>
  `${e.cidr} . ${protocols[e.protocol]} . ${e.from === e.to ? e.from : `${e.from}-${e.to}`}`;

/** One set of the table: its name, its type, and its elements as nft reads them (checked, canonical). */
export interface RenderedSet {
  readonly name: string;
  readonly type: string;
  readonly elements: ReadonlyArray<string>;
}

/** Elements in, or without elements (the skeleton's form, where only the set's existence and type count). */
const setText = (s: RenderedSet, withElements: boolean) =>
  `\tset ${s.name} {\n\t\ttype ${s.type}\n\t\tflags interval\n` +
  (withElements ? `\t\telements = { ${s.elements.join(", ")} }\n` : "") + `\t}`;

interface ChainOut {
  readonly sets: RenderedSet[];
  readonly rules: string[];
}

/** One interface direction's chain: link-level ICMPv6, at most four set lookups (or accept-all), then drop. */
function directionChain(chain: string, way: "in" | "out", d: Direction, bad: Bad): ChainOut {
  d.flows.forEach((f) => checkFlow(f, bad));
  const addr = way === "in" ? "saddr" : "daddr";
  const folded = foldDirection(d);
  const sets: RenderedSet[] = [];
  const rules = [icmpv6Link];
  if (folded.acceptAll) return { sets, rules: [...rules, "accept"] };
  for (const [family, ip] of [[4, "ip"], [6, "ip6"]] as const) {
    const elements = family === 4 ? folded.l4.v4 : folded.l4.v6;
    if (elements.length === 0) continue;
    const name = `${chain}_l4v${family}`;
    sets.push({ name, type: `ipv${family}_addr . inet_proto . inet_service`, elements: elements.map(element) });
    rules.push(`${ip} ${addr} . meta l4proto . th dport @${name} accept`);
  }
  for (const [family, ip] of [[4, "ip"], [6, "ip6"]] as const) {
    const cidrs = family === 4 ? folded.anyProtocol.v4 : folded.anyProtocol.v6;
    if (cidrs.length === 0) continue;
    const name = `${chain}_allv${family}`;
    sets.push({ name, type: `ipv${family}_addr`, elements: cidrs });
    rules.push(`${ip} ${addr} @${name} accept`);
  }
  rules.push("drop");
  return { sets, rules };
}

/**
 * A pod's table, rendered. `script` is the complete `nft -f -` input (replaces the table whole); `skeleton` is the
 * same without the sets' elements: two renders with the same skeleton differ only in elements.
 */
export interface RenderedTable {
  readonly script: string;
  readonly skeleton: string;
  readonly sets: ReadonlyArray<RenderedSet>;
}

const header = `# danm MultiNetworkPolicy rules of one pod; the table is replaced whole.\n` +
  `table inet ${NetpolTable} {}\ndelete table inet ${NetpolTable}\n`;

function renderOrThrow(rules: PodRules): RenderedTable {
  const bad: Bad = (field, value, reason) => new NetpolRenderError({ pod: rules.pod, field, value, reason });
  if (rules.interfaces.length === 0) return { script: header, skeleton: header, sets: [] };
  const sets: RenderedSet[] = [];
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
  const rest = [
    ...base("pod_in", "input", "iifname", dispatch.in),
    ...base("pod_out", "output", "oifname", dispatch.out),
    ...chains,
  ];
  const table = (withElements: boolean) =>
    `${header}table inet ${NetpolTable} {\n${[...sets.map((s) => setText(s, withElements)), ...rest].join("\n")}\n}\n`;
  return { script: table(true), skeleton: table(false), sets };
}

/**
 * The elements to add to and remove from each set to turn table `from` into `to`, or undefined when more than
 * elements differ (a set, chain or interface came or went: the table must be replaced whole). Removing and adding
 * in one transaction is always possible: what stays and what comes are both parts of `to`, whose elements are
 * disjoint. Elements compare as rendered text, which is canonical (the same element always renders the same).
 */
export function diffTables(from: RenderedTable, to: RenderedTable): ReadonlyArray<SetElementsChange> | undefined {
  // Pods alike share their tables (the engine renders each set of rules once): a pass diffs each pair once.
  let byTo = diffs.get(from);
  if (!byTo) diffs.set(from, byTo = new WeakMap());
  const hit = byTo.get(to);
  if (hit) return hit.sets;
  const sets = diffOf(from, to);
  byTo.set(to, { sets });
  return sets;
}

const diffs = new WeakMap<
  RenderedTable,
  WeakMap<RenderedTable, { sets: ReadonlyArray<SetElementsChange> | undefined }>
>();

function diffOf(from: RenderedTable, to: RenderedTable): ReadonlyArray<SetElementsChange> | undefined {
  if (from.skeleton !== to.skeleton) return undefined;
  const before = new Map(from.sets.map((s) => [s.name, new Set(s.elements)]));
  return to.sets.flatMap((s) => {
    const old = before.get(s.name) ?? new Set<string>();
    const now = new Set(s.elements);
    const add = s.elements.filter((e) => !old.has(e));
    const remove = [...old].filter((e) => !now.has(e));
    return add.length === 0 && remove.length === 0 ? [] : [{ set: s.name, add, remove }];
  });
}

/**
 * The pod's table for its network namespace, whole and structured. A pod with no policed interface gets a script
 * that removes danm's table (and touches nothing else).
 */
export const renderTable = (rules: PodRules): Effect.Effect<RenderedTable, NetpolRenderError> =>
  Effect.try({
    try: () => renderOrThrow(rules),
    catch: (e) =>
      e instanceof NetpolRenderError
        ? e
        : new NetpolRenderError({ pod: rules.pod, field: "rules", value: "", reason: String(e) }),
  });

/** The complete `nft -f -` input for the pod's network namespace (renderTable's script). */
export const renderNft = (rules: PodRules): Effect.Effect<string, NetpolRenderError> =>
  Effect.map(renderTable(rules), (t) => t.script);
