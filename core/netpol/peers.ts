// Peers resolved to addresses on the policed network: podSelector / namespaceSelector picks pods whose addresses
// ON THAT NETWORK count (a peer pod's other interfaces never do); ipBlock is a CIDR minus its `except`s. Address
// sets are kept as canonical, merged CIDR lists so equal sets render to equal bytes.
import type { MultiNetworkPolicy, PolicyPeer } from "../api/netpol.ts";
import { type Cidr, type Family, formatCidr, lastAddress, makeCidr, parseCidr, parseIp } from "../net/ip.ts";
import {
  type AddressBlocks,
  namespaceLabels,
  type NetworkKey,
  type PodKey,
  type PolicyWorld,
  type WorldAttachment,
  type WorldPod,
} from "./model.ts";
import { selectorMatches } from "./select.ts";

/** An inclusive address range. */
export type Interval = readonly [bigint, bigint];

const width = (f: Family) => (f === 4 ? 32 : 128);

/** Sorts and merges overlapping or adjacent intervals. */
export function normalize(list: ReadonlyArray<Interval>): Interval[] {
  const sorted = [...list].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: Array<[bigint, bigint]> = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1n) {
      if (hi > last[1]) last[1] = hi;
    } else out.push([lo, hi]);
  }
  return out;
}

function subtract(from: ReadonlyArray<Interval>, cut: ReadonlyArray<Interval>): Interval[] {
  let rest = normalize(from);
  for (const [clo, chi] of normalize(cut)) {
    rest = rest.flatMap(([lo, hi]): Interval[] => {
      if (chi < lo || clo > hi) return [[lo, hi]];
      const parts: Interval[] = [];
      if (clo > lo) parts.push([lo, clo - 1n]);
      if (chi < hi) parts.push([chi + 1n, hi]);
      return parts;
    });
  }
  return rest;
}

/**
 * Parsing and printing addresses (ipaddr.js) dominate compilation at scale — the same few thousand pod addresses are
 * read and written for every policy that names them — so both directions are memoized, within a bound.
 */
const memoLimit = 50_000;
interface ParsedCidr {
  readonly family: Family;
  readonly span: Interval;
  /** The text is the CIDR's canonical spelling (host bits clear, IPv6 per RFC 5952). */
  readonly canonical: boolean;
}
const parsedCidrs = new Map<string, ParsedCidr | null>();
// Keyed by the bigints themselves: printing a 128-bit key costs about as much as the lookup saves.
const printedSpans = { 4: new Map<bigint, Map<bigint, string[]>>(), 6: new Map<bigint, Map<bigint, string[]>>() };

function memo<K, V>(cache: Map<K, V>, key: K, make: () => V): V {
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  if (cache.size >= memoLimit) cache.clear();
  const value = make();
  cache.set(key, value);
  return value;
}

/** A CIDR's family and address range, when it parses. */
export const cidrSpan = (text: string): ParsedCidr | null =>
  memo(parsedCidrs, text, () => {
    const p = parseCidr(text);
    if (!p) return null;
    return { family: p.cidr.family, span: [p.cidr.base, lastAddress(p.cidr)], canonical: formatCidr(p.cidr) === text };
  });

/** The fewest CIDRs covering exactly [lo, hi]. */
function toCidrs(family: Family, [lo, hi]: Interval): string[] {
  let byEnd = printedSpans[family].get(lo);
  if (!byEnd) {
    if (printedSpans[family].size >= memoLimit) printedSpans[family].clear();
    printedSpans[family].set(lo, byEnd = new Map());
  }
  return memo(byEnd, hi, () => {
    const out: string[] = [];
    const bits = width(family);
    let start = lo;
    while (start <= hi) {
      let size = 0;
      while (size < bits) {
        const next = 1n << BigInt(size + 1);
        if (start % next !== 0n || start + next - 1n > hi) break;
        size++;
      }
      out.push(formatCidr(makeCidr(family, start, bits - size)));
      start += 1n << BigInt(size);
    }
    return out;
  });
}

/** The intervals of the CIDRs of one family (others skipped). */
export function fromCidrs(family: Family, cidrs: ReadonlyArray<string>): Interval[] {
  const out: Interval[] = [];
  for (const c of cidrs) {
    const p = cidrSpan(c);
    if (p && p.family === family) out.push(p.span);
  }
  return out;
}

/** Intervals as the fewest canonical CIDRs, merged first. */
export const toCanonicalCidrs = (family: Family, list: ReadonlyArray<Interval>): string[] =>
  normalize(list).flatMap((i) => toCidrs(family, i));

export const noAddresses: AddressBlocks = { v4: [], v6: [] };

export const isEmptyBlocks = (b: AddressBlocks): boolean => b.v4.length === 0 && b.v6.length === 0;

/** Union of address blocks, canonical. */
export function unionBlocks(blocks: ReadonlyArray<AddressBlocks>): AddressBlocks {
  return {
    v4: toCanonicalCidrs(4, blocks.flatMap((b) => fromCidrs(4, b.v4))),
    v6: toCanonicalCidrs(6, blocks.flatMap((b) => fromCidrs(6, b.v6))),
  };
}

/** Plain addresses (as attachments hold them) as host blocks. */
export function hostBlocks(v4: ReadonlyArray<string>, v6: ReadonlyArray<string>): AddressBlocks {
  const hosts = (family: Family, list: ReadonlyArray<string>) =>
    toCanonicalCidrs(family, fromCidrs(family, list.map((a) => `${a}/${width(family)}`)));
  return { v4: hosts(4, v4), v6: hosts(6, v6) };
}

/**
 * ipBlock: `cidr` minus every `except` (excepts of the other family cut nothing). An unparsable cidr or except makes
 * the block nothing: the webhook refuses such a policy, and one that slipped through must not open traffic.
 */
export function ipBlockAddresses(cidr: string, except: ReadonlyArray<string>): AddressBlocks {
  const p = parseCidr(cidr);
  if (!p) return noAddresses;
  const f = p.cidr.family;
  const cuts = except.map((e) => parseCidr(e));
  if (cuts.some((c) => c === undefined)) return noAddresses;
  const span = (c: Cidr): Interval => [c.base, lastAddress(c)];
  const rest = subtract([span(p.cidr)], cuts.flatMap((c) => (c && c.cidr.family === f ? [span(c.cidr)] : [])));
  const out = toCanonicalCidrs(f, rest);
  return f === 4 ? { v4: out, v6: [] } : { v4: [], v6: out };
}

/** Whether an address (plain) lies in the blocks. */
export function blocksContain(blocks: AddressBlocks, address: string): boolean {
  const ip = parseIp(address);
  if (!ip) return false;
  return fromCidrs(ip.family, ip.family === 4 ? blocks.v4 : blocks.v6).some(([lo, hi]) =>
    ip.value >= lo && ip.value <= hi
  );
}

/**
 * Intersects address blocks with `blocks`, for many queries against the same blocks: they are parsed once and each
 * query's ranges are found by binary search (egress named ports test every pod on the network against a rule's peers).
 */
export function blocksIntersector(blocks: AddressBlocks): (other: AddressBlocks) => AddressBlocks {
  const spans = { 4: normalize(fromCidrs(4, blocks.v4)), 6: normalize(fromCidrs(6, blocks.v6)) };
  const cut = (family: Family, cidrs: ReadonlyArray<string>): string[] => {
    const list = spans[family];
    const out: Interval[] = [];
    for (const [lo, hi] of fromCidrs(family, cidrs)) {
      let a = 0, b = list.length;
      while (a < b) {
        const m = (a + b) >> 1;
        if (list[m][1] < lo) a = m + 1;
        else b = m;
      }
      for (let i = a; i < list.length && list[i][0] <= hi; i++) {
        out.push([lo > list[i][0] ? lo : list[i][0], hi < list[i][1] ? hi : list[i][1]]);
      }
    }
    return out.length === 0 ? [] : toCanonicalCidrs(family, out);
  };
  return (other) => ({ v4: cut(4, other.v4), v6: cut(6, other.v6) });
}

/**
 * Whether a selector peer picks a pod: podSelector alone → the policy's namespace; namespaceSelector alone → every
 * pod of the matching namespaces; both → AND. An ipBlock peer (or an empty one, which validation refuses) picks no
 * pod.
 */
export function peerSelectsPod(
  world: PolicyWorld,
  policy: MultiNetworkPolicy,
  peer: PolicyPeer,
  pod: WorldPod,
): boolean {
  if (peer.ipBlock) return false;
  const pods = peer.podSelector ?? undefined;
  const nss = peer.namespaceSelector ?? undefined;
  if (pods === undefined && nss === undefined) return false;
  const nsOk = nss === undefined
    ? pod.namespace === (policy.metadata.namespace ?? "")
    : selectorMatches(nss, namespaceLabels(world, pod.namespace));
  return nsOk && (pods === undefined || selectorMatches(pods, pod.labels));
}

/** The pods a selector peer picks (see `peerSelectsPod`), sorted by key. */
export function peerPods(
  world: PolicyWorld,
  policy: MultiNetworkPolicy,
  peer: PolicyPeer,
): ReadonlyArray<readonly [PodKey, WorldPod]> {
  if (peer.ipBlock || (!peer.podSelector && !peer.namespaceSelector)) return [];
  const out: Array<readonly [PodKey, WorldPod]> = [];
  for (const entry of world.pods) {
    if (peerSelectsPod(world, policy, peer, entry[1])) out.push(entry);
  }
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Per attachment list (replaced, never mutated, when a pod's interfaces change): its addresses per network. */
const addressesByNetwork = new WeakMap<ReadonlyArray<WorldAttachment>, Map<NetworkKey, AddressBlocks>>();

/** A pod's addresses on one network (all its interfaces there). */
export function podAddresses(world: PolicyWorld, pod: PodKey, network: NetworkKey): AddressBlocks {
  const attachments = world.attachments.get(pod);
  if (!attachments) return noAddresses;
  let perNetwork = addressesByNetwork.get(attachments);
  if (!perNetwork) addressesByNetwork.set(attachments, perNetwork = new Map());
  let blocks = perNetwork.get(network);
  if (!blocks) {
    const on = attachments.filter((a) => a.network === network);
    perNetwork.set(network, blocks = hostBlocks(on.flatMap((a) => a.v4), on.flatMap((a) => a.v6)));
  }
  return blocks;
}

/** What one peer resolves to on `network`. */
export function peerAddresses(
  world: PolicyWorld,
  policy: MultiNetworkPolicy,
  peer: PolicyPeer,
  network: NetworkKey,
): AddressBlocks {
  if (peer.ipBlock) return ipBlockAddresses(peer.ipBlock.cidr, peer.ipBlock.except ?? []);
  return unionBlocks(peerPods(world, policy, peer).map(([key]) => podAddresses(world, key, network)));
}
